/**
 * Live alerting, end to end: Debian's real `prometheus` and `prometheus-pushgateway` on loopback, loading the
 * shipped rules (deploy/prometheus/amlcert-rules.yaml, only their `for:` shortened to 1s) and scraping both shapes
 * of amlcert's series, while the built CLI runs against Pebble and the stand-ins exactly as a user runs it:
 *   - CronJob path: `amlcert renew` with metrics.pushgateway set pushes each run to the Pushgateway, which
 *     Prometheus scrapes with honor_labels (job "pushgateway"; the pushed series keep job "amlcert" and target);
 *   - daemon path: `amlcert daemon` as a long-running child, scraped directly as job "amlcert" (the job name the
 *     rules' header asks for).
 * A renewal failure is injected through the ARM stand-in (Azure RBAC denies the TXT write), AmlcertRenewalFailing is
 * read from /api/v1/alerts (where Prometheus decides "firing"; no Alertmanager), and a later successful run
 * resolves it. Last, every PromQL expression of the shipped Grafana dashboard is evaluated on this Prometheus.
 *
 * Two targets on two clusters keep the paths apart: cron.contoso.test is only ever run by `amlcert renew`,
 * ml.contoso.test only by the daemon (`--target`), each with its own durable history. The tests of this file run
 * in order and build on each other (the dashboard needs the series the paths produced).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, ROOT, startHarness, type CliRun, type Harness } from "../harness/harness.js";
import { freePort } from "../servers/pebble.js";
import { startPrometheus, type PromAlert, type Prometheus, type Sample } from "../servers/prometheus.js";
import { spawnLogged, type LoggedChild } from "../servers/child-process.js";
import { startPushgateway, type Pushgateway } from "../servers/pushgateway.js";
import { dashboardQueries, expandGrafanaVariables, variableSelectors, type Dashboard } from "../prometheus/promql.js";

const CRON = "cron.contoso.test";
const DAEMON = "ml.contoso.test";
const RULES = join(ROOT, "deploy/prometheus/amlcert-rules.yaml");
const DASHBOARD = JSON.parse(readFileSync(join(ROOT, "deploy/grafana/amlcert-dashboard.json"), "utf8")) as Dashboard;
/** every bounded wait on Prometheus (a scrape, a rule evaluation, a run of the daemon) */
const WAIT_MS = 60_000;
/** the TXT write a DNS-01 challenge needs; denying it fails a run at stage dns-challenge (AZURE_FORBIDDEN) */
const TXT_WRITE = "Microsoft.Network/dnszones/TXT/write";
/**
 * The daemon's schedule: every 5 seconds (six fields, seconds first), no jitter. After a failure the daemon's retry
 * table waits 5 minutes, but never past the next scheduled time, so the run after the fault is removed comes
 * within seconds instead.
 */
const EVERY_5_SECONDS = "*/5 * * * * *";

/** A long-running CLI child (the daemon) on a known port. */
interface CliChild extends LoggedChild {
  port: number;
}

function spawnDaemon(h: Harness, config: string, port: number, args: string[]): CliChild {
  return { ...spawnLogged(process.execPath, [CLI, "daemon", "--config", config, ...args], { env: h.cliEnv() }), port };
}

function resultOf(run: CliRun, fqdn: string): Record<string, unknown> {
  const r = run.lines.find((l) => l.fqdn === fqdn);
  if (!r) throw new Error(`no result line for ${fqdn} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

const tail = (text: string, lines = 40) => text.trimEnd().split("\n").slice(-lines).join("\n");

describe("alerting on a real Prometheus and Pushgateway, with the shipped rules", () => {
  let h: Harness;
  let gateway: Pushgateway;
  let prom: Prometheus;
  let daemon: CliChild | undefined;
  let daemonPort: number;
  let cronConfig: string;
  let daemonConfig: string;
  /** Prometheus' own evaluation time of a moment when the last push of CRON was a failed run */
  let cronFailingAt: Date | undefined;

  beforeAll(async () => {
    h = await startHarness({
      clusters: [
        { name: "aks-cron", fqdn: CRON },
        { name: "aks-daemon", fqdn: DAEMON },
      ],
    });
    gateway = await startPushgateway();
    // The daemon's port is chosen now so that Prometheus' configuration can name it; until the daemon listens its
    // scrape fails (up == 0), which only AmlcertMetricsAbsent reads.
    daemonPort = await freePort();
    prom = await startPrometheus({
      scrape: [
        { job: "amlcert", targets: [`127.0.0.1:${daemonPort}`] },
        { job: "pushgateway", targets: [`127.0.0.1:${gateway.port}`], honorLabels: true },
      ],
      rules: [{ path: RULES, forOverride: "1s" }],
      scrapeIntervalSeconds: 1,
      evaluationIntervalSeconds: 1,
    });
    cronConfig = h.writeConfig({ metrics: { pushgateway: gateway.url } }, "cron.yaml");
    daemonConfig = h.writeConfig({ daemon: { listen: `127.0.0.1:${daemonPort}`, schedule: EVERY_5_SECONDS, jitter: "0s", runAtStart: true } }, "daemon.yaml");
  });

  afterAll(async () => {
    await daemon?.stop(10_000);
    await prom?.close();
    await gateway?.close();
    await h?.stop();
  });

  /**
   * Each test is a step of one of two stories (CronJob, daemon). A step runs once, after the steps it follows, so
   * any test also passes alone (scripts/test.sh -t '<name>'): it runs what it needs first.
   */
  const once = <T>(step: () => Promise<T>): (() => Promise<T>) => {
    let done: Promise<T> | undefined;
    return () => (done ??= step());
  };

  /** the AmlcertRenewalFailing alerts (pending or firing) of one target */
  const renewalFailing = async (target: string): Promise<PromAlert[]> =>
    (await prom.alerts()).filter((a) => a.labels.alertname === "AmlcertRenewalFailing" && a.labels.target === target);

  /** bounded polling of Prometheus; while the daemon runs, its exit ends the wait at once with its log */
  async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>): Promise<T> {
    const wait = prom.waitFor(probe, { timeoutMs: WAIT_MS, intervalMs: 200, what });
    const d = daemon;
    const waits: Promise<T>[] = [wait];
    if (d && !d.hasExited()) {
      waits.push(d.exited.then((code) => Promise.reject(new Error(`amlcert daemon exited (${code}) while waiting for ${what}:\n${tail(d.output())}`))));
    }
    try {
      return await Promise.race(waits);
    } catch (err) {
      const alerts = await prom.alerts().catch(() => []);
      const log = d ? `\ndaemon log:\n${tail(d.output())}` : "";
      throw new Error(`${(err as Error).message}\nalerts: ${JSON.stringify(alerts)}${log}`);
    } finally {
      void wait.catch(() => undefined);
    }
  }

  /** the value of one pushed gauge of CRON's group, as the Pushgateway holds it */
  async function pushed(family: string): Promise<string | undefined> {
    const group = (await gateway.groups()).find((g) => g.labels.job === "amlcert" && g.labels.target === CRON);
    return group?.families.get(family)?.metrics[0]?.value;
  }

  const cronFirstFailure = once(async () => {
    h.arm.deny({ action: TXT_WRITE });
    const run = await h.runCli(["renew", "--config", cronConfig, "--target", CRON]);
    expect(run.code, run.stderr).toBe(3);
    expect(resultOf(run, CRON).error).toMatchObject({ code: "AZURE_FORBIDDEN", stage: "dns-challenge" });
    expect(await pushed("amlcert_consecutive_failures")).toBe("1");

    const alert = await until(`AmlcertRenewalFailing firing for ${CRON}`, async () => (await renewalFailing(CRON)).find((a) => a.state === "firing"));
    expect(alert.labels).toEqual({ alertname: "AmlcertRenewalFailing", severity: "warning", job: "amlcert", target: CRON });
    expect(Number(alert.value)).toBe(1);
    expect(alert.annotations.summary).toBe(`amlcert cannot renew ${CRON}`);
    expect(alert.annotations.description).toContain(`The last 1 run(s) for ${CRON} failed (CronJob, pushed as job amlcert).`);
  });

  const cronSecondFailure = once(async () => {
    await cronFirstFailure();
    const run = await h.runCli(["renew", "--config", cronConfig, "--target", CRON]);
    expect(run.code, run.stderr).toBe(3);
    expect(await pushed("amlcert_consecutive_failures")).toBe("2");

    const seen = await until("Prometheus to scrape the second push (2 consecutive failures)", async () => {
      const s = await prom.query(`amlcert_consecutive_failures{job="amlcert", target="${CRON}"}`);
      return s.length === 1 && s[0]!.value === 2 ? s[0]! : undefined;
    });
    expect(seen.metric).toEqual({ __name__: "amlcert_consecutive_failures", job: "amlcert", target: CRON });
    cronFailingAt = new Date(seen.timestamp * 1000);
    const alert = await until(`AmlcertRenewalFailing for ${CRON} with value 2`, async () => (await renewalFailing(CRON)).find((a) => a.state === "firing" && Number(a.value) === 2));
    expect(alert.annotations.description).toContain(`The last 2 run(s) for ${CRON} failed (CronJob, pushed as job amlcert).`);
  });

  const cronRecovers = once(async () => {
    await cronSecondFailure();
    h.arm.clearAuthorization();
    const run = await h.runCli(["renew", "--config", cronConfig, "--target", CRON]);
    expect(run.code, run.stderr).toBe(0);
    expect(resultOf(run, CRON)).toMatchObject({ action: "renewed", servingOk: true });
    expect(await pushed("amlcert_consecutive_failures")).toBe("0");

    await until(`AmlcertRenewalFailing for ${CRON} to resolve`, async () => (await renewalFailing(CRON)).length === 0);
    const s = await prom.query(`amlcert_consecutive_failures{job="amlcert", target="${CRON}"}`);
    expect(s.map((x) => x.value)).toEqual([0]);
  });

  const daemonFailsAtStart = once(async () => {
    await cronRecovers();
    h.arm.deny({ action: TXT_WRITE });
    daemon = spawnDaemon(h, daemonConfig, daemonPort, ["--target", DAEMON]);
    const instance = `127.0.0.1:${daemonPort}`;

    const alert = await until(`AmlcertRenewalFailing firing for ${DAEMON}`, async () => (await renewalFailing(DAEMON)).find((a) => a.state === "firing"));
    expect(alert.labels).toEqual({ alertname: "AmlcertRenewalFailing", severity: "warning", job: "amlcert", instance, target: DAEMON });
    // At least 1: while the fault stays, the daemon runs the target again at each 5-second slot (the retry is
    // capped by the schedule), so by the time the alert fires the count may already be higher.
    expect(Number(alert.value)).toBeGreaterThanOrEqual(1);
    expect(alert.annotations.description).toMatch(new RegExp(`^The last \\d+ run\\(s\\) for ml\\.contoso\\.test failed \\(daemon 127\\.0\\.0\\.1:${daemonPort}\\)\\.`));
    expect(daemon.output()).toMatch(/"code":"AZURE_FORBIDDEN"/);
  });

  const daemonRecovers = once(async () => {
    await daemonFailsAtStart();
    h.arm.clearAuthorization();
    await until(`AmlcertRenewalFailing for ${DAEMON} to resolve`, async () => (await renewalFailing(DAEMON)).length === 0);
    const instance = `127.0.0.1:${daemonPort}`;
    const failures = await prom.query(`amlcert_consecutive_failures{job="amlcert", target="${DAEMON}"}`);
    expect(failures.map((x) => [x.metric.instance, x.value])).toEqual([[instance, 0]]);
    const renewed = await prom.query(`amlcert_runs_total{job="amlcert", instance="${instance}", target="${DAEMON}", result="renewed"}`);
    expect(renewed.map((x) => x.value)).toEqual([1]);
  });

  describe("CronJob path: amlcert renew pushes to the Pushgateway, Prometheus scrapes it", () => {
    it("when the first run fails, AmlcertRenewalFailing fires for the target with the pushed job and no instance", () => cronFirstFailure());

    it("when the next run (a new process) fails too, it pushes 2 consecutive failures, read from the durable history", () => cronSecondFailure());

    it("when the fault is gone, the next run renews (exit 0), pushes 0, and the alert resolves", () => cronRecovers());
  });

  describe("daemon path: Prometheus scrapes amlcert daemon as job amlcert", () => {
    it("when the run at start fails, AmlcertRenewalFailing fires for the target with the daemon's instance", () => daemonFailsAtStart());

    it("when the fault is gone, the daemon's next scheduled run succeeds and the alert resolves", () => daemonRecovers());
  });

  describe("the shipped dashboard on this Prometheus (both shapes scraped: the daemon still runs)", () => {
    const queries = dashboardQueries(DASHBOARD);
    /**
     * Expressions that by nature return no series at the end of this test, and why; each is required to return
     * series at `cronFailingAt` instead (a moment when the CronJob's last push was a failed run).
     */
    const EMPTY_AT_END: Record<string, string> = {
      // A pushed failure counter exists only in a failed run's push; the last push of CRON was a successful run,
      // and PUT replaced the whole group, so no pushed amlcert_renewal_failures_total remains.
      "Failures by stage B": "the last pushed run of the CronJob succeeded, and its push replaced the failed run's series",
    };

    it("has queries to check, among them every one named as empty at the end", () => {
      expect(queries.length).toBeGreaterThan(0);
      for (const key of Object.keys(EMPTY_AT_END)) expect(queries.map((q) => `${q.panel} ${q.refId}`)).toContain(key);
    });

    it.each(queries.map((q) => [q.panel, q.refId, q.expr] as const))("%s, query %s, evaluates and returns series", async (panel, refId, expr) => {
      await daemonRecovers();
      const promql = expandGrafanaVariables(expr);
      const now = await prom.queryRaw(promql);
      expect({ httpStatus: now.httpStatus, status: now.status, error: now.error }).toEqual({ httpStatus: 200, status: "success", error: undefined });
      const atEnd = await prom.query(promql);
      const why = EMPTY_AT_END[`${panel} ${refId}`];
      if (why === undefined) {
        expect(atEnd.length, `${panel} ${refId}: ${promql}`).toBeGreaterThan(0);
      } else {
        expect(atEnd, why).toEqual([]);
        expect(cronFailingAt, "the CronJob tests recorded when its last push was a failure").toBeDefined();
        const earlier: Sample[] = await prom.query(promql, cronFailingAt);
        expect(earlier.length, `${panel} ${refId} at ${cronFailingAt!.toISOString()}: ${promql}`).toBeGreaterThan(0);
      }
    });

    it.each(variableSelectors(DASHBOARD).map((v) => [v.variable, v.selector] as const))("variable %s finds the values of both shapes", async (variable, selector) => {
      await daemonRecovers();
      const got = await prom.query(expandGrafanaVariables(selector));
      const label = variable === "job" ? "job" : "target";
      const values = [...new Set(got.map((s) => s.metric[label]))].sort();
      expect(values).toEqual(variable === "job" ? ["amlcert"] : [CRON, DAEMON]);
    });
  });

  it("the daemon stops on SIGTERM and exits 0", async () => {
    await daemonRecovers();
    const code = await daemon!.stop(40_000);
    expect(code, tail(daemon!.output())).toBe(0);
    expect(daemon!.output()).toContain("amlcert daemon stopped");
    expect(daemon!.output()).not.toContain("PRIVATE KEY");
  });
});
