/**
 * `amlcert daemon`: the scheduler (./daemon.ts) over the targets, each run a renewTarget through the same
 * process-scope wiring, plus one HTTP port for /metrics, /healthz and /readyz. Stopping aborts the run in flight
 * (its TXT values are removed, its Lease released) and closes the port.
 */
import type { Config, TargetConfig } from "../config/schema.js";
import { parseServer } from "../dns-check/name-servers.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { startHttpServer } from "../observability/http-server.js";
import type { Clock } from "../ports.js";
import { renewTarget } from "../renewal/renew.js";
import type { App } from "./compose.js";
import { startDaemon } from "./daemon.js";

export interface RunningDaemon {
  /** the bound HTTP port */
  port: number;
  stop(): Promise<void>;
  /** resolves once the scheduler stopped */
  done: Promise<void>;
}

export async function serveDaemon(app: App, targets: TargetConfig[], opts: { config: Config; metrics: Metrics; logger: Logger; clock: Clock }): Promise<RunningDaemon> {
  const { config, metrics, logger, clock } = opts;
  const byFqdn = new Map(targets.map((t) => [t.fqdn, t]));
  const target = (fqdn: string) => byFqdn.get(fqdn)!;

  // ready once the Azure sign-in worked; a failure is retried by every run (and by this probe's next call)
  let signedIn = false;
  let signInError: string | undefined;
  const signIn = () =>
    app.ready().then(
      () => ((signedIn = true), (signInError = undefined)),
      (err: unknown) => ((signedIn = false), (signInError = (err as Error).message)),
    );
  await signIn();

  const daemon = startDaemon(
    targets.map((t) => ({ fqdn: t.fqdn })),
    {
      clock,
      logger,
      runTarget: async (fqdn, signal) => {
        const { deps, settings } = app.target(target(fqdn));
        const outcome = await renewTarget(deps, { ...settings, force: false }, signal);
        if (outcome.action === "skipped" && outcome.reason === "Stopped") throw signal.reason;
        signedIn = outcome.error?.code !== "AZURE_AUTH";
        return outcome;
      },
      history: async (fqdn) => {
        const h = await app.history(target(fqdn)).read(fqdn);
        if (h) metrics.observeHistory(h);
        return h;
      },
      onScheduled: (fqdn, at) => void app.scheduled(target(fqdn), at),
    },
    { schedule: config.daemon.schedule, jitterMs: config.daemon.jitter, runAtStart: config.daemon.runAtStart },
  );

  const listen = parseServer(config.daemon.listen)!;
  const server = await startHttpServer({
    host: listen.host,
    port: listen.port,
    metrics,
    health: () => {
      const h = daemon.health();
      return { ok: h.ok, detail: { lastTick: h.lastTick?.toISOString(), running: h.running, next: h.next.map((n) => ({ fqdn: n.fqdn, at: n.at.toISOString() })) } };
    },
    ready: () => {
      if (!signedIn) void signIn();
      return { ok: signedIn, detail: { config: "loaded", targets: targets.length, azure: signedIn ? "signed in" : (signInError ?? "not signed in yet") } };
    },
  });
  logger.info({ listen: `${listen.host}:${server.port}`, schedule: config.daemon.schedule, targets: targets.length }, "amlcert daemon started");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // the scheduler aborts the run in flight; TXT clean-up and the Lease release run beside it, not after
      await Promise.all([daemon.stop(), app.shutdown()]);
      await server.close();
      logger.info({}, "amlcert daemon stopped");
    })());
  return { port: server.port, stop, done: daemon.done };
}
