/**
 * pushMetrics against Debian's real prometheus-pushgateway: one group per target (job + target), each carrying that
 * target's series and the process-wide ones; PUT replaces a group; failures are results and warnings, never throws.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LogSink } from "../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import { pushMetrics } from "../../src/observability/pushgateway.js";
import type { RenewalEvent } from "../../src/renewal/events.js";
import { freePort } from "../servers/pebble.js";
import { startPushgateway, type PushGroup, type Pushgateway } from "../servers/pushgateway.js";

const A = "ml.contoso.test";
const B = "scoring.fabrikam.test";
const AT = new Date("2031-01-10T06:00:00.000Z");
const NOT_AFTER = "2031-04-10T05:00:00.000Z";

function captureLog(): LogSink & { lines: { level: string; obj: Record<string, unknown>; msg: string }[] } {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn") };
}

function finished(fqdn: string, action: "renewed" | "failed"): RenewalEvent {
  return {
    type: "run-finished",
    fqdn,
    at: AT,
    outcome: {
      fqdn,
      action,
      reason: "InRenewalWindow",
      notBefore: "2031-01-10T05:00:00.000Z",
      notAfter: NOT_AFTER,
      renewAt: "2031-03-11T05:00:00.000Z",
      extensionUpdated: action === "renewed",
      dnsOk: true,
      servingOk: action === "renewed",
      durationMs: 1000,
      ...(action === "failed" ? { error: { code: "AZURE_THROTTLED", stage: "dns-challenge" as const, message: "429", exitCode: 3 } } : {}),
    },
  };
}

/** the group with these grouping labels */
function group(groups: PushGroup[], job: string, target: string): PushGroup | undefined {
  return groups.find((g) => g.labels["job"] === job && g.labels["target"] === target);
}

/** samples of a family in a group, as label sets (without the grouping labels) -> value (a histogram's count) */
function samples(g: PushGroup | undefined, family: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of g?.families.get(family)?.metrics ?? []) {
    const { job: _job, target: _target, instance: _instance, ...rest } = m.labels;
    out[JSON.stringify(rest)] = Number(m.value ?? m.count);
  }
  return out;
}

describe("pushMetrics against prometheus-pushgateway", () => {
  let gw: Pushgateway;
  let metrics: Metrics;

  beforeAll(async () => {
    gw = await startPushgateway();
    metrics = createMetrics({ version: "1.2.3", defaultMetrics: true });
    metrics.sink(finished(A, "renewed"));
    metrics.sink({ type: "stage-finished", fqdn: A, stage: "acme-order", at: AT, durationMs: 1500, ok: true });
    metrics.sink(finished(B, "failed"));
    metrics.observeHistory({ fqdn: B, lastAttempt: "2031-01-10T06:00:00.000Z", consecutiveFailures: 2, nextAttempt: "2031-01-10T06:30:00.000Z" });
    metrics.requests("arm", "429");
    metrics.requests("arm", "200");
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("when two targets are pushed, each is its own job/target group with its series and the process-wide ones", async () => {
    const log = captureLog();
    const result = await pushMetrics({ url: gw.url, job: "amlcert", targets: [A, B], metrics, logger: log });
    expect(result).toEqual({ pushed: [A, B], failed: [] });
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);

    const groups = await gw.groups();
    expect(groups.map((g) => g.labels["target"]).sort()).toEqual([A, B].sort());
    const a = group(groups, "amlcert", A);
    const b = group(groups, "amlcert", B);
    expect(a?.lastPushSuccessful).toBe(true);
    expect(b?.lastPushSuccessful).toBe(true);
    expect(a?.pushTimeSeconds).toBeGreaterThan(0);

    expect(samples(a, "amlcert_runs_total")).toEqual({ [JSON.stringify({ result: "renewed" })]: 1 });
    expect(samples(b, "amlcert_runs_total")).toEqual({ [JSON.stringify({ result: "failed" })]: 1 });
    expect(samples(b, "amlcert_renewal_failures_total")).toEqual({ [JSON.stringify({ code: "AZURE_THROTTLED", stage: "dns-challenge" })]: 1 });
    expect(samples(a, "amlcert_renewal_failures_total")).toEqual({});
    expect(samples(a, "amlcert_certificate_not_after_timestamp_seconds")).toEqual({ "{}": Date.parse(NOT_AFTER) / 1000 });
    expect(samples(b, "amlcert_consecutive_failures")).toEqual({ "{}": 2 });
    expect(samples(a, "amlcert_consecutive_failures")).toEqual({});
    expect(samples(a, "amlcert_stage_duration_seconds")).toEqual({ [JSON.stringify({ stage: "acme-order" })]: 1 });
    expect(Number(a?.families.get("amlcert_stage_duration_seconds")?.metrics[0]?.sum)).toBe(1.5);

    // process-wide series travel with each target's push
    for (const g of [a, b]) {
      expect(samples(g, "amlcert_requests_total")).toEqual({
        [JSON.stringify({ status: "200", system: "arm" })]: 1,
        [JSON.stringify({ status: "429", system: "arm" })]: 1,
      });
      expect(samples(g, "amlcert_build_info")).toEqual({ [JSON.stringify({ node_version: process.versions.node, version: "1.2.3" })]: 1 });
      expect(g?.families.get("process_start_time_seconds")?.type).toBe("GAUGE");
      expect(g?.families.get("nodejs_version_info")?.metrics.length).toBe(1);
    }

    // what Prometheus scrapes from the gateway: the grouping labels on every series
    const text = await gw.metricsText();
    expect(text).toContain(`amlcert_runs_total{instance="",job="amlcert",result="renewed",target="${A}"} 1`);
    expect(text).toContain(`push_time_seconds{instance="",job="amlcert",target="${B}"}`);
  });

  it("when a target is pushed again, its group is replaced: a series that is gone disappears, the other group stays", async () => {
    const m = createMetrics({ version: "1.2.3", defaultMetrics: false });
    m.observeHistory({ fqdn: A, lastAttempt: "2031-01-10T06:00:00.000Z", consecutiveFailures: 0, nextAttempt: "2031-01-10T12:00:00.000Z" });
    expect(await pushMetrics({ url: gw.url, job: "amlcert-replace", targets: [A, B], metrics: m, logger: captureLog() })).toEqual({ pushed: [A, B], failed: [] });
    expect(samples(group(await gw.groups(), "amlcert-replace", A), "amlcert_next_attempt_timestamp_seconds")).toEqual({ "{}": Date.parse("2031-01-10T12:00:00.000Z") / 1000 });

    m.observeHistory({ fqdn: A, lastAttempt: "2031-01-10T12:00:00.000Z", consecutiveFailures: 1 });
    expect(await pushMetrics({ url: gw.url, job: "amlcert-replace", targets: [A], metrics: m, logger: captureLog() })).toEqual({ pushed: [A], failed: [] });
    const groups = await gw.groups();
    const a = group(groups, "amlcert-replace", A);
    expect(samples(a, "amlcert_next_attempt_timestamp_seconds")).toEqual({});
    expect(samples(a, "amlcert_consecutive_failures")).toEqual({ "{}": 1 });
    expect(group(groups, "amlcert-replace", B)?.lastPushSuccessful).toBe(true);
    // the first test's groups under job "amlcert" are untouched
    expect(samples(group(groups, "amlcert", A), "amlcert_runs_total")).toEqual({ [JSON.stringify({ result: "renewed" })]: 1 });
  });

  it("when a target name holds a '/', it is sent in the base64 form and the gateway shows the name unchanged", async () => {
    const odd = "weird/name.test";
    const m = createMetrics({ version: "1.2.3", defaultMetrics: false });
    m.sink(finished(odd, "renewed"));
    expect(await pushMetrics({ url: `${gw.url}/`, job: "amlcert-odd", targets: [odd], metrics: m, logger: captureLog() })).toEqual({ pushed: [odd], failed: [] });
    expect(samples(group(await gw.groups(), "amlcert-odd", odd), "amlcert_runs_total")).toEqual({ [JSON.stringify({ result: "renewed" })]: 1 });
  });
});

describe("pushMetrics against a prometheus-pushgateway that already holds another pusher's metrics", () => {
  let gw: Pushgateway;
  beforeAll(async () => {
    gw = await startPushgateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("when the gateway rejects a push as inconsistent (HTTP 400), that target fails with the status and a warning, the others are pushed", async () => {
    // another pusher already has amlcert_runs_total as a gauge: the gateway refuses our counter of that name
    const conflicting = "# TYPE amlcert_runs_total gauge\namlcert_runs_total 1\n";
    const put = await fetch(`${gw.url}/metrics/job/someone-else`, { method: "PUT", body: conflicting, signal: AbortSignal.timeout(5_000) });
    expect(put.status).toBe(200);
    try {
      const m = createMetrics({ version: "1.2.3", defaultMetrics: false });
      m.sink(finished(A, "renewed"));
      const log = captureLog();
      const result = await pushMetrics({ url: gw.url, job: "amlcert-conflict", targets: [A, "empty.test"], metrics: m, logger: log });
      expect(result.failed.map((f) => f.target)).toEqual([A]);
      expect(result.failed[0]!.error).toMatch(/^HTTP 400: .*amlcert_runs_total/);
      // the target without a runs series pushes fine
      expect(result.pushed).toEqual(["empty.test"]);
      expect(log.lines.filter((l) => l.level === "warn").map((l) => l.obj["target"])).toEqual([A]);
    } finally {
      await fetch(`${gw.url}/metrics/job/someone-else`, { method: "DELETE", signal: AbortSignal.timeout(5_000) });
    }
  });
});

describe("pushMetrics when the gateway cannot be reached", () => {
  const metrics = createMetrics({ version: "1.2.3", defaultMetrics: false });

  it("when nothing listens at the URL, every target fails with the connection error and a warning; nothing throws", async () => {
    const port = await freePort();
    const log = captureLog();
    const result = await pushMetrics({ url: `http://127.0.0.1:${port}`, job: "amlcert", targets: [A, B], metrics, logger: log });
    expect(result.pushed).toEqual([]);
    expect(result.failed.map((f) => f.target)).toEqual([A, B]);
    for (const f of result.failed) expect(f.error).toContain("ECONNREFUSED");
    expect(log.lines.filter((l) => l.level === "warn").map((l) => l.obj["target"])).toEqual([A, B]);
    expect(log.lines.filter((l) => l.level === "info")).toEqual([]);
  });

  describe("with a gateway that accepts the connection and never answers", () => {
    let server: Server;
    let url: string;
    let requests = 0;
    beforeAll(async () => {
      server = createServer(() => {
        requests++; // and never respond
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it("when the answer does not come within timeoutMs, the push gives up with a timeout error", async () => {
      const log = captureLog();
      // the server never answers, so the timeout surely fires; it is long enough that the request surely reaches the
      // server before it, even on a loaded machine (requests is counted when the request arrives)
      const result = await pushMetrics({ url, job: "amlcert", targets: [A], metrics, logger: log, timeoutMs: 2_000 });
      expect(result).toEqual({ pushed: [], failed: [{ target: A, error: "no answer in time" }] });
      expect(requests).toBe(1);
      expect(log.lines.map((l) => [l.level, l.obj["timeoutMs"]])).toEqual([["warn", 2_000]]);
    });
  });

  it("when the URL carries user info, it is sent as Basic authorization and no log line shows it", async () => {
    const seen: { url?: string; authorization?: string }[] = [];
    const server = createServer((req, res) => {
      seen.push({ url: req.url, authorization: req.headers.authorization });
      res.writeHead(401).end("unauthorized");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const log = captureLog();
      const result = await pushMetrics({ url: `http://pusher:s3cret@127.0.0.1:${port}/gw`, job: "amlcert", targets: [A], metrics, logger: log });
      expect(seen).toEqual([{ url: `/gw/metrics/job/amlcert/target/${A}`, authorization: `Basic ${Buffer.from("pusher:s3cret").toString("base64")}` }]);
      expect(result).toEqual({ pushed: [], failed: [{ target: A, error: "HTTP 401: unauthorized" }] });
      expect(JSON.stringify(log.lines)).not.toContain("s3cret");
      expect(log.lines[0]?.obj["pushgateway"]).toBe(`http://127.0.0.1:${port}/gw`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
