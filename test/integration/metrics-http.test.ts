/**
 * The daemon's HTTP port scraped for real over loopback: /metrics in the Prometheus text format (and accepted by
 * Debian's promtool), /healthz and /readyz with their status codes, 404/405 for the rest, and a bounded close.
 */
import { request as httpRequest, Agent } from "node:http";
import { Gauge } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import { startHttpServer, type Probe, type RunningHttpServer } from "../../src/observability/http-server.js";
import { parseExposition } from "../support/exposition.js";
import { promtoolCheckMetrics as promtoolCheck } from "../prometheus/promtool.js";

const A = "ml.contoso.test";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(port: number, method: string, path: string, agent?: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, timeout: 5_000, ...(agent ? { agent } : {}) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

describe("the metrics and health HTTP server", () => {
  let metrics: Metrics;
  let server: RunningHttpServer;
  let health: Probe;
  let ready: Probe;

  beforeAll(async () => {
    metrics = createMetrics({ version: "1.2.3", defaultMetrics: true });
    metrics.sink({ type: "stage-finished", fqdn: A, stage: "acme-order", at: new Date(), durationMs: 1_200, ok: true });
    metrics.sink({ type: "dns-checked", fqdn: A, at: new Date(), ok: true, problems: [] });
    metrics.sink({
      type: "run-finished",
      fqdn: A,
      at: new Date(),
      outcome: {
        fqdn: A,
        action: "failed",
        reason: "InRenewalWindow",
        notBefore: "2031-01-10T05:00:00.000Z",
        notAfter: "2031-04-10T05:00:00.000Z",
        renewAt: "2031-03-11T05:00:00.000Z",
        extensionUpdated: false,
        dnsOk: true,
        servingOk: false,
        durationMs: 1_300,
        error: { code: "EXTENSION_LRO_FAILED", stage: "extension", message: "the operation failed", exitCode: 3 },
      },
    });
    metrics.observeHistory({ fqdn: A, lastAttempt: "2031-01-10T06:00:00.000Z", lastSuccess: "2031-01-09T06:00:00.000Z", consecutiveFailures: 1, nextAttempt: "2031-01-10T06:30:00.000Z" });
    metrics.requests("arm", "429");
    metrics.requests("arm", "202");
    metrics.requests("kubernetes", "error");
    health = { ok: true, detail: { uptimeSeconds: 12 } };
    ready = { ok: false, detail: { reason: "first run not finished" } };
    server = await startHttpServer({ host: "127.0.0.1", port: 0, metrics, health: () => health, ready: () => ready });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("when /metrics is scraped, it answers 200 in the Prometheus text format with every amlcert family, and promtool accepts it", async () => {
    const r = await call(server.port, "GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    const exp = parseExposition(r.body);
    expect(exp.samples.get(`amlcert_renewal_failures_total{target="${A}",stage="extension",code="EXTENSION_LRO_FAILED"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_runs_total{target="${A}",result="failed"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_consecutive_failures{target="${A}"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(1);
    expect(exp.samples.get('amlcert_requests_total{system="arm",status="429"}')).toBe(1);
    expect(exp.samples.get('amlcert_requests_total{system="kubernetes",status="error"}')).toBe(1);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_count{target="${A}",stage="acme-order"}`)).toBe(1);
    expect(exp.types.get("process_cpu_seconds_total")).toBe("counter");
    const families = [...exp.types.keys()].filter((n) => n.startsWith("amlcert_")).sort();
    expect(families).toEqual(
      [
        "amlcert_build_info",
        "amlcert_certificate_not_after_timestamp_seconds",
        "amlcert_certificate_not_before_timestamp_seconds",
        "amlcert_certificate_renewal_source",
        "amlcert_certificate_renewal_timestamp_seconds",
        "amlcert_consecutive_failures",
        "amlcert_dns_ok",
        "amlcert_last_run_timestamp_seconds",
        "amlcert_last_success_timestamp_seconds",
        "amlcert_next_attempt_timestamp_seconds",
        "amlcert_renewal_failures_total",
        "amlcert_requests_total",
        "amlcert_runs_total",
        "amlcert_serving_ok",
        "amlcert_source_not_renewing",
        "amlcert_stage_duration_seconds",
      ].sort(),
    );

    const check = await promtoolCheck(r.body);
    expect(check.output).toBe("");
    expect(check.code).toBe(0);
  });

  it("when promtool is given a scrape with a lint problem, it fails (the check above can fail)", async () => {
    const check = await promtoolCheck("# HELP amlcert_bad_total a gauge named like a counter\n# TYPE amlcert_bad_total gauge\namlcert_bad_total 1\n");
    expect(check.code).not.toBe(0);
    expect(check.output).toContain("amlcert_bad_total");
  });

  it("when HEAD /metrics is asked, the headers come without a body", async () => {
    const r = await call(server.port, "HEAD", "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(Number(r.headers["content-length"])).toBeGreaterThan(0);
    expect(r.body).toBe("");
  });

  it("when health says ok, /healthz is 200 with its detail; when it says not ok, 503", async () => {
    const ok = await call(server.port, "GET", "/healthz");
    expect(ok.status).toBe(200);
    expect(ok.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(JSON.parse(ok.body)).toEqual({ ok: true, detail: { uptimeSeconds: 12 } });

    health = { ok: false, detail: { reason: "scheduler stopped" } };
    try {
      const bad = await call(server.port, "GET", "/healthz");
      expect(bad.status).toBe(503);
      expect(JSON.parse(bad.body)).toEqual({ ok: false, detail: { reason: "scheduler stopped" } });
    } finally {
      health = { ok: true, detail: { uptimeSeconds: 12 } };
    }
  });

  it("when not ready, /readyz is 503; once ready, 200", async () => {
    const before = await call(server.port, "GET", "/readyz");
    expect(before.status).toBe(503);
    expect(JSON.parse(before.body)).toEqual({ ok: false, detail: { reason: "first run not finished" } });
    ready = { ok: true, detail: { lastRun: "2031-01-10T06:00:00.000Z" } };
    const after = await call(server.port, "GET", "/readyz?verbose=1");
    expect(after.status).toBe(200);
    expect(JSON.parse(after.body)).toEqual({ ok: true, detail: { lastRun: "2031-01-10T06:00:00.000Z" } });
  });

  it("when a probe throws, the answer is 503 with the error", async () => {
    const throwing = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      metrics,
      health: () => {
        throw new Error("history unreadable");
      },
      ready: () => ready,
    });
    try {
      const r = await call(throwing.port, "GET", "/healthz");
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body)).toEqual({ ok: false, detail: { error: "history unreadable" } });
    } finally {
      await throwing.close();
    }
  });

  it("when another path is asked, 404; when another method, 405 with Allow", async () => {
    expect((await call(server.port, "GET", "/")).status).toBe(404);
    expect((await call(server.port, "GET", "/metrics/extra")).status).toBe(404);
    expect((await call(server.port, "GET", "/__proto__")).status).toBe(404);
    const post = await call(server.port, "POST", "/metrics");
    expect(post.status).toBe(405);
    expect(post.headers["allow"]).toBe("GET, HEAD");
  });

  it("when a scraper holds a keep-alive connection, close() still finishes and the port stops answering", async () => {
    const s = await startHttpServer({ host: "127.0.0.1", port: 0, metrics, health: () => health, ready: () => ready });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await call(s.port, "GET", "/metrics", agent);
      expect(first.status).toBe(200);
      expect(first.headers["connection"]).toBe("keep-alive");
      // the socket stays open in the agent's pool; close must not wait for it
      await s.close();
      await expect(call(s.port, "GET", "/healthz")).rejects.toMatchObject({ code: "ECONNREFUSED" });
    } finally {
      agent.destroy();
    }
  });

  it("when a scrape is still being answered, close() ends that connection instead of waiting for it", async () => {
    const slow = createMetrics({ version: "1.2.3", defaultMetrics: false });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let collecting!: () => void;
    const started = new Promise<void>((resolve) => (collecting = resolve));
    // a collector that does not finish until released: the scrape stays in flight
    new Gauge({
      name: "amlcert_test_slow",
      help: "held open by the test",
      registers: [slow.registry],
      async collect() {
        collecting();
        await held;
      },
    });
    const s = await startHttpServer({ host: "127.0.0.1", port: 0, metrics: slow, health: () => health, ready: () => ready });
    try {
      const scrape = call(s.port, "GET", "/metrics");
      const outcome = scrape.then(
        () => "answered",
        (err: NodeJS.ErrnoException) => err.code ?? err.message,
      );
      await started;
      await s.close();
      expect(await outcome).toBe("ECONNRESET");
    } finally {
      release();
    }
  });

  it("when the port is taken, start fails with the listen error", async () => {
    await expect(startHttpServer({ host: "127.0.0.1", port: server.port, metrics, health: () => health, ready: () => ready })).rejects.toMatchObject({ code: "EADDRINUSE" });
  });
});
