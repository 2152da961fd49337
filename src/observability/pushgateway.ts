/**
 * The end of a CronJob run: push the metrics to a Prometheus Pushgateway, one group per target
 * (`/metrics/job/<job>/target/<fqdn>`), each carrying that target's series plus the process-wide ones
 * (requests, build info, process metrics: a CronJob run is one process). PUT replaces the whole group, so a
 * series that disappeared (e.g. a removed gauge) disappears from the gateway too, and other targets' groups and
 * other jobs are never touched.
 *
 * prom-client's Pushgateway class pushes a whole registry, not one target's part of it, so this is a plain
 * `fetch` PUT of `metrics.textFor(target)`. Every push is bounded by a timeout; a failed push is a warning and a
 * result, never a failed run: the certificate work is done by then.
 */
import type { LogSink } from "./logger.js";
import type { Metrics } from "./metrics.js";

export interface PushOptions {
  /** the Pushgateway's base URL, e.g. http://pushgateway.monitoring:9091 (a path prefix is kept; user info, as in
   * https://user:password@host, is sent as Basic authorization) */
  url: string;
  /** the grouping key's job (config metrics.job) */
  job: string;
  targets: string[];
  metrics: Metrics;
  logger: LogSink;
  /** bound on each push; default 10 s */
  timeoutMs?: number;
}

export interface PushResult {
  pushed: string[];
  failed: { target: string; error: string }[];
}

export const DEFAULT_PUSH_TIMEOUT_MS = 10_000;

/** Prometheus' text format; the Pushgateway also accepts protobuf, which we do not send. */
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * One `<label>/<value>` pair of a grouping key path. A value that is empty or holds a `/` cannot be a plain path
 * segment; the Pushgateway takes it as `<label>@base64/<base64url value>` instead.
 */
export function groupingSegment(label: string, value: string): string {
  if (value === "" || value.includes("/")) return `${label}@base64/${Buffer.from(value, "utf8").toString("base64url") || "="}`;
  return `${label}/${encodeURIComponent(value)}`;
}

/** The group URL of one target. */
export function groupUrl(base: string, job: string, target: string): string {
  const root = base.replace(/\/+$/, "");
  return `${root}/metrics/${groupingSegment("job", job)}/${groupingSegment("target", target)}`;
}

/** The gateway's URL without user info, and that user info as a Basic authorization header (fetch refuses URLs
 * that carry credentials, and a log line must never show them). */
function endpoint(url: string): { base: string; headers: Record<string, string> } {
  const u = new URL(url);
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = "";
  u.password = "";
  const base = u.toString().replace(/\/+$/, "");
  if (user === "" && password === "") return { base, headers: {} };
  return { base, headers: { Authorization: `Basic ${Buffer.from(`${user}:${password}`, "utf8").toString("base64")}` } };
}

async function pushOne(opts: PushOptions, target: string, timeoutMs: number): Promise<void> {
  const { base, headers } = endpoint(opts.url);
  const body = await opts.metrics.textFor(target);
  const res = await fetch(groupUrl(base, opts.job, target), {
    method: "PUT",
    headers: { ...headers, "Content-Type": CONTENT_TYPE },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (res.status >= 200 && res.status < 300) {
    await res.body?.cancel();
    return;
  }
  const said = (await res.text().catch(() => "")).trim().slice(0, 300);
  throw new Error(`HTTP ${res.status}${said ? `: ${said}` : ""}`);
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return "no answer in time";
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : "";
    return `${err.message}${cause}`;
  }
  return String(err);
}

/** The URL for a log line: never the user info a URL may carry. */
function shown(url: string): string {
  try {
    return endpoint(url).base;
  } catch {
    return "(not a URL)";
  }
}

export async function pushMetrics(opts: PushOptions): Promise<PushResult> {
  const pushgateway = shown(opts.url);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PUSH_TIMEOUT_MS;
  const settled = await Promise.allSettled(opts.targets.map((t) => pushOne(opts, t, timeoutMs)));
  const result: PushResult = { pushed: [], failed: [] };
  settled.forEach((s, i) => {
    const target = opts.targets[i]!;
    if (s.status === "fulfilled") {
      result.pushed.push(target);
      return;
    }
    const error = describe(s.reason);
    result.failed.push({ target, error });
    opts.logger.warn({ pushgateway, job: opts.job, target, error, timeoutMs }, "could not push the metrics to the Pushgateway; the run's result stands");
  });
  if (result.pushed.length > 0) opts.logger.info({ pushgateway, job: opts.job, targets: result.pushed }, "metrics pushed to the Pushgateway");
  return result;
}
