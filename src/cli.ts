#!/usr/bin/env node
/**
 * amlcert's command line. The only module that touches `process`: arguments, environment, stdout/stderr and the
 * exit code. Logs go to stderr; each command's result goes to stdout as JSON lines (one per target).
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { loadConfig } from "./config/load.js";
import { AmlcertError, ExitCode, isAmlcertError } from "./errors.js";
import { createLogger, serializeError, type Logger } from "./observability/logger.js";
import { systemClock } from "./ports.js";
import { createApp } from "./app/compose.js";
import { exitCodeOf, runPlan, runRenew, worstExitCode } from "./app/run.js";
import { formatPlanLine, formatRenewResult } from "./app/present.js";

const USAGE = `amlcert: certificate renewal for Azure ML Kubernetes online endpoints

Usage:
  amlcert renew [--config FILE] [--target FQDN]... [--force]   renew what is due, roll it out, verify it
  amlcert plan  [--config FILE] [--target FQDN]...             print what renew would do and why; writes nothing
  amlcert demo                                               run a real renewal against local stand-ins (from a source checkout)
  amlcert version

Options:
  -c, --config FILE   YAML configuration (default: $AMLCERT_CONFIG)
  -t, --target FQDN   only this target (repeatable)
  -f, --force         renew even when the certificate is not due
      --json          print results as JSON lines even on a terminal (the default when stdout is not a TTY)
  -h, --help

Exit codes:
  0  renewed and verified, or nothing to do
  1  internal error (a bug)
  2  bad command line or configuration (nothing contacted, nothing written)
  3  renewal failed up to and including the extension update (the previous certificate is still in place)
  4  the new certificate is rolled out but the DNS or TLS check afterwards failed
  130/143  stopped by SIGINT/SIGTERM (after removing our TXT values and releasing the Lease)
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Exit codes for a run stopped by a signal, after cleanup (the shell's 128 + signal number). */
const SIGNAL_EXIT: Record<string, number> = { SIGTERM: 143, SIGINT: 130 };
/** How long cleanup may take after a signal; Kubernetes' default grace period is 30 s. */
const SHUTDOWN_BOUND_MS = 20_000;

/**
 * A CronJob pod evicted or past activeDeadlineSeconds gets SIGTERM: remove the TXT values of the order in flight and
 * release the Lease (so the next run is not blocked for an hour), then exit.
 */
function onTermination(shutdown: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  for (const signal of Object.keys(SIGNAL_EXIT)) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.warn({ signal }, `${signal}: removing our TXT values and releasing the Lease, then exiting`);
      const bound = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_BOUND_MS).unref());
      void Promise.race([shutdown().catch((err: unknown) => logger.error({ err }, "cleanup after the signal failed")), bound]).then(() =>
        process.exit(SIGNAL_EXIT[signal]),
      );
    });
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        target: { type: "string", short: "t", multiple: true },
        force: { type: "boolean", short: "f", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`amlcert: ${(err as Error).message}\n\n${USAGE}`);
    return ExitCode.Config;
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help || command === "help") {
    process.stdout.write(USAGE);
    return ExitCode.Ok;
  }
  if (command === "version") {
    process.stdout.write(`${version()}\n`);
    return ExitCode.Ok;
  }
  if (command === "demo") {
    const demoModule = "../test/harness/demo.js";
    try {
      const demo = (await import(demoModule)) as { runDemo: (argv: string[]) => Promise<number> };
      return await demo.runDemo(rest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") {
        process.stderr.write("amlcert: the demo needs a source checkout (npm run demo); this installation has no test harness\n");
        return ExitCode.Config;
      }
      throw err;
    }
  }
  if (command !== "renew" && command !== "plan") {
    process.stderr.write(`amlcert: ${command ? `unknown command "${command}"` : "no command given"}\n\n${USAGE}`);
    return ExitCode.Config;
  }
  if (rest.length > 0) {
    process.stderr.write(`amlcert: unexpected argument "${rest[0]}"\n\n${USAGE}`);
    return ExitCode.Config;
  }

  let logger: Logger = createLogger({ level: env.AMLCERT_LOG_LEVEL ?? "info", format: "auto" });
  try {
    const loaded = loadConfig({ path: parsed.values.config, env });
    logger = createLogger({ level: loaded.config.log.level, format: loaded.config.log.format });
    const wanted = (parsed.values.target ?? []).map((t) => t.toLowerCase());
    const unknown = wanted.filter((w) => !loaded.config.targets.some((t) => t.fqdn === w));
    if (unknown.length > 0) {
      throw new AmlcertError("CONFIG_INVALID", "config", `--target ${unknown.join(", ")}: not among the configured targets (${loaded.config.targets.map((t) => t.fqdn).join(", ")})`);
    }
    const targets = wanted.length > 0 ? loaded.config.targets.filter((t) => wanted.includes(t.fqdn)) : loaded.config.targets;
    const app = createApp({ config: loaded.config, eabHmacKey: loaded.eabHmacKey, env, logger, clock: systemClock, force: parsed.values.force ?? false, holder: `${hostname()}/${process.pid}` });
    onTermination(app.shutdown, logger);
    const human = Boolean(process.stdout.isTTY) && !parsed.values.json;
    const write = <T extends object>(line: T, format: (l: T) => string) => process.stdout.write(`${human ? format(line) : JSON.stringify(line)}\n`);
    if (command === "plan") {
      const results = await runPlan(app, targets, logger);
      results.forEach((r) => write(r, formatPlanLine));
      return worstExitCode(results.map((r) => r.exitCode));
    }
    const results = await runRenew(app, targets);
    results.forEach((r) => write(r, formatRenewResult));
    return worstExitCode(results.map(exitCodeOf));
  } catch (err) {
    if (isAmlcertError(err)) {
      if (err.code === "CONFIG_INVALID") process.stderr.write(`amlcert: ${err.message}\n`);
      else logger.error({ stage: err.stage, err }, err.message);
      return err.exitCode;
    }
    logger.fatal({ err: serializeError(err) }, "internal error: please report this");
    return ExitCode.Internal;
  }
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    // Exit now: SDK keep-alive sockets must not hold a CronJob pod open. stdout/stderr writes are synchronous
    // for files and pipes, so nothing is lost.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`amlcert: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(ExitCode.Internal);
  },
);
