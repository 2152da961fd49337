/**
 * amlcert's series in the text exposition format, in the two shapes Prometheus sees them (deploy/prometheus/
 * amlcert-rules.yaml, header): as the daemon's /metrics serves them (no job or instance: the scrape adds those;
 * amlcert_requests_total without a target), and as a Pushgateway serves a CronJob run's group (job and target
 * from the grouping key on every series, instance="", and push_time_seconds), which is what Debian's
 * prometheus-pushgateway 1.5 was seen to serve for a PUT to /metrics/job/amlcert/target/<fqdn>. For tests that
 * run the shipped rules and dashboard on a real Prometheus.
 */

export interface TargetState {
  target: string;
  /** Unix seconds */
  notBefore: number;
  notAfter: number;
  renewAt: number;
  lastRun: number;
  lastSuccess?: number;
  consecutiveFailures: number;
  /** daemon only */
  nextAttempt?: number;
  dnsOk: boolean;
  servingOk: boolean;
  /** amlcert_runs_total by result */
  runs: Partial<Record<"renewed" | "none" | "skipped" | "failed", number>>;
  /** amlcert_renewal_failures_total */
  failures: { stage: string; code: string; count: number }[];
  /** amlcert_stage_duration_seconds: one observation per entry */
  stageSeconds: { stage: string; seconds: number }[];
}

export interface ProcessState {
  version: string;
  /** amlcert_requests_total: "system status" -> count */
  requests: Record<string, number>;
}

/** src/observability/metrics.ts STAGE_DURATION_BUCKETS */
const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];

type Labels = Record<string, string>;

const fmtLabels = (l: Labels) => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`);
  return parts.length > 0 ? `{${parts.join(",")}}` : "";
};

/** Families in first-seen order, each family's samples together (as the text format wants them). */
class Text {
  private families = new Map<string, { type: string; lines: string[] }>();
  type(name: string, type: string): this {
    if (!this.families.has(name)) this.families.set(name, { type, lines: [] });
    return this;
  }
  /** a sample of the family last typed as `family` (a histogram's _bucket/_sum/_count belong to its base name) */
  sample(name: string, labels: Labels, value: number, family = name): this {
    const f = this.families.get(family);
    if (!f) throw new Error(`no # TYPE for ${family}`);
    f.lines.push(`${name}${fmtLabels(labels)} ${value}`);
    return this;
  }
  toString(): string {
    return [...this.families].map(([name, f]) => [`# TYPE ${name} ${f.type}`, ...f.lines].join("\n")).join("\n") + "\n";
  }
}

function targetSeries(out: Text, base: Labels, s: TargetState): void {
  const l = { ...base, target: s.target };
  const gauge = (name: string, v: number | undefined) => {
    if (v !== undefined) out.type(name, "gauge").sample(name, l, v);
  };
  gauge("amlcert_certificate_not_before_timestamp_seconds", s.notBefore);
  gauge("amlcert_certificate_not_after_timestamp_seconds", s.notAfter);
  gauge("amlcert_certificate_renewal_timestamp_seconds", s.renewAt);
  gauge("amlcert_last_run_timestamp_seconds", s.lastRun);
  gauge("amlcert_last_success_timestamp_seconds", s.lastSuccess);
  gauge("amlcert_consecutive_failures", s.consecutiveFailures);
  gauge("amlcert_next_attempt_timestamp_seconds", s.nextAttempt);
  gauge("amlcert_dns_ok", s.dnsOk ? 1 : 0);
  gauge("amlcert_serving_ok", s.servingOk ? 1 : 0);
  for (const [result, n] of Object.entries(s.runs)) out.type("amlcert_runs_total", "counter").sample("amlcert_runs_total", { ...l, result }, n);
  for (const f of s.failures) {
    out.type("amlcert_renewal_failures_total", "counter").sample("amlcert_renewal_failures_total", { ...l, stage: f.stage, code: f.code }, f.count);
  }
  const stages = [...new Set(s.stageSeconds.map((o) => o.stage))];
  for (const stage of stages) {
    const obs = s.stageSeconds.filter((o) => o.stage === stage).map((o) => o.seconds);
    const h = "amlcert_stage_duration_seconds";
    out.type(h, "histogram");
    for (const le of BUCKETS) out.sample(`${h}_bucket`, { ...l, stage, le: String(le) }, obs.filter((x) => x <= le).length, h);
    out.sample(`${h}_bucket`, { ...l, stage, le: "+Inf" }, obs.length, h);
    out.sample(`${h}_sum`, { ...l, stage }, obs.reduce((a, b) => a + b, 0), h);
    out.sample(`${h}_count`, { ...l, stage }, obs.length, h);
  }
}

function processSeries(out: Text, base: Labels, p: ProcessState): void {
  out.type("amlcert_build_info", "gauge").sample("amlcert_build_info", { ...base, version: p.version, node_version: "24.11.0" }, 1);
  for (const [key, n] of Object.entries(p.requests)) {
    const [system, status] = key.split(" ") as [string, string];
    out.type("amlcert_requests_total", "counter").sample("amlcert_requests_total", { ...base, system, status }, n);
  }
}

/** What a daemon's /metrics serves for these targets. */
export function daemonExposition(p: ProcessState, targets: TargetState[]): string {
  const out = new Text();
  processSeries(out, {}, p);
  for (const t of targets) targetSeries(out, {}, t);
  return out.toString();
}

export interface PushedGroup {
  job: string;
  /** Unix seconds of the push */
  pushTime: number;
  process: ProcessState;
  state: TargetState;
}

/** What a Pushgateway's /metrics serves for these groups (one per target, each with its run's process series). */
export function pushgatewayExposition(groups: PushedGroup[]): string {
  const out = new Text();
  for (const g of groups) {
    const base = { job: g.job, instance: "", target: g.state.target };
    processSeries(out, base, g.process);
    targetSeries(out, { job: g.job, instance: "" }, g.state);
    out.type("push_time_seconds", "gauge").sample("push_time_seconds", base, g.pushTime);
  }
  return out.toString();
}

const DAY_SECONDS = 86_400;

/**
 * A target in good health at time `t` (Unix seconds): a 90-day certificate 10 days old, renewed a minute ago, both
 * checks ok; the daemon shape also has a next attempt. `extra` overrides any field (runs, failures, durations).
 */
export function healthyTarget(target: string, t: number, daemon: boolean, extra: Partial<TargetState> = {}): TargetState {
  return {
    target,
    notBefore: t - 10 * DAY_SECONDS,
    notAfter: t + 80 * DAY_SECONDS,
    renewAt: t + 50 * DAY_SECONDS,
    lastRun: t - 60,
    lastSuccess: t - 60,
    consecutiveFailures: 0,
    ...(daemon ? { nextAttempt: t + 6 * 3600 } : {}),
    dnsOk: true,
    servingOk: true,
    runs: { renewed: 1 },
    failures: [],
    stageSeconds: [
      { stage: "acme-order", seconds: 4.2 },
      { stage: "extension", seconds: 95 },
    ],
    ...extra,
  };
}
