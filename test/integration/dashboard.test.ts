/**
 * The shipped Grafana dashboard (deploy/grafana/amlcert-dashboard.json): it parses, its data source is a template
 * variable, it has the panels the operators need, every panel's PromQL parses and evaluates on a real Prometheus
 * that scrapes both shapes of amlcert's series, and the counting queries count right on fixed series (promtool).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { daemonExposition, healthyTarget, pushgatewayExposition, type TargetState } from "../prometheus/amlcert-series.js";
import { startExpositionServer, type ExpositionServer } from "../prometheus/exposition-server.js";
import { allPanels, dashboardQueries, expandGrafanaVariables, variableSelectors, type Dashboard } from "../prometheus/promql.js";
import { PROMTOOL_BINARY, startPrometheus, type Prometheus } from "../servers/prometheus.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DASHBOARD_FILE = `${ROOT}deploy/grafana/amlcert-dashboard.json`;
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
const queries = dashboardQueries(dashboard);
const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

const panel = (title: string) => {
  const p = allPanels(dashboard).find((x) => x.title === title);
  if (!p) throw new Error(`no panel "${title}"`);
  return p;
};
const exprOf = (title: string, refId: string) => {
  const t = panel(title).targets?.find((x) => x.refId === refId);
  if (!t?.expr) throw new Error(`panel "${title}" has no query ${refId}`);
  return t.expr;
};

describe("deploy/grafana/amlcert-dashboard.json", () => {
  it("is a dashboard with a data source variable that every panel and query uses, and job and target variables", () => {
    expect(dashboard.uid).toBe("amlcert");
    expect(dashboard.title).toBe("amlcert");
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars["datasource"]).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(vars["job"]).toMatchObject({ type: "query", datasource: DATASOURCE, includeAll: true, multi: true, allValue: ".+" });
    expect(vars["target"]).toMatchObject({ type: "query", datasource: DATASOURCE, includeAll: true, multi: true, allValue: ".+" });
    for (const p of allPanels(dashboard).filter((x) => x.type !== "row")) {
      expect(p.datasource, p.title).toEqual(DATASOURCE);
      for (const t of p.targets ?? []) expect(t.datasource, `${p.title} ${t.refId}`).toEqual(DATASOURCE);
    }
    // panel ids are unique, and every panel sits inside the 24-column grid
    const ids = allPanels(dashboard).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of allPanels(dashboard)) expect(p.gridPos!.x + p.gridPos!.w, p.title).toBeLessThanOrEqual(24);
  });

  it("has the panels the issue asks for: certificates and days left per target, runs and failures by stage over time, stage duration quantiles, request status codes", () => {
    expect(panel("Certificates per target").type).toBe("table");
    expect(exprOf("Certificates per target", "A")).toContain("amlcert_certificate_not_after_timestamp_seconds");
    expect(panel("Days left per target").type).toBe("bargauge");
    expect(panel("Days left over time").type).toBe("timeseries");
    expect(exprOf("Runs by result", "A")).toContain("sum by (result)");
    expect(exprOf("Failures by stage", "A")).toContain("sum by (stage)");
    expect(exprOf("Failures by stage", "B")).toContain("sum by (stage)");
    expect(exprOf("Renewals per target", "A")).toContain('result="renewed"');
    const quantiles = panel("Stage duration quantiles by stage (daemon, over $window)").targets!.map((t) => t.expr);
    expect(quantiles).toEqual([0.5, 0.9, 0.99].map((q) => expect.stringContaining(`histogram_quantile(${q}, sum by (le, stage)`)));
    expect(exprOf("Requests by system and status", "A")).toContain("sum by (system, status)");
    // every panel that filters by target uses the variable
    for (const q of queries.filter((x) => x.expr.includes("target=~"))) expect(q.expr, q.panel).toContain('target=~"$target"');
  });

  it("every query uses only the variables the dashboard defines (and Grafana's interval variables)", () => {
    const defined = new Set([...dashboard.templating.list.map((v) => v.name), "__interval", "__rate_interval", "__range"]);
    for (const q of queries) {
      for (const m of q.expr.matchAll(/\$\{?(\w+)\}?/g)) expect(defined, `${q.panel} ${q.refId}: $${m[1]}`).toContain(m[1]);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Every expression on a real Prometheus that scrapes a daemon's /metrics and a Pushgateway's groups, so that an
// expression that parses but fails when it meets data (e.g. many-to-many matching) fails here.

const DAY = 86_400;
/** a healthy target that has also failed once and run a few times (so every panel has something to show) */
const target = (name: string, t: number, daemon: boolean): TargetState =>
  healthyTarget(name, t, daemon, {
    runs: { renewed: 1, none: 3 },
    failures: [{ stage: "propagation", code: "DNS_PROPAGATION_TIMEOUT", count: 1 }],
    stageSeconds: [
      { stage: "acme-order", seconds: 4.2 },
      { stage: "extension", seconds: 95 },
      { stage: "extension", seconds: 40 },
    ],
  });

describe("the dashboard's queries on a real Prometheus", () => {
  let daemon: ExpositionServer | undefined;
  let gateway: ExpositionServer | undefined;
  let prom: Prometheus | undefined;

  beforeAll(async () => {
    const t = Math.floor(Date.now() / 1000);
    daemon = await startExpositionServer(daemonExposition({ version: "0.1.0", requests: { "acme 200": 4, "acme 429": 1, "arm 200": 7 } }, [target("ml.contoso.test", t, true), target("ml2.contoso.test", t, true)]));
    gateway = await startExpositionServer(
      pushgatewayExposition(
        ["cron.contoso.test", "cron2.contoso.test"].map((name) => ({
          job: "amlcert",
          pushTime: t - 30,
          process: { version: "0.1.0", requests: { "acme 200": 3, "kubernetes 200": 9 } },
          state: target(name, t, false),
        })),
      ),
    );
    prom = await startPrometheus({
      scrape: [
        { job: "amlcert", targets: [daemon.hostPort] },
        { job: "pushgateway", targets: [gateway.hostPort], honorLabels: true },
      ],
    });
    // both shapes scraped at least twice (so offsets and rates meet data)
    await prom.waitFor(
      async () => {
        const s = await prom!.query("count_over_time(amlcert_consecutive_failures[1m])");
        return s.length === 4 && s.every((x) => x.value >= 2);
      },
      { timeoutMs: 30_000, what: "two scrapes of both shapes" },
    );
  });

  afterAll(async () => {
    await prom?.close();
    await daemon?.close();
    await gateway?.close();
  });

  it("a malformed expression is a 400 (bad_data), so the check below can fail", async () => {
    const a = await prom!.queryRaw('sum by (target) (rate(amlcert_runs_total{target=~".+"}[5m])');
    expect(a.httpStatus).toBe(400);
    expect(a.errorType).toBe("bad_data");
  });

  it.each(queries.map((q) => [q.panel, q.refId, q.expr] as const))("%s, query %s, parses and evaluates", async (_panel, _ref, expr) => {
    const a = await prom!.queryRaw(expandGrafanaVariables(expr));
    expect({ httpStatus: a.httpStatus, status: a.status, error: a.error }).toEqual({ httpStatus: 200, status: "success", error: undefined });
  });

  it.each(variableSelectors(dashboard).map((v) => [v.variable, v.selector] as const))("variable %s: its label_values selector parses and finds every target", async (_v, selector) => {
    const got = await prom!.query(expandGrafanaVariables(selector));
    expect(got.length).toBeGreaterThan(0);
  });

  it("the certificates table has a row per target of both shapes with its days left", async () => {
    const rows = await prom!.query(expandGrafanaVariables(exprOf("Certificates per target", "A")));
    expect(rows.map((r) => r.metric).sort((a, b) => a.target!.localeCompare(b.target!))).toEqual(
      ["cron.contoso.test", "cron2.contoso.test", "ml.contoso.test", "ml2.contoso.test"].map((target) => ({ target })),
    );
    // 80 days left when the test started, less the seconds since
    for (const r of rows) {
      expect(r.value).toBeLessThanOrEqual(80);
      expect(r.value).toBeGreaterThan(80 - 600 / DAY);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The counting queries, on fixed series with promtool: the scraped daemon's counters (a new series counts from 0,
// an increase counts in its step) and the pushed runs (one per push, also when two runs in a row push the same
// value), each shape counted by its own query only. $__interval = 1m = the sample interval.

interface ExprTest {
  expr: string;
  eval_time: string;
  exp_samples: { labels: string; value: number }[];
}

function run(binary: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") reject(new Error(`${binary} did not run (${err.message}): install Debian's prometheus package (scripts/setup.sh)`));
      else resolve({ code: err ? (err.code as number) : 0, out: stdout + stderr });
    });
  });
}

describe("the dashboard's counting queries (promtool, fixed series)", () => {
  const D = 'job="amlcert", instance="10.244.1.7:9464"';
  const P = 'job="amlcert", target="cron.contoso.test"';
  const P2 = 'job="amlcert", target="cron2.contoso.test"';
  const expand = expandGrafanaVariables;
  const input = [
    // daemon: its first failed run at 5m creates the series, the next at 10m increments it
    { series: `amlcert_runs_total{${D}, target="ml.contoso.test", result="failed"}`, values: "_x5 1x4 2x10" },
    { series: `amlcert_renewal_failures_total{${D}, target="ml.contoso.test", stage="propagation", code="DNS_PROPAGATION_TIMEOUT"}`, values: "_x5 1x4 2x10" },
    { series: `amlcert_requests_total{${D}, system="acme", status="429"}`, values: "_x5 1x4 3x10" },
    // pushed: a failed run at 1m, another failed run (a fresh process: the same value) at 5m, a renewal at 10m
    { series: `push_time_seconds{${P}}`, values: "_ 60x3 300x4 600x10" },
    { series: `amlcert_runs_total{${P}, result="failed"}`, values: "_ 1x3 1x4 stale" },
    { series: `amlcert_runs_total{${P}, result="renewed"}`, values: "_x10 1x10" },
    { series: `amlcert_renewal_failures_total{${P}, stage="acme-order", code="ACME_REJECTED"}`, values: "_ 1x3 1x4 stale" },
    { series: `amlcert_requests_total{${P}, system="acme", status="429"}`, values: "_ 2x3 2x4 stale" },
    { series: `amlcert_requests_total{${P}, system="acme", status="201"}`, values: "_x10 3x10" },
    // the same run's process-wide counts in its second target's group: counted once
    { series: `push_time_seconds{${P2}}`, values: "_ 61x3 301x4 601x10" },
    { series: `amlcert_requests_total{${P2}, system="acme", status="429"}`, values: "_ 2x3 2x4 stale" },
    { series: `amlcert_requests_total{${P2}, system="acme", status="201"}`, values: "_x10 3x10" },
    // the last pushed run's histogram: one extension stage of 95 s (bucket 60..120)
    ...["60", "120", "+Inf"].map((le) => ({ series: `amlcert_stage_duration_seconds_bucket{${P}, stage="extension", le="${le}"}`, values: le === "60" ? "0x20" : "1x20" })),
    // a daemon's histogram that grows: one acme-order stage of 4.2 s at 10m (bucket 2.5..5)
    ...["2.5", "5", "+Inf"].map((le) => ({ series: `amlcert_stage_duration_seconds_bucket{${D}, target="ml.contoso.test", stage="acme-order", le="${le}"}`, values: le === "2.5" ? "0x20" : "0x9 1x10" })),
    { series: `amlcert_certificate_not_after_timestamp_seconds{${D}, target="ml.contoso.test"}`, values: "864000x20" },
    { series: `amlcert_certificate_not_after_timestamp_seconds{${P}}`, values: "432000x20" },
  ];
  const runs = (ref: string) => expand(exprOf("Runs by result", ref));
  const failures = (ref: string) => expand(exprOf("Failures by stage", ref));
  const requests = (ref: string) => expand(exprOf("Requests by system and status", ref));
  const cases: ExprTest[] = [
    // daemon: counts only the daemon's series (at 1m only pushed series exist), in the step of each change
    { expr: runs("A"), eval_time: "1m", exp_samples: [] },
    { expr: requests("A"), eval_time: "1m", exp_samples: [] },
    { expr: runs("A"), eval_time: "5m", exp_samples: [{ labels: '{result="failed"}', value: 1 }] },
    { expr: runs("A"), eval_time: "7m", exp_samples: [{ labels: '{result="failed"}', value: 0 }] },
    { expr: runs("A"), eval_time: "10m", exp_samples: [{ labels: '{result="failed"}', value: 1 }] },
    { expr: failures("A"), eval_time: "10m", exp_samples: [{ labels: '{stage="propagation"}', value: 1 }] },
    { expr: requests("A"), eval_time: "10m", exp_samples: [{ labels: '{status="429", system="acme"}', value: 2 }] },
    // pushed: one run per push, the same value twice in a row included; the daemon's series are not counted
    { expr: runs("B"), eval_time: "1m", exp_samples: [{ labels: '{result="failed"}', value: 1 }] },
    { expr: runs("B"), eval_time: "3m", exp_samples: [{ labels: '{result="failed"}', value: 0 }] },
    { expr: runs("B"), eval_time: "5m", exp_samples: [{ labels: '{result="failed"}', value: 1 }] },
    { expr: runs("B"), eval_time: "10m", exp_samples: [{ labels: '{result="renewed"}', value: 1 }] },
    { expr: failures("B"), eval_time: "5m", exp_samples: [{ labels: '{stage="acme-order"}', value: 1 }] },
    { expr: requests("B"), eval_time: "5m", exp_samples: [{ labels: '{status="429", system="acme"}', value: 2 }] },
    { expr: requests("B"), eval_time: "10m", exp_samples: [{ labels: '{status="201", system="acme"}', value: 3 }] },
    // stage durations: the pushed last run by interpolation in its bucket; the daemon's over the window
    { expr: expand(exprOf("Stage p90 of the last CronJob runs", "A")), eval_time: "12m", exp_samples: [{ labels: '{stage="extension"}', value: 114 }] },
    { expr: expand(exprOf("Stage duration quantiles by stage (daemon, over $window)", "A")), eval_time: "12m", exp_samples: [{ labels: '{stage="acme-order"}', value: 3.75 }] },
    // days left, per target of both shapes
    {
      expr: expand(exprOf("Certificates per target", "A")),
      eval_time: "0m",
      exp_samples: [
        { labels: '{target="cron.contoso.test"}', value: 5 },
        { labels: '{target="ml.contoso.test"}', value: 10 },
      ],
    },
  ];

  it("count each shape's runs, failures and requests in the right step, and read stage durations and days left", async () => {
    const dir = await mkdtemp(join(tmpdir(), "amlcert-dashboard-promtool-"));
    try {
      const file = join(dir, "dashboard.test.yaml");
      await writeFile(file, stringify({ evaluation_interval: "1m", tests: [{ name: "dashboard counting queries", interval: "1m", input_series: input, promql_expr_test: cases }] }, { lineWidth: 0 }));
      const r = await run(PROMTOOL_BINARY, ["test", "rules", file]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain("SUCCESS");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
