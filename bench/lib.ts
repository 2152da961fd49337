/** Timing a child process, and the statistics the bench reports. */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Timed {
  code: number;
  wallMs: number;
  /** peak resident set size of the command (GNU time's %M), MiB */
  rssMiB?: number;
  stdout: string;
  stderr: string;
}

export const GNU_TIME = "/usr/bin/time";

/**
 * Run a command and time it from just before spawn to its exit, on this process's monotonic clock. With `rss`, it
 * runs under GNU time (`-f %M`), which adds one fork/exec/wait of a small C program to every command alike.
 */
export function timed(cmd: string, args: string[], opts: { env: Record<string, string>; rss?: boolean; timeoutMs?: number; cwd?: string }): Promise<Timed & { startedAt: number }> {
  const dir = opts.rss ? mkdtempSync(join(tmpdir(), "amlcert-bench-time-")) : undefined;
  const rssFile = dir ? join(dir, "rss") : undefined;
  const [file, argv] = rssFile ? [GNU_TIME, ["-f", "%M", "-o", rssFile, cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    const child = spawn(file, argv, { env: opts.env, cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code, signal) => {
      const wallMs = performance.now() - startedAt;
      clearTimeout(timer);
      // stdout/stderr may still be draining: wait for 'close' before reading them
      child.on("close", () => {
        let rssMiB: number | undefined;
        if (rssFile) {
          const kib = Number(readFileSync(rssFile, "utf8").trim().split("\n").pop());
          rssMiB = Number.isFinite(kib) ? kib / 1024 : undefined;
          rmSync(dir!, { recursive: true, force: true });
        }
        resolve({ code: code ?? (signal ? 128 : -1), wallMs, rssMiB, stdout, stderr, startedAt });
      });
    });
  });
}

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { n, median, min: s[0] ?? NaN, max: s[n - 1] ?? NaN };
}

/** "1.23 (1.10–1.40)" in seconds */
export const secs = (s: Summary) => `${(s.median / 1000).toFixed(2)} (${(s.min / 1000).toFixed(2)}–${(s.max / 1000).toFixed(2)})`;
export const mib = (s: Summary) => `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;

/** A markdown table. */
export function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? "---" : "---:"))), ...rows.map(line)].join("\n");
}

/** Rotate `items` by `by`: each run starts with a different client, so no client always runs first (or last). */
export const rotate = <T>(items: T[], by: number): T[] => items.map((_, i) => items[(i + by) % items.length]!);
