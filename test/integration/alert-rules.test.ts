/**
 * The shipped alerts (deploy/prometheus/): promtool checks and unit-tests them, every alert is tested firing and
 * silent in both shapes of the series, every alert carries what an on-call engineer needs, the PrometheusRule is
 * the plain file's groups, every metric name is in the metrics contract, and the rules run on a real Prometheus.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { daemonExposition, healthyTarget, pushgatewayExposition, type ProcessState, type TargetState } from "../prometheus/amlcert-series.js";
import { startExpositionServer, type ExpositionServer } from "../prometheus/exposition-server.js";
import { prometheusRuleYaml } from "../prometheus/prometheus-rule.js";
import { dashboardQueries, expandGrafanaVariables, metricNamesIn, variableSelectors, type Dashboard } from "../prometheus/promql.js";
import { PROMTOOL_BINARY, startPrometheus, withForOverride, type PromAlert, type Prometheus } from "../servers/prometheus.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RULES_FILE = `${ROOT}deploy/prometheus/amlcert-rules.yaml`;
const PROMETHEUS_RULE_FILE = `${ROOT}deploy/prometheus/prometheusrule.yaml`;
const RULE_TESTS_FILE = `${ROOT}test/prometheus/amlcert-rules.test.yaml`;
const DASHBOARD_FILE = `${ROOT}deploy/grafana/amlcert-dashboard.json`;

/**
 * The metric names contract between the metrics module, the alert rules and the dashboard (README "Metrics").
 * A rule or a panel that reads a name outside it reads nothing.
 */
const METRIC_CONTRACT = [
  "amlcert_certificate_not_before_timestamp_seconds",
  "amlcert_certificate_not_after_timestamp_seconds",
  "amlcert_certificate_renewal_timestamp_seconds",
  "amlcert_last_run_timestamp_seconds",
  "amlcert_last_success_timestamp_seconds",
  "amlcert_consecutive_failures",
  "amlcert_next_attempt_timestamp_seconds",
  "amlcert_dns_ok",
  "amlcert_serving_ok",
  "amlcert_runs_total",
  "amlcert_renewal_failures_total",
  "amlcert_requests_total",
  "amlcert_stage_duration_seconds",
  "amlcert_build_info",
  "amlcert_source_not_renewing",
] as const;
const HISTOGRAMS = ["amlcert_stage_duration_seconds"];
/** prom-client's default process metrics keep their standard names */
const DEFAULT_METRIC_PREFIXES = ["process_", "nodejs_"];
/** added by Prometheus (each scrape target's health) and by the Pushgateway (each group's last push) */
const ADDED_BY_PROMETHEUS_AND_PUSHGATEWAY = ["up", "push_time_seconds"];

const allowedName = (name: string): boolean =>
  (METRIC_CONTRACT as readonly string[]).includes(name) ||
  HISTOGRAMS.some((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`].includes(name)) ||
  DEFAULT_METRIC_PREFIXES.some((p) => name.startsWith(p)) ||
  ADDED_BY_PROMETHEUS_AND_PUSHGATEWAY.includes(name);

/** Alerts that only the daemon can raise, and why (the others must be tested firing in both shapes). */
const DAEMON_ONLY = new Map([["AmlcertScheduledRunMissed", "only the daemon plans a next attempt; a CronJob's schedule is Kubernetes'"]]);

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: AlertRule[];
}
interface RuleTestFile {
  rule_files: string[];
  tests: {
    name: string;
    alert_rule_test?: { eval_time: string; alertname: string; exp_alerts: { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }[] }[];
  }[];
}

const rulesText = readFileSync(RULES_FILE, "utf8");
const groups = (parse(rulesText) as { groups: RuleGroup[] }).groups;
const alerts = groups.flatMap((g) => g.rules.filter((r) => r.alert !== undefined));
const alertNames = alerts.map((a) => a.alert);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
function run(binary: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`${binary} did not run (${err.message}): install Debian's prometheus package (scripts/setup.sh)`));
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

describe("deploy/prometheus: promtool", () => {
  it("promtool check rules accepts the rules file and finds every alert", async () => {
    const r = await run(PROMTOOL_BINARY, ["check", "rules", RULES_FILE]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(alerts.length).toBe(10);
  });

  it("promtool test rules passes: each alert fires in its failure scenarios and stays silent when healthy", async () => {
    const r = await run(PROMTOOL_BINARY, ["test", "rules", RULE_TESTS_FILE]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("SUCCESS");
  });
});

describe("deploy/prometheus: the unit tests cover every alert", () => {
  const tests = parse(readFileSync(RULE_TESTS_FILE, "utf8")) as RuleTestFile;
  const evals = tests.tests.flatMap((t) => (t.alert_rule_test ?? []).map((e) => ({ group: t.name, ...e })));

  it("the unit tests load the shipped rules file, and name no alert that does not exist", () => {
    expect(tests.rule_files).toEqual(["../../deploy/prometheus/amlcert-rules.yaml"]);
    expect([...new Set(evals.map((e) => e.alertname))].filter((n) => !alertNames.includes(n))).toEqual([]);
  });

  it.each(alertNames)("%s is tested firing and silent, in both shapes of the series where both can raise it", (name) => {
    const mine = evals.filter((e) => e.alertname === name);
    const firing = mine.flatMap((e) => e.exp_alerts);
    expect(firing.length, "firing scenarios").toBeGreaterThan(0);
    expect(mine.filter((e) => e.exp_alerts.length === 0).length, "silent scenarios").toBeGreaterThan(0);
    for (const a of firing) expect(a.exp_labels.severity).toBe(alerts.find((r) => r.alert === name)!.labels!.severity);
    const daemon = firing.filter((a) => a.exp_labels.instance !== undefined);
    const pushed = firing.filter((a) => a.exp_labels.instance === undefined && a.exp_labels.target !== undefined);
    expect(daemon.length, "fires for a scraped daemon").toBeGreaterThan(0);
    if (DAEMON_ONLY.has(name)) expect(pushed, DAEMON_ONLY.get(name)).toEqual([]);
    else expect(pushed.length, "fires for a pushed CronJob run").toBeGreaterThan(0);
  });

  it.each(["daemon", "pushed"])("%s: just after a successful renewal every alert is tested silent, after the same fixture fired", (shape) => {
    const group = tests.tests.find((t) => t.name.startsWith(`${shape}, just after a successful renewal`));
    expect(group, `a test group "${shape}, just after a successful renewal: ..."`).toBeDefined();
    const cases = group!.alert_rule_test ?? [];
    const before = Math.min(...cases.filter((c) => c.exp_alerts.length > 0).map((c) => minutes(c.eval_time)));
    for (const name of alertNames) {
      const silentAfter = cases.filter((c) => c.alertname === name && c.exp_alerts.length === 0 && minutes(c.eval_time) > before);
      expect(silentAfter.length, `${name} silent after the renewal`).toBeGreaterThan(0);
    }
    // the fixture was failing before the renewal: the failure alerts fired on it
    const firedBefore = new Set(cases.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname));
    expect([...firedBefore].sort()).toEqual(
      expect.arrayContaining(["AmlcertCertificateExpiringSoon", "AmlcertCertificateRenewalOverdue", "AmlcertNoRecentSuccess", "AmlcertRenewalFailing"]),
    );
  });
});

function minutes(d: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?$/.exec(d);
  if (!m || d === "") throw new Error(`eval_time ${d} is not <h>h<m>m`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

describe("deploy/prometheus: what each alert says", () => {
  it("alert names are unique and follow Amlcert<Something>", () => {
    expect(new Set(alertNames).size).toBe(alertNames.length);
    for (const n of alertNames) expect(n).toMatch(/^Amlcert[A-Z][A-Za-z]+$/);
  });

  it.each(alerts.map((a) => [a.alert, a] as const))("%s has a severity, a summary, a description naming the target and its runbook section", (name, a) => {
    expect(["warning", "critical"]).toContain(a.labels?.severity);
    expect(Object.keys(a.labels ?? {})).toEqual(["severity"]);
    expect(a.annotations?.summary?.trim()).toBeTruthy();
    expect(a.annotations?.description).toContain("{{ $labels.target }}");
    // README: "### <AlertName>" under "Runbook"; GitHub's anchor for that heading is the name in lower case
    expect(a.annotations?.runbook_url).toBe(`https://github.com/amlcert/amlcert#${name.toLowerCase()}`);
    expect(Object.keys(a.annotations ?? {}).sort()).toEqual(["description", "runbook_url", "summary"]);
  });
});

describe("deploy/prometheus: the PrometheusRule", () => {
  const promRuleText = readFileSync(PROMETHEUS_RULE_FILE, "utf8");
  const promRule = parse(promRuleText) as { apiVersion: string; kind: string; metadata: { name: string }; spec: { groups: RuleGroup[] } };

  it("carries exactly the groups of the plain rules file", () => {
    expect(promRule.apiVersion).toBe("monitoring.coreos.com/v1");
    expect(promRule.kind).toBe("PrometheusRule");
    expect(promRule.metadata.name).toBe("amlcert");
    expect(promRule.spec.groups).toEqual(groups);
  });

  it("is what the generator makes of the plain rules file (so its regeneration command is right)", () => {
    expect(promRuleText).toBe(prometheusRuleYaml(rulesText));
  });

  it("kubectl kustomize deploy/prometheus renders it in the monitoring namespace with the same groups", async () => {
    const r = await run("kubectl", ["kustomize", `${ROOT}deploy/prometheus`]);
    expect(r.code, r.stderr).toBe(0);
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; metadata: { namespace: string }; spec: { groups: RuleGroup[] } });
    expect(objects.map((o) => o.kind)).toEqual(["PrometheusRule"]);
    expect(objects[0]!.metadata.namespace).toBe("monitoring");
    expect(objects[0]!.spec.groups).toEqual(groups);
  });
});

describe("metric names", () => {
  it("the name extractor finds selectors and skips functions, aggregations, grouping labels, strings and durations", () => {
    expect(
      metricNamesIn('sum by (le, stage) (rate(a_bucket{x="y", z=~"on(w)"}[5m] offset 1h)) / on (job) group_left () b unless c > bool 7 * 86400 or absent(d)'),
    ).toEqual(["a_bucket", "b", "c", "d"]);
  });

  it("every metric name the rules read is in the metrics contract", () => {
    const names = [...new Set(alerts.flatMap((a) => metricNamesIn(a.expr)))].sort();
    expect(names.filter((n) => !allowedName(n))).toEqual([]);
    // and the rules read the durable gauges the design rests on
    expect(names).toEqual(expect.arrayContaining(["amlcert_consecutive_failures", "amlcert_last_success_timestamp_seconds", "amlcert_certificate_not_after_timestamp_seconds", "push_time_seconds", "up"]));
  });

  it("every metric name the dashboard reads is in the metrics contract", () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
    const exprs = [...dashboardQueries(dashboard).map((q) => q.expr), ...variableSelectors(dashboard).map((v) => v.selector)];
    const names = [...new Set(exprs.flatMap((e) => metricNamesIn(expandGrafanaVariables(e))))].sort();
    expect(names.filter((n) => !allowedName(n))).toEqual([]);
    expect(names.length).toBeGreaterThan(10);
  });
});

describe("test/servers/prometheus.ts withForOverride", () => {
  it("rewrites only the `for` of alerting rules that have one", () => {
    const rewritten = parse(withForOverride(rulesText, "1s")) as { groups: RuleGroup[] };
    const expected = groups.map((g) => ({ ...g, rules: g.rules.map((r) => (r.for === undefined ? r : { ...r, for: "1s" })) }));
    expect(rewritten.groups).toEqual(expected);
    expect(rewritten.groups.flatMap((g) => g.rules).filter((r) => r.for !== undefined).length).toBe(alerts.filter((a) => a.for !== undefined).length);
    expect(() => withForOverride(rulesText, "soon")).toThrow(/not a Prometheus duration/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// On a real Prometheus: the shipped rules (only `for` shortened) against a daemon's /metrics and a Pushgateway's
// groups served from loopback, in the exact shapes those produce.

const DAY = 86_400;
const now = () => Math.floor(Date.now() / 1000);

function failingTarget(target: string, t: number, daemon: boolean): TargetState {
  return {
    ...healthyTarget(target, t, daemon),
    renewAt: t - 3600,
    lastSuccess: t - 6 * 3600,
    consecutiveFailures: 1,
    runs: { failed: 1 },
    failures: [{ stage: "propagation", code: "DNS_PROPAGATION_TIMEOUT", count: 1 }],
    ...(daemon ? { nextAttempt: t + 300 } : {}),
  };
}
const proc = (requests: Record<string, number>): ProcessState => ({ version: "0.1.0", requests });

describe("the shipped rules on a real Prometheus (for: 1s)", () => {
  let daemon: ExpositionServer | undefined;
  let gateway: ExpositionServer | undefined;
  let prom: Prometheus | undefined;

  beforeAll(async () => {
    const t = now();
    daemon = await startExpositionServer(daemonExposition(proc({ "acme 200": 4, "arm 200": 7 }), [failingTarget("ml.contoso.test", t, true)]));
    gateway = await startExpositionServer(
      pushgatewayExposition([{ job: "amlcert", pushTime: t - 30, process: proc({ "acme 200": 3 }), state: failingTarget("cron.contoso.test", t, false) }]),
    );
    prom = await startPrometheus({
      scrape: [
        { job: "amlcert", targets: [daemon.hostPort] },
        { job: "pushgateway", targets: [gateway.hostPort], honorLabels: true },
      ],
      rules: [{ path: RULES_FILE, forOverride: "1s" }],
    });
  });

  afterAll(async () => {
    await prom?.close();
    await daemon?.close();
    await gateway?.close();
  });

  const firing = async (): Promise<PromAlert[]> => (await prom!.alerts()).filter((a) => a.state === "firing");
  const key = (a: PromAlert) => JSON.stringify(Object.fromEntries(Object.entries(a.labels).sort()));

  it("a failed run fires AmlcertRenewalFailing for the scraped daemon and for the pushed run (no instance label), and nothing else", async () => {
    const got = await prom!.waitFor(
      async () => {
        const f = await firing();
        return f.length >= 2 ? f : undefined;
      },
      { timeoutMs: 30_000, what: "two firing alerts" },
    );
    expect(got.map(key).sort()).toEqual(
      [
        { alertname: "AmlcertRenewalFailing", instance: daemon!.hostPort, job: "amlcert", severity: "warning", target: "ml.contoso.test" },
        { alertname: "AmlcertRenewalFailing", job: "amlcert", severity: "warning", target: "cron.contoso.test" },
      ].map((l) => JSON.stringify(Object.fromEntries(Object.entries(l).sort()))).sort(),
    );
    const pushed = got.find((a) => a.labels.target === "cron.contoso.test")!;
    expect(pushed.annotations.description).toBe(
      "The last 1 run(s) for cron.contoso.test failed (CronJob, pushed as job amlcert). The certificate in place is unchanged until a run succeeds; 'amlcert status' names the failing stage and error code.",
    );
  });

  it("every rule evaluates without an error, with `for` 1s where the shipped rule has one", async () => {
    const rules = await prom!.waitFor(
      async () => {
        const r = (await prom!.rules()).flatMap((g) => g.rules);
        return r.length === alerts.length && r.every((x) => x.health !== "unknown") ? r : undefined;
      },
      { timeoutMs: 30_000, what: "every rule evaluated" },
    );
    expect(rules.map((r) => [r.name, r.health, r.lastError ?? ""])).toEqual(alerts.map((a) => [a.alert, "ok", ""]));
    expect(rules.map((r) => r.duration)).toEqual(alerts.map((a) => (a.for === undefined ? 0 : 1)));
  });

  it("after successful runs (the daemon's next scrape, the next push) no alert is active", async () => {
    const t = now();
    daemon!.set(daemonExposition(proc({ "acme 200": 9, "acme 201": 2, "arm 200": 12 }), [healthyTarget("ml.contoso.test", t, true)]));
    gateway!.set(pushgatewayExposition([{ job: "amlcert", pushTime: t, process: proc({ "acme 200": 5, "acme 201": 2 }), state: healthyTarget("cron.contoso.test", t, false) }]));
    const active = await prom!.waitFor(
      async () => {
        const a = await prom!.alerts();
        return a.length === 0 ? a : undefined;
      },
      { timeoutMs: 30_000, what: "no active alert" },
    );
    expect(active).toEqual([]);
    // the healthy series are there: silence is not absence
    expect((await prom!.query("amlcert_consecutive_failures")).map((s) => [s.metric.target, s.value]).sort()).toEqual([
      ["cron.contoso.test", 0],
      ["ml.contoso.test", 0],
    ]);
  });
});
