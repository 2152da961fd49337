/**
 * The real Prometheus for tests: Debian's `prometheus` 2.42 (`/usr/bin/prometheus`) as a child process on a free
 * loopback port, with a generated prometheus.yml (short scrape and evaluation intervals) and the rule files given,
 * its TSDB in a temporary directory that close() removes.
 *
 * Prometheus 2.42 facts (checked against `prometheus --help` and the Debian binary):
 * - flags used: --config.file, --web.listen-address, --storage.tsdb.path, --storage.tsdb.retention.time,
 *   --query.lookback-delta, --log.level, --web.console.templates/--web.console.libraries (pointed at the temp
 *   dir so nothing outside it is read); GET /-/ready answers 200 once the TSDB is open and the config loaded.
 * - a config or rule file that does not load makes it exit at start (the logs say why).
 * - scrape_timeout must not exceed scrape_interval, so both are set.
 * - GET /api/v1/query answers 400 (errorType bad_data) for an expression that does not parse or type-check, and
 *   422 (execution) for one that fails while evaluating; /api/v1/alerts lists pending and firing alerts;
 *   /api/v1/rules each rule's health and last evaluation error; /api/v1/targets each scrape target's health.
 * - a label with an empty value is no label: a Pushgateway's instance="" is stored as no instance label.
 * - no Alertmanager is configured: alerts are read from the API, which is where "firing" is decided.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { isMap, isSeq, parseDocument, stringify } from "yaml";
import { freePort } from "./pebble.js";
import { spawnLogged, type LoggedChild } from "./child-process.js";

export const PROMETHEUS_BINARY = "/usr/bin/prometheus";
export const PROMTOOL_BINARY = "/usr/bin/promtool";

const START_ATTEMPTS = 5;
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;
const LOG_LIMIT = 256 * 1024;

export interface ScrapeJob {
  /** the job label of everything scraped from these targets (`up{job=...}`) */
  job: string;
  /** loopback host:port pairs, e.g. "127.0.0.1:9464" */
  targets: string[];
  /** default /metrics */
  metricsPath?: string;
  /** keep the scraped job/instance labels (a Pushgateway's grouping key), as a Pushgateway scrape must */
  honorLabels?: boolean;
  /** extra labels on every series of these targets */
  labels?: Record<string, string>;
}

export interface RuleFileOption {
  /** a rules file to load, e.g. deploy/prometheus/amlcert-rules.yaml */
  path: string;
  /**
   * Load a copy whose every alerting rule that has a `for:` gets this one instead (e.g. "2s"), so a live test
   * sees an alert fire within seconds. ONLY `for` is rewritten: thresholds and windows inside the expressions
   * (27h since the last success, 1h of increase, 7 days left, ...) stay exactly as shipped, so a live test must
   * produce series that cross them (timestamps in the past, certificates close to expiry). Rules without a
   * `for` are left as they are.
   */
  forOverride?: string;
}

export interface PrometheusOptions {
  scrape?: ScrapeJob[];
  /** rule files: a path, or a path with a `for:` override */
  rules?: (string | RuleFileOption)[];
  /** global scrape_interval (and scrape_timeout) in seconds; default 1 */
  scrapeIntervalSeconds?: number;
  /** global evaluation_interval in seconds; default 1 */
  evaluationIntervalSeconds?: number;
  /** --query.lookback-delta (how long a series stays visible after its last sample); Prometheus' default 5m */
  lookbackDelta?: string;
  binary?: string;
}

export interface Sample {
  metric: Record<string, string>;
  value: number;
  /** Unix seconds */
  timestamp: number;
}

export interface QueryAnswer {
  /** the HTTP status: 200, 400 (bad_data: does not parse or type-check), 422 (failed while evaluating), ... */
  httpStatus: number;
  status: "success" | "error";
  errorType?: string;
  error?: string;
  data?: { resultType: "vector" | "matrix" | "scalar" | "string"; result: unknown };
}

export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing";
  activeAt: string;
  value: string;
}

export interface PromRule {
  name: string;
  type: "alerting" | "recording";
  query: string;
  /** seconds (the `for`) */
  duration?: number;
  health: "ok" | "err" | "unknown";
  lastError?: string;
  state?: "inactive" | "pending" | "firing";
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface PromRuleGroup {
  name: string;
  file: string;
  rules: PromRule[];
}

export interface PromTarget {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

export interface WaitOptions {
  timeoutMs: number;
  /** default 100 */
  intervalMs?: number;
  /** what is awaited, for the timeout message */
  what?: string;
}

export interface Prometheus {
  /** http://127.0.0.1:<port> */
  url: string;
  /** the generated prometheus.yml */
  configFile: string;
  /** the rule files as loaded (the rewritten copies where a `for` override was given) */
  ruleFiles: string[];
  /** an instant query; throws with Prometheus' error unless it succeeds with a vector or a scalar */
  query(expr: string, time?: Date): Promise<Sample[]>;
  /** an instant query, answered as is (for syntax checks: a parse error is httpStatus 400) */
  queryRaw(expr: string, time?: Date): Promise<QueryAnswer>;
  /** GET /api/v1/alerts: pending and firing alerts */
  alerts(): Promise<PromAlert[]>;
  /** GET /api/v1/rules */
  rules(): Promise<PromRuleGroup[]>;
  /** GET /api/v1/targets: the active scrape targets */
  targets(): Promise<PromTarget[]>;
  /** bounded polling, see waitFor() */
  waitFor<T>(probe: () => Promise<T | undefined | null | false>, opts: WaitOptions): Promise<T>;
  process: ChildProcess;
  /** stdout+stderr so far (bounded), for failure messages */
  logs(): string;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `probe` until it returns a value other than undefined, null or false, at most `timeoutMs`. An error thrown
 * by the probe counts as "not yet" (the peer may still be starting); the last one is in the timeout message.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined | null | false>, opts: WaitOptions): Promise<T> {
  const interval = opts.intervalMs ?? 100;
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() + interval > deadline) break;
    await sleep(interval);
  }
  const why = lastError === undefined ? "" : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
  throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what ?? "a condition"}${why}`);
}

/**
 * The text of a rules file whose alerting rules' `for:` are replaced by `forDuration`. Only existing `for` keys of
 * alerting rules change; expressions, labels, annotations, recording rules and comments stay as they are.
 */
export function withForOverride(rulesYaml: string, forDuration: string): string {
  if (!/^\d+(ms|s|m|h|d|w|y)$/.test(forDuration)) throw new Error(`"${forDuration}" is not a Prometheus duration`);
  const doc = parseDocument(rulesYaml);
  if (doc.errors.length > 0) throw new Error(`the rules file does not parse: ${doc.errors[0]!.message}`);
  const groups = doc.get("groups", true);
  if (!isSeq(groups)) throw new Error("the rules file has no `groups` list");
  for (const group of groups.items) {
    if (!isMap(group)) continue;
    const rules = group.get("rules", true);
    if (!isSeq(rules)) continue;
    for (const rule of rules.items) {
      if (isMap(rule) && rule.has("alert") && rule.has("for")) rule.set("for", forDuration);
    }
  }
  return doc.toString({ lineWidth: 0 });
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

async function getJson(url: string): Promise<{ httpStatus: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { status: "error", errorType: "not_json", error: text.slice(0, 500) };
  }
  return { httpStatus: res.status, body };
}

function isLoopbackTarget(target: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+$/.test(target);
}

function prometheusYml(opts: PrometheusOptions, ruleFiles: string[]): string {
  const scrape = opts.scrapeIntervalSeconds ?? 1;
  const evaluation = opts.evaluationIntervalSeconds ?? 1;
  return stringify({
    global: { scrape_interval: `${scrape}s`, scrape_timeout: `${scrape}s`, evaluation_interval: `${evaluation}s` },
    rule_files: ruleFiles,
    scrape_configs: (opts.scrape ?? []).map((j) => ({
      job_name: j.job,
      metrics_path: j.metricsPath ?? "/metrics",
      honor_labels: j.honorLabels ?? false,
      static_configs: [{ targets: j.targets, ...(j.labels ? { labels: j.labels } : {}) }],
    })),
  });
}

/** Start Prometheus on a free loopback port and wait (bounded) until it is ready. */
export async function startPrometheus(opts: PrometheusOptions = {}): Promise<Prometheus> {
  const binary = opts.binary ?? PROMETHEUS_BINARY;
  if (!existsSync(binary)) {
    throw new Error(`Prometheus is not installed (${binary} is missing): run scripts/setup.sh (apt-get install prometheus)`);
  }
  for (const job of opts.scrape ?? []) {
    for (const t of job.targets) {
      if (!isLoopbackTarget(t)) throw new Error(`scrape target ${t} of job ${job.job} is not on loopback`);
    }
  }
  const dir = await mkdtemp(join(tmpdir(), "amlcert-prometheus-"));
  try {
    const rulesDir = join(dir, "rules");
    await mkdir(rulesDir);
    const ruleFiles: string[] = [];
    for (const [i, r] of (opts.rules ?? []).entries()) {
      const rule = typeof r === "string" ? { path: r } : r;
      if (rule.forOverride === undefined) {
        ruleFiles.push(rule.path);
        continue;
      }
      const copy = join(rulesDir, `${i}-${basename(rule.path)}`);
      await writeFile(copy, withForOverride(await readFile(rule.path, "utf8"), rule.forOverride));
      ruleFiles.push(copy);
    }
    const configFile = join(dir, "prometheus.yml");
    await writeFile(configFile, prometheusYml(opts, ruleFiles));

    let lastFailure = "";
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const data = join(dir, `data-${attempt}`);
      const args = [
        `--config.file=${configFile}`,
        `--web.listen-address=127.0.0.1:${port}`,
        `--storage.tsdb.path=${data}`,
        "--storage.tsdb.retention.time=1d",
        `--web.console.templates=${dir}`,
        `--web.console.libraries=${dir}`,
        "--log.level=warn",
        ...(opts.lookbackDelta === undefined ? [] : [`--query.lookback-delta=${opts.lookbackDelta}`]),
      ];
      const proc = spawnLogged(binary, args, { cwd: dir, logLimit: LOG_LIMIT });
      const deadline = Date.now() + START_TIMEOUT_MS;
      let ready = false;
      while (Date.now() < deadline && !proc.hasExited()) {
        try {
          const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
          await res.body?.cancel();
          if (res.status === 200) {
            ready = true;
            break;
          }
        } catch {
          // not listening yet
        }
        await sleep(50);
      }
      if (ready) return handle(url, configFile, ruleFiles, proc, dir);
      const exited = proc.hasExited();
      await proc.stop(STOP_TIMEOUT_MS);
      lastFailure = `${exited ? "it exited before it was ready" : `not ready within ${START_TIMEOUT_MS} ms`}:\n${tail(proc.output())}`;
      if (!/address already in use/i.test(lastFailure)) break; // only a port race is worth another attempt
    }
    throw new Error(`Prometheus did not start: ${lastFailure}`);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function handle(url: string, configFile: string, ruleFiles: string[], proc: LoggedChild, dir: string): Prometheus {
  const api = async <T>(path: string): Promise<T> => {
    const { httpStatus, body } = await getJson(`${url}${path}`);
    const b = body as { status?: string; data?: T; error?: string };
    if (httpStatus !== 200 || b.status !== "success") throw new Error(`Prometheus GET ${path} answered ${httpStatus}: ${b.error ?? JSON.stringify(body)}`);
    return b.data as T;
  };
  const queryRaw = async (expr: string, time?: Date): Promise<QueryAnswer> => {
    const params = new URLSearchParams({ query: expr });
    if (time) params.set("time", String(time.getTime() / 1000));
    const { httpStatus, body } = await getJson(`${url}/api/v1/query?${params.toString()}`);
    return { httpStatus, ...(body as Omit<QueryAnswer, "httpStatus">) };
  };
  return {
    url,
    configFile,
    ruleFiles,
    queryRaw,
    async query(expr, time) {
      const a = await queryRaw(expr, time);
      if (a.httpStatus !== 200 || a.status !== "success" || !a.data) {
        throw new Error(`query ${JSON.stringify(expr)} answered ${a.httpStatus} ${a.errorType ?? ""}: ${a.error ?? ""}`);
      }
      if (a.data.resultType === "scalar") {
        const [ts, v] = a.data.result as [number, string];
        return [{ metric: {}, value: Number(v), timestamp: ts }];
      }
      if (a.data.resultType !== "vector") throw new Error(`query ${JSON.stringify(expr)} gave a ${a.data.resultType}, not an instant vector`);
      return (a.data.result as { metric: Record<string, string>; value: [number, string] }[]).map((s) => ({
        metric: s.metric,
        value: Number(s.value[1]),
        timestamp: s.value[0],
      }));
    },
    alerts: async () => (await api<{ alerts: PromAlert[] }>("/api/v1/alerts")).alerts,
    rules: async () => (await api<{ groups: PromRuleGroup[] }>("/api/v1/rules")).groups,
    targets: async () => (await api<{ activeTargets: PromTarget[] }>("/api/v1/targets")).activeTargets,
    waitFor,
    process: proc.child,
    logs: proc.output,
    async close() {
      await proc.stop(STOP_TIMEOUT_MS);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
