/**
 * A child process a test server or test runs: its output kept (the last `logLimit` characters, for failure
 * messages), its exit, and a bounded stop (SIGTERM, then SIGKILL). If the test process dies without stopping it,
 * the child is killed with it.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface LoggedChild {
  child: ChildProcess;
  /** stdout and stderr interleaved, the last logLimit characters */
  output(): string;
  /** the exit code; null when it was killed by a signal or could not be spawned */
  exited: Promise<number | null>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after timeoutMs; resolves with the exit code (null when it had to be killed) */
  stop(timeoutMs?: number): Promise<number | null>;
}

export interface SpawnOptions {
  cwd?: string;
  /** default: PATH only */
  env?: NodeJS.ProcessEnv;
  logLimit?: number;
}

const DEFAULT_STOP_TIMEOUT_MS = 5_000;

export function spawnLogged(binary: string, args: string[], opts: SpawnOptions = {}): LoggedChild {
  const logLimit = opts.logLimit ?? 256 * 1024;
  const child = spawn(binary, args, { cwd: opts.cwd, env: opts.env ?? { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const append = (chunk: Buffer) => {
    out += chunk.toString("utf8");
    if (out.length > logLimit) out = out.slice(out.length - logLimit);
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  let done = false;
  const killOnExit = () => {
    if (!done) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  const finish = () => {
    done = true;
    process.off("exit", killOnExit);
  };
  const exited = new Promise<number | null>((resolve) => {
    child.once("close", (code) => {
      finish();
      resolve(code);
    });
    child.once("error", (err) => {
      append(Buffer.from(`spawn error: ${err.message}\n`));
      finish();
      resolve(null);
    });
  });
  const within = async (ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
    const first = await Promise.race([exited, late]);
    clearTimeout(timer);
    return first;
  };
  const stop = async (timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<number | null> => {
    if (done) return exited;
    child.kill("SIGTERM");
    const first = await within(timeoutMs);
    if (first !== "late") return first;
    child.kill("SIGKILL");
    await within(timeoutMs);
    return null;
  };
  return { child, output: () => out, exited, hasExited: () => done, stop };
}
