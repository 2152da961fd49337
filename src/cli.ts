#!/usr/bin/env node
/**
 * amlcert's command line. The only module that touches `process`: arguments, environment, signals, stdout/stderr
 * and the exit code. Logs go to stderr; each command's result goes to stdout (a line per target: readable on a
 * terminal, JSON otherwise).
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { AmlcertError, ExitCode, isAmlcertError } from "./errors.js";
import type { Logger } from "./observability/logger.js";
import { systemClock } from "./ports.js";
import type { CommandContext } from "./cli/commands.js";
// The config loader (zod, yaml), the logger (pino) and the commands (and through them the SDKs each command uses)
// are imported once a command needs them: `version` and `--help` load nothing but this file and errors.ts.

const USAGE = `amlcert: certificate renewal for Azure ML Kubernetes online endpoints

Usage:
  amlcert renew  [--config FILE] [--target FQDN]... [--force]  renew what is due, roll it out, verify it (CronJob mode)
                 [--enable-tls]                               also turn TLS on for an extension that has it off
  amlcert daemon [--config FILE] [--target FQDN]...            renew on a schedule; /metrics, /healthz, /readyz
  amlcert plan   [--config FILE] [--target FQDN]...            print what renew would do and why; writes nothing
  amlcert status [--config FILE] [--target FQDN]...            certificate, history and checks per target; writes nothing
  amlcert doctor [--config FILE] [--target FQDN]...            first-run preflight: permissions, delegation, extension,
                                                              azureml-fe, DNS, ACME; writes nothing (exit 3 on a problem)
  amlcert demo                                                run a real renewal against local stand-ins (from a source checkout)
  amlcert version

Options:
  -c, --config FILE   YAML configuration (default: $AMLCERT_CONFIG)
  -t, --target FQDN   only this target (repeatable)
  -f, --force         renew even when the certificate is not due (renew only)
      --enable-tls    for an extension with allowInsecureConnections=True: obtain and store the certificate, then turn
                      TLS on with it in one extension update (renew only). HTTP scoring clients stop working then.
      --json          print results as JSON lines even on a terminal (the default when stdout is not a TTY)
  -h, --help

Exit codes:
  0  renewed and verified, or nothing to do (daemon: stopped cleanly)
  1  internal error (a bug)
  2  bad command line or configuration (nothing contacted, nothing written)
  3  renewal failed up to and including the extension update (the previous certificate is still in place);
     doctor: a check failed that would stop a renewal
  4  the new certificate is rolled out but the DNS or TLS check afterwards failed
  130/143  renew, plan, status stopped by SIGINT/SIGTERM (after removing our TXT values and releasing the Lease)
`;

type Commands = typeof import("./cli/commands.js");
/** RSA is the default; an EC key works for TLS, but the extension's own checks assume RSA. */
const ECDSA_WARNING =
  "acme.keyType is an ECDSA key type: ECDSA is unproven with the Azure ML extension (Microsoft's TLS troubleshooting checks the key with `openssl rsa -check`, which an EC key fails); rsa2048, the default, is the proven choice";

const COMMANDS: Record<string, "renewCommand" | "daemonCommand" | "planCommand" | "statusCommand" | "doctorCommand"> = {
  renew: "renewCommand",
  daemon: "daemonCommand",
  plan: "planCommand",
  status: "statusCommand",
  doctor: "doctorCommand",
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** How long cleanup may take after a signal; Kubernetes' default grace period is 30 s. */
const SHUTDOWN_BOUND_MS = 25_000;

/** Set by the first SIGTERM/SIGINT: from then on the signal handler decides the exit code, not the command. */
let stopping = false;

/** The first SIGTERM/SIGINT runs the command's handler (bounded), then exits with its code; later signals are ignored. */
function onSignal(logger: () => Logger, SIGNAL_EXIT: Commands["SIGNAL_EXIT"]): CommandContext["onSignal"] {
  let handler: ((signal: string) => Promise<number>) | undefined;
  for (const signal of Object.keys(SIGNAL_EXIT)) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      const bound = new Promise<number>((resolve) => setTimeout(() => resolve(SIGNAL_EXIT[signal]!), SHUTDOWN_BOUND_MS).unref());
      const handled = (handler ?? (async () => SIGNAL_EXIT[signal]!))(signal).catch((err: unknown) => {
        logger().error({ err }, "cleanup after the signal failed");
        return SIGNAL_EXIT[signal]!;
      });
      void Promise.race([handled, bound]).then((code) => process.exit(code));
    });
  }
  return (h) => void (handler = h);
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
        "enable-tls": { type: "boolean", default: false },
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
  const run = command ? COMMANDS[command] : undefined;
  if (!run) {
    process.stderr.write(`amlcert: ${command ? `unknown command "${command}"` : "no command given"}\n\n${USAGE}`);
    return ExitCode.Config;
  }
  if (rest.length > 0) {
    process.stderr.write(`amlcert: unexpected argument "${rest[0]}"\n\n${USAGE}`);
    return ExitCode.Config;
  }
  if (parsed.values.force && command !== "renew") {
    process.stderr.write(`amlcert: --force applies to renew only\n\n${USAGE}`);
    return ExitCode.Config;
  }
  if (parsed.values["enable-tls"] && command !== "renew") {
    process.stderr.write(`amlcert: --enable-tls applies to renew only\n\n${USAGE}`);
    return ExitCode.Config;
  }

  const [{ loadConfig }, { createLogger }, commands] = await Promise.all([import("./config/load.js"), import("./observability/logger.js"), import("./cli/commands.js")]);
  let logger: Logger = createLogger({ level: env.AMLCERT_LOG_LEVEL ?? "info", format: "auto" });
  const signals = onSignal(() => logger, commands.SIGNAL_EXIT);
  try {
    const loaded = loadConfig({ path: parsed.values.config, env });
    logger = createLogger({ level: loaded.config.log.level, format: loaded.config.log.format });
    const keyType = loaded.config.acme.keyType;
    if (keyType.startsWith("ecdsa")) logger.warn({ stage: "config", setting: "acme.keyType", keyType }, ECDSA_WARNING);
    const wanted = (parsed.values.target ?? []).map((t) => t.toLowerCase());
    const unknown = wanted.filter((w) => !loaded.config.targets.some((t) => t.fqdn === w));
    if (unknown.length > 0) {
      throw new AmlcertError("CONFIG_INVALID", "config", `--target ${unknown.join(", ")}: not among the configured targets (${loaded.config.targets.map((t) => t.fqdn).join(", ")})`);
    }
    return await commands[run]({
      config: loaded.config,
      eabHmacKey: loaded.eabHmacKey,
      targets: wanted.length > 0 ? loaded.config.targets.filter((t) => wanted.includes(t.fqdn)) : loaded.config.targets,
      env,
      logger,
      clock: systemClock,
      force: parsed.values.force ?? false,
      enableTls: parsed.values["enable-tls"] ?? false,
      holder: `${env.POD_NAME ?? hostname()}/${process.pid}`,
      version: version(),
      human: Boolean(process.stdout.isTTY) && !parsed.values.json,
      out: (text) => void process.stdout.write(text),
      onSignal: signals,
    });
  } catch (err) {
    if (isAmlcertError(err)) {
      if (err.code === "CONFIG_INVALID") process.stderr.write(`amlcert: ${err.message}\n`);
      else logger.error({ stage: err.stage, err }, err.message);
      return err.exitCode;
    }
    // the logger's err serializer does the serializing (once)
    logger.fatal({ err }, "internal error: please report this");
    return ExitCode.Internal;
  }
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    // After a signal, its handler exits (143/130 for a one-shot run, once the clean-up is done).
    if (stopping) return;
    // Exit now: SDK keep-alive sockets must not hold a CronJob pod open. stdout/stderr writes are synchronous
    // for files and pipes, so nothing is lost.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`amlcert: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(ExitCode.Internal);
  },
);
