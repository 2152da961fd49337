/**
 * The Prometheus metrics of amlcert (names: README "Metrics"; they are the contract with the alert rules and the
 * dashboard). prom-client is imported here only.
 *
 * The metrics subscribe to what already happens: the renewal events (`sink`), the durable history
 * (`observeHistory`) and the adapters' HTTP responses (`requests`). Nothing in the renewal flow calls a metric.
 *
 * One registry per `createMetrics` (never prom-client's global `register`), built once per process: a daemon keeps
 * it for its lifetime, a CronJob run pushes it once at the end, and tests build as many as they like without
 * leaking series into each other.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from "prom-client";
import type { TargetHistory } from "../history/history.js";
import type { RequestObserver } from "../ports.js";
import type { CertificateFacts, EventSink, RenewalEvent, TargetOutcome } from "../renewal/events.js";

export interface Metrics {
  readonly registry: Registry;
  /** subscribe to the renewal events: stage durations, runs by result, failures by stage and code, certificate
   * gauges, dns_ok and serving_ok */
  readonly sink: EventSink;
  /** last run, last success, consecutive failures and next attempt (and the certificate and check gauges the
   * history holds) from the durable history, so they survive restarts */
  observeHistory(h: TargetHistory): void;
  /** counts amlcert_requests_total{system,status}; give it to the adapters as their `requests` option */
  readonly requests: RequestObserver;
  /** the target's certificate source (acme, keyVault, kubernetesTls): a source that renews itself gets
   * amlcert_source_not_renewing{target,source} from each plan */
  observeSource?(target: string, source: string): void;
  /** the whole registry in the Prometheus text format */
  text(): Promise<string>;
  /** the series of `target` plus every series without a target label (process-wide), for a per-target push */
  textFor(target: string): Promise<string>;
}

export interface CreateMetricsOptions {
  /** amlcert's version, for amlcert_build_info */
  version: string;
  /** prom-client's default process_* and nodejs_* metrics; default true */
  defaultMetrics?: boolean;
}

/**
 * Stage durations range from milliseconds (plan, store) over seconds (ACME order, propagation) to many minutes
 * (the extension's long-running operation is bounded by extension.lroTimeout, 30 minutes by default).
 */
export const STAGE_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];

const TARGET = "target";

/** prom-client default metrics that break the naming rules (gauges ending in _total); see createMetrics. */
const LINT_FAILING_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/** What every prom-client metric is (the typings' MetricObject leaves `get` out). */
interface Collectable {
  get(): Promise<MetricObjectWithValues<MetricValue<string>>>;
}

/** ISO timestamp -> Unix seconds; undefined when absent or unparsable. */
function seconds(iso: string | undefined): number | undefined {
  if (iso === undefined) return undefined;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

export function createMetrics(opts: CreateMetricsOptions): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const perTarget = (name: string, help: string) => new Gauge({ name, help, labelNames: [TARGET] as const, registers });
  const perTargetSource = (name: string, help: string) => new Gauge({ name, help, labelNames: [TARGET, "source"] as const, registers });

  const notBefore = perTarget("amlcert_certificate_not_before_timestamp_seconds", "Start of validity (notBefore) of the certificate in place, as a Unix timestamp.");
  const notAfter = perTarget("amlcert_certificate_not_after_timestamp_seconds", "Expiry (notAfter) of the certificate in place, as a Unix timestamp.");
  const renewal = perTarget("amlcert_certificate_renewal_timestamp_seconds", "When the certificate in place is due for renewal (its renewAt), as a Unix timestamp.");
  const renewalSource = perTargetSource(
    "amlcert_certificate_renewal_source",
    "1 for where the renewal time of the certificate in place came from (source: ari, the CA's RFC 9773 window; renewBefore; lifetime, 2/3 of it), one series per target.",
  );
  const lastRun = perTarget("amlcert_last_run_timestamp_seconds", "When a run for the target last started, from the durable history.");
  const lastSuccess = perTarget("amlcert_last_success_timestamp_seconds", "When a run for the target last succeeded, from the durable history.");
  const consecutiveFailures = perTarget("amlcert_consecutive_failures", "Failed runs for the target since its last success, from the durable history (0 after a success).");
  const nextAttempt = perTarget("amlcert_next_attempt_timestamp_seconds", "When the scheduler will next run the target (retry table included), as a Unix timestamp.");
  const dnsOk = perTarget("amlcert_dns_ok", "1 when the target's FQDN resolved to azureml-fe at the last check, else 0.");
  const servingOk = perTarget("amlcert_serving_ok", "1 when azureml-fe served the stored certificate for the target at the last check, else 0.");
  const sourceNotRenewing = perTargetSource(
    "amlcert_source_not_renewing",
    "1 when the certificate in place is due but its source (keyVault, kubernetesTls) holds no newer one (the last plan was SourceNotRenewing), else 0. No series for ACME targets.",
  );
  const sources = new Map<string, string>();

  const runs = new Counter({
    name: "amlcert_runs_total",
    help: "Runs per target by result: renewed, none (nothing to do), skipped (another run holds the Lease) or failed.",
    labelNames: [TARGET, "result"] as const,
    registers,
  });
  const failures = new Counter({
    name: "amlcert_renewal_failures_total",
    help: "Failed runs per target by the stage that failed and the error code.",
    labelNames: [TARGET, "stage", "code"] as const,
    registers,
  });
  const requestsTotal = new Counter({
    name: "amlcert_requests_total",
    help: "HTTP responses from the external systems (acme, arm, entra, kubernetes) by status code; error = no response (transport failure).",
    labelNames: ["system", "status"] as const,
    registers,
  });
  const stageDuration = new Histogram({
    name: "amlcert_stage_duration_seconds",
    help: "Duration of each stage of a run, per target.",
    labelNames: [TARGET, "stage"] as const,
    buckets: STAGE_DURATION_BUCKETS,
    registers,
  });
  const buildInfo = new Gauge({
    name: "amlcert_build_info",
    help: "Always 1; the labels name the amlcert version and the Node.js version.",
    labelNames: ["version", "node_version"] as const,
    registers,
  });
  buildInfo.set({ version: opts.version, node_version: process.versions.node }, 1);
  if (opts.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters, which `promtool check metrics` rejects; each is only the sum over the `type`
    // label of the family without the suffix (e.g. sum(nodejs_active_handles)), so nothing is lost.
    for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  }

  /** Set a per-target gauge, or drop its series when the value is unknown (an absent series, not a stale one). */
  function put(gauge: Gauge<typeof TARGET>, target: string, value: number | undefined): void {
    if (value === undefined) gauge.remove({ target });
    else gauge.set({ target }, value);
  }

  function certificate(target: string, c: Partial<Pick<CertificateFacts, "notBefore" | "notAfter" | "renewAt" | "renewAtSource">>): void {
    put(notBefore, target, seconds(c.notBefore));
    put(notAfter, target, seconds(c.notAfter));
    put(renewal, target, seconds(c.renewAt));
    // the history knows the time but not its source: a value from it leaves the last source seen
    if (c.renewAtSource !== undefined) {
      for (const source of ["ari", "lifetime", "renewBefore"]) if (source !== c.renewAtSource) renewalSource.remove({ target, source });
      renewalSource.set({ target, source: c.renewAtSource }, 1);
    }
  }

  function finished(outcome: TargetOutcome): void {
    const target = outcome.fqdn;
    runs.inc({ target, result: outcome.action });
    if (outcome.error !== undefined) failures.inc({ target, stage: outcome.error.stage, code: outcome.error.code });
    // The outcome names the certificate in place after the run (the new one only when it was rolled out). A run
    // that saw none (skipped, or failed before planning) says nothing about it.
    if (outcome.notAfter !== undefined) certificate(target, outcome);
  }

  const sink: EventSink = (event: RenewalEvent) => {
    switch (event.type) {
      case "stage-finished":
        stageDuration.observe({ target: event.fqdn, stage: event.stage }, event.durationMs / 1000);
        return;
      case "planned":
        // the certificate in place when the run started; a stored one counts only once rolled out (run-finished)
        if (event.current !== undefined) certificate(event.fqdn, event.current);
        if (sources.has(event.fqdn) && sources.get(event.fqdn) !== "acme") {
          sourceNotRenewing.set({ target: event.fqdn, source: sources.get(event.fqdn)! }, event.reason === "SourceNotRenewing" ? 1 : 0);
        }
        return;
      case "dns-checked":
        dnsOk.set({ target: event.fqdn }, event.ok ? 1 : 0);
        return;
      case "verified":
        // Only a check that ran sets these: a run that failed before verifying leaves the last known state.
        dnsOk.set({ target: event.fqdn }, event.dnsOk ? 1 : 0);
        servingOk.set({ target: event.fqdn }, event.servingOk ? 1 : 0);
        return;
      case "run-finished":
        finished(event.outcome);
        return;
      case "run-started":
      case "stage-started":
      case "stored":
      case "rolled-out":
        return;
    }
  };

  function observeHistory(h: TargetHistory): void {
    const target = h.fqdn;
    put(lastRun, target, seconds(h.lastAttempt));
    put(lastSuccess, target, seconds(h.lastSuccess));
    consecutiveFailures.set({ target }, h.consecutiveFailures);
    put(nextAttempt, target, seconds(h.nextAttempt));
    // What the last run saw: a fresh process (a CronJob pod, a restarted daemon) reports expiry and the checks at
    // once instead of only after its first run. The history is written from the same outcome the events carry.
    if (h.notAfter !== undefined) certificate(target, h);
    if (h.dnsOk !== undefined) dnsOk.set({ target }, h.dnsOk ? 1 : 0);
    if (h.servingOk !== undefined) servingOk.set({ target }, h.servingOk ? 1 : 0);
  }

  const requests: RequestObserver = (system, status) => requestsTotal.inc({ system, status });

  async function textFor(target: string): Promise<string> {
    const filtered = new Registry();
    for (const metric of registry.getMetricsAsArray() as unknown as Collectable[]) {
      const data = await metric.get();
      const values = data.values.filter((v) => {
        const t = (v.labels as Record<string, string | number | undefined>)[TARGET];
        return t === undefined || t === target;
      });
      // A stand-in with the filtered values: the registry renders it exactly as it renders the real metric.
      filtered.registerMetric({ name: data.name, get: async () => ({ ...data, values }) } as unknown as Parameters<Registry["registerMetric"]>[0]);
    }
    return filtered.metrics();
  }

  return {
    registry,
    sink,
    observeHistory,
    requests,
    observeSource: (target, source) => void sources.set(target, source),
    text: () => registry.metrics(),
    textFor,
  };
}
