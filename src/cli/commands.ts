/**
 * One function per command. Each gets a loaded configuration and its selected targets, builds the app (process
 * scope) once, runs, and returns the exit code. Only src/cli.ts touches `process`; signals arrive as `onSignal`.
 */
import type { Config, TargetConfig } from "../config/schema.js";
import type { Logger } from "../observability/logger.js";
import type { Clock } from "../ports.js";
import type { App } from "../app/compose.js";
import type { Metrics } from "../observability/metrics.js";
import { ExitCode } from "../errors.js";

// Each command imports what it uses when it runs (a CronJob's `renew` without a Pushgateway never loads
// prom-client, `plan` never loads the daemon); see bench/README.md for what each import costs at start-up.

export interface CommandContext {
  config: Config;
  eabHmacKey?: string;
  targets: TargetConfig[];
  env: Record<string, string | undefined>;
  logger: Logger;
  clock: Clock;
  force: boolean;
  /** renew --enable-tls */
  enableTls?: boolean;
  holder: string;
  version: string;
  /** print results for a person (a terminal without --json) */
  human: boolean;
  out: (text: string) => void;
  /** register what a SIGTERM/SIGINT does; the CLI exits with the returned code once it resolves */
  onSignal: (handler: (signal: string) => Promise<number>) => void;
}

/** Exit codes for a run stopped by a signal, after cleanup (the shell's 128 + signal number). */
export const SIGNAL_EXIT: Record<string, number> = { SIGTERM: 143, SIGINT: 130 };

async function app(ctx: CommandContext, metrics?: Metrics): Promise<App> {
  const { createApp } = await import("../app/compose.js");
  return createApp({ config: ctx.config, eabHmacKey: ctx.eabHmacKey, env: ctx.env, logger: ctx.logger, clock: ctx.clock, force: ctx.force, enableTls: ctx.enableTls, holder: ctx.holder, metrics });
}

const lines = <T>(ctx: CommandContext, items: T[], human: (t: T) => string) => ctx.out(items.map((i) => (ctx.human ? human(i) : JSON.stringify(i))).join("\n") + "\n");

/** A one-shot run (CronJob): a signal aborts the run in flight and removes our TXT values; exit 143/130. */
function stopOnSignal(ctx: CommandContext, a: App): AbortSignal {
  const stop = new AbortController();
  ctx.onSignal(async (signal) => {
    ctx.logger.warn({ signal }, `${signal}: removing our TXT values and releasing the Lease, then exiting`);
    stop.abort(new Error(`stopped by ${signal}`));
    await a.shutdown();
    return SIGNAL_EXIT[signal] ?? ExitCode.Internal;
  });
  return stop.signal;
}

export async function renewCommand(ctx: CommandContext): Promise<number> {
  const push = ctx.config.metrics.pushgateway;
  const metrics = push ? (await import("../observability/metrics.js")).createMetrics({ version: ctx.version }) : undefined;
  const [a, { exitCodeOf, runRenew, worstExitCode }, { formatRenewResult }] = await Promise.all([app(ctx, metrics), import("../app/run.js"), import("../app/present.js")]);
  const outcomes = await runRenew(a, ctx.targets, stopOnSignal(ctx, a), ctx.config.renewal.concurrency);
  if (push && metrics) await (await import("../observability/pushgateway.js")).pushMetrics({ url: push, job: ctx.config.metrics.job, targets: ctx.targets.map((t) => t.fqdn), metrics, logger: ctx.logger });
  lines(ctx, outcomes, formatRenewResult);
  return worstExitCode(outcomes.map(exitCodeOf));
}

export async function planCommand(ctx: CommandContext): Promise<number> {
  const [a, { runPlan, worstExitCode }, { formatPlanLine }] = await Promise.all([app(ctx), import("../app/run.js"), import("../app/present.js")]);
  stopOnSignal(ctx, a);
  const results = await runPlan(a, ctx.targets, ctx.logger);
  lines(ctx, results, formatPlanLine);
  return worstExitCode(results.map((r) => r.exitCode));
}

export async function statusCommand(ctx: CommandContext): Promise<number> {
  const [a, { runStatus }, { formatStatusJson, formatStatusTable, statusExitCode }] = await Promise.all([app(ctx), import("../app/status.js"), import("../app/status-view.js")]);
  stopOnSignal(ctx, a);
  const results = await runStatus(a, ctx.targets, ctx.logger, () => ctx.clock.now());
  if (ctx.human) ctx.out(formatStatusTable(results, ctx.clock.now()));
  else ctx.out(results.map(formatStatusJson).join("\n") + "\n");
  return statusExitCode(results);
}

/** The long-running container: runs until SIGTERM/SIGINT, then stops cleanly and exits 0. */
export async function daemonCommand(ctx: CommandContext): Promise<number> {
  const metrics = (await import("../observability/metrics.js")).createMetrics({ version: ctx.version });
  const [a, { serveDaemon }] = await Promise.all([app(ctx, metrics), import("../app/serve.js")]);
  const daemon = await serveDaemon(a, ctx.targets, { config: ctx.config, metrics, logger: ctx.logger, clock: ctx.clock });
  ctx.onSignal(async (signal) => {
    ctx.logger.info({ signal }, `${signal}: stopping the daemon`);
    await daemon.stop();
    return ExitCode.Ok;
  });
  await daemon.done;
  return ExitCode.Ok;
}

/** `amlcert doctor`: a read-only preflight per target; exit 3 when anything would stop a renewal. */
export async function doctorCommand(ctx: CommandContext): Promise<number> {
  const { runDoctor, doctorExitCode } = await import("../app/doctor.js");
  const { formatDoctorJson, formatDoctorReport } = await import("../app/doctor-view.js");
  const a = await app(ctx);
  stopOnSignal(ctx, a);
  const reports = await runDoctor(a, ctx.config, ctx.targets);
  ctx.out(reports.map((r) => (ctx.human ? formatDoctorReport(r) : formatDoctorJson(r))).join(ctx.human ? "\n\n" : "\n") + "\n");
  return doctorExitCode(reports);
}
