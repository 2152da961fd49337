/**
 * End to end: `amlcert daemon` as a user runs it, the built CLI as a long-running child process against the real
 * Pebble and the loopback stand-ins; its /metrics, /healthz and /readyz scraped over HTTP; the durable history read
 * from the Kubernetes stand-in's store. Last, the same wiring in-process (createApp) to show that repeated runs
 * hold no more resources than the second one did.
 */
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { servedCertificate } from "../support/served-certificate.js";
import { promtoolCheckMetrics as promtoolCheck } from "../prometheus/promtool.js";
import { startHarness, type Harness, type SpawnedCli } from "../harness/harness.js";
import { freePort } from "../servers/pebble.js";
import { findDef } from "../servers/kube-resources.js";
import { loadConfig } from "../../src/config/load.js";
import { createApp } from "../../src/app/compose.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { createLogger } from "../../src/observability/logger.js";
import { renewTarget } from "../../src/renewal/renew.js";
import { retryDelay } from "../../src/schedule/retry.js";
import { systemClock } from "../../src/ports.js";
import type { TargetHistory } from "../../src/history/history.js";

const FQDN = "ml.contoso.test";
/** once a year: after the check at start, nothing else is scheduled while a test runs */
const YEARLY = "0 0 1 1 *";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format, sample lines only (no escaped quotes occur in our label values). */
function parseExposition(text: string): Sample[] {
  return text
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`not a sample line: ${l}`);
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[k!] = v!;
      return { name: m[1]!, labels, value: Number(m[3]) };
    });
}

/** Every sample of `name` whose labels include `labels`. */
const samples = (all: Sample[], name: string, labels: Record<string, string> = {}) =>
  all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

/** The one sample of `name` with `labels`; undefined when there is none. */
function value(all: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const found = samples(all, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

async function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
}

const scrape = async (port: number) => parseExposition((await get(port, "/metrics")).body);

/** Poll `probe` until it returns something other than undefined; bounded by `timeoutMs`. */
async function pollFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Poll a daemon's /metrics until the target has finished `runs` runs (any result). */
function runsFinished(d: Daemon, runs: number, timeoutMs = 90_000): Promise<Sample[]> {
  return pollFor(
    `${runs} finished run(s) in ${d.name}'s /metrics`,
    async () => {
      if (d.cli.stderr().includes('"amlcert daemon stopped"')) throw new Error(`${d.name} stopped\n${d.cli.stderr()}`);
      const all = await scrape(d.port);
      const total = samples(all, "amlcert_runs_total", { target: FQDN }).reduce((n, s) => n + s.value, 0);
      return total >= runs ? all : undefined;
    },
    timeoutMs,
  );
}


const notAfterSeconds = (c: X509Certificate) => Date.parse(c.validTo) / 1000;

/** TXT record sets left in any zone (our challenge values must always be removed). */
function txtLeft(h: Harness): string[] {
  return h.zones.allZones().flatMap((z) => h.zones.listRecordSets(z, "TXT").map((r) => `${r.name}.${z.name}`));
}

/** The durable history of the target, as stored in the ConfigMap amlcert-history in namespace azureml. */
function storedHistory(h: Harness, fqdn = FQDN): TargetHistory | undefined {
  let cm: { data?: Record<string, string> };
  try {
    cm = h.clusters[0]!.kube.store.get(findDef("", "v1", "configmaps")!, "azureml", "amlcert-history") as { data?: Record<string, string> };
  } catch {
    return undefined;
  }
  const raw = cm.data?.[fqdn];
  return raw === undefined ? undefined : (JSON.parse(raw) as TargetHistory);
}

/** Every secret write that succeeded, in order: "<method> <name>" (a POST creates: its name is in the body, so "(new)"). */
function secretWrites(h: Harness): string[] {
  return h.clusters[0]!.kube.requests
    .filter((r) => r.resource === "secrets" && ["POST", "PUT", "PATCH", "DELETE"].includes(r.method) && r.status < 300)
    .map((r) => `${r.method} ${r.name ?? "(new)"}`);
}

/** cert.pem of a secret in namespace azureml, as stored. */
function secretPem(h: Harness, name: string): string {
  return h.clusters[0]!.kube.getSecret("azureml", name)?.["cert.pem"] ?? "";
}

function leaseHolder(h: Harness): string {
  const lease = h.clusters[0]!.kube.store.get(findDef("coordination.k8s.io", "v1", "leases")!, "azureml", "amlcert") as { spec?: { holderIdentity?: string } };
  return lease.spec?.holderIdentity ?? "";
}

interface Daemon {
  name: string;
  cli: SpawnedCli;
  port: number;
}

/** A daemon config: this harness, a free port, the yearly schedule (so only the check at start runs), no jitter. */
async function daemonConfig(h: Harness, name: string, overrides: Record<string, unknown> = {}): Promise<{ path: string; port: number }> {
  const port = await freePort();
  const path = h.writeConfig({ daemon: { listen: `127.0.0.1:${port}`, schedule: YEARLY, jitter: "0s", runAtStart: true }, ...overrides }, `${name}.yaml`);
  return { path, port };
}

/** Start `amlcert daemon` and wait until its HTTP port is up (it logs the address it bound). */
async function startDaemonCli(h: Harness, name: string, config: { path: string; port: number }): Promise<Daemon> {
  const cli = h.spawnCli(["daemon", "--config", config.path], { env: { POD_NAME: name } });
  const started = JSON.parse(await cli.waitForStderr(/"msg":"amlcert daemon started"/, 60_000)) as { listen: string; schedule: string; targets: number };
  expect(started).toMatchObject({ listen: `127.0.0.1:${config.port}`, schedule: YEARLY, targets: 1 });
  return { name, cli, port: config.port };
}

/** The next 1 January, 00:00 UTC: when the yearly schedule runs next (offset 0 without jitter). */
function nextNewYear(now = new Date()): string {
  return new Date(Date.UTC(now.getUTCFullYear() + 1, 0, 1)).toISOString();
}

describe("amlcert daemon: the first run at start, the HTTP port, and repeated runs in-process", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("when started, it checks the target at once, renews the first certificate, and /metrics, /healthz and /readyz say so", async () => {
    const d = await startDaemonCli(h, "daemon-1", await daemonConfig(h, "daemon-1"));
    const all = await runsFinished(d, 1);
    const served = await servedCertificate(h);
    // the run's outcome, then the next attempt the scheduler chose (the yearly slot), written one after the other
    const stored = await pollFor("the next attempt in the history", () => (storedHistory(h)?.nextAttempt === nextNewYear() ? storedHistory(h) : undefined), 30_000);

    expect(samples(all, "amlcert_runs_total", { target: FQDN }).map((s) => [s.labels.result, s.value])).toEqual([["renewed", 1]]);
    expect(value(all, "amlcert_consecutive_failures", { target: FQDN })).toBe(0);
    expect(value(all, "amlcert_certificate_not_after_timestamp_seconds", { target: FQDN })).toBe(notAfterSeconds(served));
    expect(value(all, "amlcert_serving_ok", { target: FQDN })).toBe(1);
    expect(value(all, "amlcert_dns_ok", { target: FQDN })).toBe(1);
    expect(samples(all, "amlcert_renewal_failures_total")).toEqual([]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(served.serialNumber.toUpperCase());
    expect(stored).toMatchObject({ fqdn: FQDN, consecutiveFailures: 0, lastAction: "renewed", serial: served.serialNumber.toUpperCase(), nextAttempt: nextNewYear() });
    await pollFor("the next attempt in /metrics", async () => ((await scrape(d.port)).some((s) => s.name === "amlcert_next_attempt_timestamp_seconds") ? true : undefined));
    expect(value(await scrape(d.port), "amlcert_next_attempt_timestamp_seconds", { target: FQDN })).toBe(Date.parse(nextNewYear()) / 1000);

    const health = await get(d.port, "/healthz");
    expect(health.status).toBe(200);
    expect(health.type).toMatch(/^application\/json/);
    const healthBody = JSON.parse(health.body) as { ok: boolean; detail: { lastTick: string; running?: string; next: { fqdn: string; at: string }[] } };
    expect(healthBody).toEqual({ ok: true, detail: { lastTick: expect.any(String), next: [{ fqdn: FQDN, at: nextNewYear() }] } });
    const ready = await get(d.port, "/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ok: true, detail: { config: "loaded", targets: 1, azure: "signed in" } });

    const text = (await get(d.port, "/metrics")).body;
    const lint = await promtoolCheck(text);
    expect(lint, lint.output).toEqual({ code: 0, output: "" });

    expect(await d.cli.stop("SIGTERM")).toBe(0);
    expect(d.cli.stderr()).toContain('"msg":"amlcert daemon stopped"');
    await expect(get(d.port, "/healthz")).rejects.toThrow();
  });

  it("when a target is run 30 times in-process with the real wiring, the 30th run holds no more handles, sockets or clients than the 2nd", async () => {
    const env = h.cliEnv();
    const { config } = loadConfig({ path: h.writeConfig({}, "in-process.yaml"), env });
    const logged: string[] = [];
    // the last lines only, for a failure message: the test itself must not grow
    const destination = { write: (line: string) => void (logged.push(line) > 20 && logged.shift()) };
    const logger = createLogger({ level: "warn", format: "json", destination: destination as unknown as NodeJS.WritableStream });
    const metrics = createMetrics({ version: "test" });
    const app = createApp({ config, env, logger, clock: systemClock, force: false, holder: "in-process/1", metrics });
    const t = config.targets[0]!;
    const first = app.target(t);
    const kinds = () => {
      const counts: Record<string, number> = {};
      for (const k of process.getActiveResourcesInfo()) counts[k] = (counts[k] ?? 0) + 1;
      return counts;
    };
    const series = async () => (await metrics.text()).split("\n").filter((l) => l !== "" && !l.startsWith("#") && !/^(process|nodejs)_/.test(l)).length;
    const N = 30;
    const after: { kinds: Record<string, number>; series: number }[] = [];
    try {
      for (let run = 1; run <= N; run++) {
        const wiring = app.target(t);
        const outcome = await renewTarget(wiring.deps, wiring.settings);
        expect(outcome.error, logged.join("")).toBeUndefined();
        // the harness's daemon test above renewed already; either way every run after the first has nothing to do
        if (run > 1) expect(outcome).toMatchObject({ action: "none", reason: "UpToDate", servingOk: true });
        // the same process-scope clients every time
        expect(wiring).toBe(first);
        expect(app.cluster(t.kubernetes)).toBe(first.kube);
        after.push({ kinds: kinds(), series: await series() });
      }
    } finally {
      await app.shutdown();
    }
    const second = after[1]!;
    const last = after[N - 1]!;
    const grown = Object.entries(last.kinds)
      .filter(([kind, n]) => n > (second.kinds[kind] ?? 0))
      .map(([kind, n]) => `${kind}: ${second.kinds[kind] ?? 0} after run 2, ${n} after run ${N}`);
    expect(grown).toEqual([]);
    // open sockets (TLS ones included: both ends live in this process, the stand-ins' and the clients')
    expect(second.kinds.TCPSocketWrap).toBeGreaterThan(0);
    expect(last.series).toBe(second.series);
  });
});

describe("amlcert daemon: SIGTERM while a run waits for DNS propagation", () => {
  it("when stopped by SIGTERM mid-run, it removes its TXT value, releases the Lease, writes nothing, counts no failure, and exits 0", async () => {
    // the name servers lag a minute behind ARM, so the run is surely waiting when the signal comes
    const h = await startHarness({ propagationDelayMs: 60_000 });
    try {
      const d = await startDaemonCli(h, "daemon-slow", await daemonConfig(h, "daemon-slow", { dns: { propagationTimeout: "5m" } }));
      await d.cli.waitForStderr(/TXT value added/, 60_000);
      expect(await d.cli.stop("SIGTERM")).toBe(0);
      expect(d.cli.stderr()).toMatch(/SIGTERM: stopping the daemon/);
      expect(d.cli.stderr()).toContain('"msg":"amlcert daemon stopped"');
      expect(txtLeft(h)).toEqual([]);
      expect(leaseHolder(h)).toBe("");
      expect(h.arm.requests.filter((r) => r.method === "PATCH")).toEqual([]);
      // the manifests created every secret amlcert writes (both slots, the ACME account secret): nothing is created,
      // and the only secret written is the ACME account key
      expect(secretWrites(h)).toEqual(["PUT amlcert-acme-account"]);
      // the scheduler's plan at start is all the history holds: the stopped run concluded nothing
      expect(storedHistory(h)).toEqual({ fqdn: FQDN, consecutiveFailures: 0, nextAttempt: expect.any(String) });
    } finally {
      await h.stop();
    }
  });
});

describe("amlcert daemon: two replicas on one cluster", () => {
  it("when two daemons start together against one cluster, exactly one renews, the other then finds the certificate up to date, and both report the same state", async () => {
    const h = await startHarness();
    try {
      const kube = h.clusters[0]!.kube;
      const added: string[] = [];
      const unsubscribe = kube.onSecretChange((c) => {
        if (c.type === "ADDED") added.push(c.name);
      });
      // both runs' first Lease request is held until both have made it, so the two really contend for the Lease
      let gate!: () => void;
      const held = new Promise<void>((r) => (gate = r));
      const fault = kube.faults.add({ pathIncludes: "/leases", status: 0, times: 2, before: () => held });
      let daemons: Daemon[];
      try {
        const [ca, cb] = [await daemonConfig(h, "daemon-a"), await daemonConfig(h, "daemon-b")];
        daemons = await Promise.all([startDaemonCli(h, "daemon-a", ca), startDaemonCli(h, "daemon-b", cb)]);
        await pollFor("both daemons' runs to reach the Lease", () => (fault.hits === 2 ? true : undefined), 60_000);
      } finally {
        gate();
      }
      // the loser waits for the Lease while the winner runs (bounded by a lease duration and then some)
      const scrapes = await Promise.all(daemons.map((d) => runsFinished(d, 1, 150_000)));
      unsubscribe();
      const served = await servedCertificate(h);

      const results = scrapes.map((all) => samples(all, "amlcert_runs_total", { target: FQDN }).map((s) => `${s.labels.result}=${s.value}`));
      expect(results.flat().sort()).toEqual(["none=1", "renewed=1"]);
      // the one that found nothing to do had found the Lease held by the other
      const winner = results.findIndex((r) => r.includes("renewed=1"));
      expect(daemons[1 - winner]!.cli.stderr()).toContain(`"holder":"${daemons[winner]!.name}/`);
      // slots mode over the manifests' objects: nothing is created; the account key and slot -a are written once each
      expect(added).toEqual([]);
      // the store, then the rollout's annotation (done) once the extension confirmed it
      expect(secretWrites(h)).toEqual(["PUT amlcert-acme-account", "PUT aml-tls-a", "PUT aml-tls-a"]);
      expect(h.arm.requests.filter((r) => r.method === "PATCH")).toHaveLength(1);
      expect(served.serialNumber).toBe(new X509Certificate(secretPem(h, "aml-tls-a")).serialNumber);
      for (const all of scrapes) {
        expect(value(all, "amlcert_certificate_not_after_timestamp_seconds", { target: FQDN })).toBe(notAfterSeconds(served));
        expect(value(all, "amlcert_consecutive_failures", { target: FQDN })).toBe(0);
        expect(value(all, "amlcert_serving_ok", { target: FQDN })).toBe(1);
        expect(value(all, "amlcert_dns_ok", { target: FQDN })).toBe(1);
      }
      expect(await Promise.all(daemons.map((d) => d.cli.stop("SIGTERM")))).toEqual([0, 0]);
      expect(leaseHolder(h)).toBe("");
    } finally {
      await h.stop();
    }
  });
});

describe("amlcert daemon: the durable history across processes", () => {
  it("when two CronJob runs failed before it started, the daemon reports 2 consecutive failures at once, 3 after its own run fails, and retries on the third row of the table", async () => {
    const h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    let gate: (() => void) | undefined;
    try {
      h.arm.deny({ action: "Microsoft.Network/dnszones/TXT/write" });
      const cron = h.writeConfig();
      for (const n of [1, 2]) {
        const run = await h.runCli(["renew", "--config", cron]);
        expect(run.code, run.stderr).toBe(3);
        expect(storedHistory(h)).toMatchObject({ consecutiveFailures: n, lastError: { code: "AZURE_FORBIDDEN", stage: "dns-challenge" } });
      }
      const lastCronAttempt = storedHistory(h)!.lastAttempt!;

      // hold the daemon's first run at its Lease request, so its /metrics can be read before the run ends
      const held = new Promise<void>((r) => (gate = r));
      const fault = h.clusters[0]!.kube.faults.add({ pathIncludes: "/leases", status: 0, before: () => held });
      const d = await startDaemonCli(h, "daemon-after-cron", await daemonConfig(h, "daemon-after-cron"));
      await pollFor("the daemon's run to reach the Lease", () => (fault.hits > 0 ? true : undefined), 60_000);
      const before = await scrape(d.port);
      expect(value(before, "amlcert_consecutive_failures", { target: FQDN })).toBe(2);
      expect(value(before, "amlcert_last_run_timestamp_seconds", { target: FQDN })).toBe(Date.parse(lastCronAttempt) / 1000);
      expect(samples(before, "amlcert_runs_total")).toEqual([]);
      gate!();

      const after = await runsFinished(d, 1);
      expect(samples(after, "amlcert_runs_total", { target: FQDN }).map((s) => [s.labels.result, s.value])).toEqual([["failed", 1]]);
      expect(samples(after, "amlcert_renewal_failures_total", { target: FQDN }).map((s) => [s.labels.stage, s.labels.code, s.value])).toEqual([["dns-challenge", "AZURE_FORBIDDEN", 1]]);
      const retry = JSON.parse(await d.cli.waitForStderr(/"action":"failed".*"msg":"next attempt scheduled"/, 30_000)) as Record<string, unknown>;
      // the third failure in a row: the retry table's 30-minute row (jittered by the FQDN and the count), not the first row's 5 minutes
      expect(retry).toMatchObject({ fqdn: FQDN, why: "retry", consecutiveFailures: 3, retryReason: "Table", retryDelayMs: retryDelay({ consecutiveFailures: 3, now: new Date(), seed: `${FQDN}#3` }).delayMs });
      await pollFor("3 consecutive failures in /metrics", async () => (value(await scrape(d.port), "amlcert_consecutive_failures", { target: FQDN }) === 3 ? true : undefined), 30_000);
      // the next attempt is written to the history once it is decided, after the run's own record
      await pollFor("the retry time in the history", () => (storedHistory(h)?.nextAttempt === retry.at ? true : undefined), 30_000);
      expect(storedHistory(h)).toMatchObject({ consecutiveFailures: 3, lastError: { code: "AZURE_FORBIDDEN", stage: "dns-challenge" }, nextAttempt: retry.at });
      expect(await d.cli.stop("SIGTERM")).toBe(0);
    } finally {
      gate?.();
      h.arm.clearAuthorization();
      await h.stop();
    }
  });
});
