import { describe, expect, it } from "vitest";
import type { TargetHistory } from "../../src/history/history.js";
import { createMetrics, STAGE_DURATION_BUCKETS, type Metrics } from "../../src/observability/metrics.js";
import { groupUrl, groupingSegment } from "../../src/observability/pushgateway.js";
import type { CertificateFacts, RenewalEvent, TargetOutcome } from "../../src/renewal/events.js";
import { parseExposition, seriesOf } from "../support/exposition.js";

const A = "ml.contoso.test";
const B = "scoring.fabrikam.test";
const AT = new Date("2031-01-10T06:00:00.000Z");

const OLD: CertificateFacts = { serial: "01", notBefore: "2030-11-01T00:00:00.000Z", notAfter: "2031-01-30T00:00:00.000Z", renewAt: "2030-12-31T00:00:00.000Z" };
const NEW: CertificateFacts = { serial: "02", notBefore: "2031-01-10T05:00:00.000Z", notAfter: "2031-04-10T05:00:00.000Z", renewAt: "2031-03-11T05:00:00.000Z" };
const sec = (iso: string) => Date.parse(iso) / 1000;

function outcome(fqdn: string, extra: Partial<TargetOutcome>): TargetOutcome {
  return { fqdn, action: "none", reason: "UpToDate", extensionUpdated: false, dnsOk: false, servingOk: false, durationMs: 10, ...extra };
}

/** The events of a run that renews `fqdn` from OLD to NEW and verifies it. */
function renewedRun(fqdn: string): RenewalEvent[] {
  return [
    { type: "run-started", fqdn, at: AT },
    { type: "stage-started", fqdn, stage: "preflight", at: AT },
    { type: "stage-finished", fqdn, stage: "preflight", at: AT, durationMs: 40, ok: true },
    { type: "planned", fqdn, at: AT, renew: true, reason: "InRenewalWindow", message: "due", secret: "aml-tls-old", current: OLD },
    { type: "dns-checked", fqdn, at: AT, ok: true, problems: [] },
    { type: "stage-finished", fqdn, stage: "acme-order", at: AT, durationMs: 2_000, ok: true },
    { type: "stored", fqdn, at: AT, secret: "aml-tls-new", reused: false, certificate: NEW },
    { type: "stage-finished", fqdn, stage: "extension", at: AT, durationMs: 90_000, ok: true },
    { type: "rolled-out", fqdn, at: AT, secret: "aml-tls-new", changed: true },
    { type: "verified", fqdn, at: AT, secret: "aml-tls-new", newCertificate: true, dnsOk: true, servingOk: true },
    {
      type: "run-finished",
      fqdn,
      at: AT,
      outcome: outcome(fqdn, { action: "renewed", reason: "InRenewalWindow", serial: NEW.serial, notBefore: NEW.notBefore, notAfter: NEW.notAfter, renewAt: NEW.renewAt, secret: "aml-tls-new", extensionUpdated: true, dnsOk: true, servingOk: true }),
    },
  ];
}

/** The events of a run whose ACME order fails: the old certificate stays in place. */
function failedRun(fqdn: string): RenewalEvent[] {
  return [
    { type: "run-started", fqdn, at: AT },
    { type: "planned", fqdn, at: AT, renew: true, reason: "InRenewalWindow", message: "due", secret: "aml-tls-old", current: OLD },
    { type: "dns-checked", fqdn, at: AT, ok: false, problems: ["resolves to 10.0.0.9, not azureml-fe"] },
    { type: "stage-finished", fqdn, stage: "acme-order", at: AT, durationMs: 700, ok: false },
    {
      type: "run-finished",
      fqdn,
      at: AT,
      outcome: outcome(fqdn, {
        action: "failed",
        reason: "InRenewalWindow",
        serial: OLD.serial,
        notBefore: OLD.notBefore,
        notAfter: OLD.notAfter,
        renewAt: OLD.renewAt,
        error: { code: "ACME_REJECTED", stage: "acme-order", message: "the CA rejected the order", exitCode: 3 },
      }),
    },
  ];
}

async function scrape(m: Metrics, target?: string) {
  return parseExposition(target === undefined ? await m.text() : await m.textFor(target));
}

const metrics = () => createMetrics({ version: "1.2.3", defaultMetrics: false });
const feed = (m: Metrics, events: RenewalEvent[]) => events.forEach((e) => m.sink(e));

describe("metrics from renewal events", () => {
  it("when a run renews and verifies, the runs counter, the new certificate's timestamps, the checks and the stage durations are exact", async () => {
    const m = metrics();
    feed(m, renewedRun(A));
    const exp = await scrape(m);

    expect(seriesOf(exp, "amlcert_runs_total")).toEqual(new Map([[`amlcert_runs_total{target="${A}",result="renewed"}`, 1]]));
    expect(exp.samples.get(`amlcert_certificate_not_before_timestamp_seconds{target="${A}"}`)).toBe(sec(NEW.notBefore));
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(NEW.notAfter));
    expect(exp.samples.get(`amlcert_certificate_renewal_timestamp_seconds{target="${A}"}`)).toBe(sec(NEW.renewAt!));
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_serving_ok{target="${A}"}`)).toBe(1);
    expect(seriesOf(exp, "amlcert_renewal_failures_total").size).toBe(0);

    expect(exp.samples.get(`amlcert_stage_duration_seconds_count{target="${A}",stage="acme-order"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_sum{target="${A}",stage="acme-order"}`)).toBe(2);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_bucket{le="1",target="${A}",stage="acme-order"}`)).toBe(0);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_bucket{le="2.5",target="${A}",stage="acme-order"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_bucket{le="+Inf",target="${A}",stage="acme-order"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_sum{target="${A}",stage="extension"}`)).toBe(90);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_sum{target="${A}",stage="preflight"}`)).toBe(0.04);
    // one bucket per boundary plus +Inf, for each of the three stages seen
    expect(seriesOf(exp, "amlcert_stage_duration_seconds_bucket").size).toBe(3 * (STAGE_DURATION_BUCKETS.length + 1));
    expect(exp.types.get("amlcert_stage_duration_seconds")).toBe("histogram");
  });

  it("when a stored certificate is never rolled out, the certificate gauges keep the one in place", async () => {
    const m = metrics();
    const events = renewedRun(A).filter((e) => e.type !== "rolled-out" && e.type !== "verified" && e.type !== "run-finished");
    feed(m, events);
    const exp = await scrape(m);
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(OLD.notAfter));
    expect(exp.samples.get(`amlcert_serving_ok{target="${A}"}`)).toBeUndefined();
  });

  it("when a run fails, the failure is counted by stage and code, the old certificate stays on the gauges and serving_ok is not invented", async () => {
    const m = metrics();
    feed(m, failedRun(A));
    const exp = await scrape(m);

    expect(seriesOf(exp, "amlcert_renewal_failures_total")).toEqual(new Map([[`amlcert_renewal_failures_total{target="${A}",stage="acme-order",code="ACME_REJECTED"}`, 1]]));
    expect(seriesOf(exp, "amlcert_runs_total")).toEqual(new Map([[`amlcert_runs_total{target="${A}",result="failed"}`, 1]]));
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(OLD.notAfter));
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(0);
    expect(exp.samples.get(`amlcert_serving_ok{target="${A}"}`)).toBeUndefined();
  });

  it("when runs repeat, counters add up per result and a later verification overwrites the checks", async () => {
    const m = metrics();
    feed(m, failedRun(A));
    feed(m, failedRun(A));
    feed(m, renewedRun(A));
    const exp = await scrape(m);
    expect(seriesOf(exp, "amlcert_runs_total")).toEqual(
      new Map([
        [`amlcert_runs_total{target="${A}",result="failed"}`, 2],
        [`amlcert_runs_total{target="${A}",result="renewed"}`, 1],
      ]),
    );
    expect(exp.samples.get(`amlcert_renewal_failures_total{target="${A}",stage="acme-order",code="ACME_REJECTED"}`)).toBe(2);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_count{target="${A}",stage="acme-order"}`)).toBe(3);
    expect(exp.samples.get(`amlcert_stage_duration_seconds_sum{target="${A}",stage="acme-order"}`)).toBe(3.4);
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(NEW.notAfter));
  });

  it("when verification finds azureml-fe serving the old certificate, serving_ok is 0 and dns_ok is what the check saw", async () => {
    const m = metrics();
    m.sink({ type: "verified", fqdn: A, at: AT, secret: "aml-tls-new", newCertificate: true, dnsOk: true, servingOk: false, problem: "old certificate served" });
    const exp = await scrape(m);
    expect(exp.samples.get(`amlcert_serving_ok{target="${A}"}`)).toBe(0);
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(1);
  });

  it("when a run is skipped because another holds the Lease, only the skipped run is counted", async () => {
    const m = metrics();
    m.sink({ type: "run-finished", fqdn: A, at: AT, outcome: outcome(A, { action: "skipped", reason: "LockHeld" }) });
    const exp = await scrape(m);
    expect(seriesOf(exp, "amlcert_runs_total")).toEqual(new Map([[`amlcert_runs_total{target="${A}",result="skipped"}`, 1]]));
    expect(seriesOf(exp, "amlcert_certificate_not_after_timestamp_seconds").size).toBe(0);
    expect(seriesOf(exp, "amlcert_dns_ok").size).toBe(0);
  });
});

describe("metrics from the durable history", () => {
  const history: TargetHistory = {
    fqdn: A,
    lastAttempt: "2031-01-10T06:00:00.000Z",
    lastSuccess: "2031-01-09T06:00:00.000Z",
    lastFailure: "2031-01-10T06:00:00.000Z",
    lastAction: "failed",
    consecutiveFailures: 3,
    nextAttempt: "2031-01-10T07:00:00.000Z",
    serial: OLD.serial,
    notBefore: OLD.notBefore,
    notAfter: OLD.notAfter,
    renewAt: OLD.renewAt,
    dnsOk: true,
    servingOk: false,
  };

  it("when a history is observed, last run, last success, consecutive failures, next attempt and the certificate it saw are set", async () => {
    const m = metrics();
    m.observeHistory(history);
    const exp = await scrape(m);
    expect(exp.samples.get(`amlcert_last_run_timestamp_seconds{target="${A}"}`)).toBe(sec("2031-01-10T06:00:00.000Z"));
    expect(exp.samples.get(`amlcert_last_success_timestamp_seconds{target="${A}"}`)).toBe(sec("2031-01-09T06:00:00.000Z"));
    expect(exp.samples.get(`amlcert_consecutive_failures{target="${A}"}`)).toBe(3);
    expect(exp.samples.get(`amlcert_next_attempt_timestamp_seconds{target="${A}"}`)).toBe(sec("2031-01-10T07:00:00.000Z"));
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(OLD.notAfter));
    expect(exp.samples.get(`amlcert_certificate_renewal_timestamp_seconds{target="${A}"}`)).toBe(sec(OLD.renewAt!));
    expect(exp.samples.get(`amlcert_dns_ok{target="${A}"}`)).toBe(1);
    expect(exp.samples.get(`amlcert_serving_ok{target="${A}"}`)).toBe(0);
  });

  it("when a later history has no next attempt and no success, those series disappear and the failures drop to 0 after a success", async () => {
    const m = metrics();
    m.observeHistory(history);
    m.observeHistory({ fqdn: A, lastAttempt: "2031-01-11T06:00:00.000Z", consecutiveFailures: 0 });
    const exp = await scrape(m);
    expect(exp.samples.get(`amlcert_last_run_timestamp_seconds{target="${A}"}`)).toBe(sec("2031-01-11T06:00:00.000Z"));
    expect(exp.samples.get(`amlcert_consecutive_failures{target="${A}"}`)).toBe(0);
    expect(seriesOf(exp, "amlcert_next_attempt_timestamp_seconds").size).toBe(0);
    expect(seriesOf(exp, "amlcert_last_success_timestamp_seconds").size).toBe(0);
    // a history without a certificate says nothing about the one the gauges show
    expect(exp.samples.get(`amlcert_certificate_not_after_timestamp_seconds{target="${A}"}`)).toBe(sec(OLD.notAfter));
  });
});

describe("process-wide metrics", () => {
  it("when adapters report responses, requests are counted by system and status", async () => {
    const m = metrics();
    m.requests("arm", "429");
    m.requests("arm", "200");
    m.requests("arm", "200");
    m.requests("acme", "error");
    const exp = await scrape(m);
    expect(seriesOf(exp, "amlcert_requests_total")).toEqual(
      new Map([
        ['amlcert_requests_total{system="arm",status="429"}', 1],
        ['amlcert_requests_total{system="arm",status="200"}', 2],
        ['amlcert_requests_total{system="acme",status="error"}', 1],
      ]),
    );
    expect(exp.types.get("amlcert_requests_total")).toBe("counter");
  });

  it("when built, build_info is 1 with the version and the Node.js version", async () => {
    const exp = await scrape(metrics());
    expect(seriesOf(exp, "amlcert_build_info")).toEqual(new Map([[`amlcert_build_info{version="1.2.3",node_version="${process.versions.node}"}`, 1]]));
  });

  it("when default metrics are on, the process and nodejs families are there without a prefix; when off, none is", async () => {
    const on = await scrape(createMetrics({ version: "1.2.3" }));
    expect(on.types.get("process_cpu_seconds_total")).toBe("counter");
    expect(on.types.get("process_start_time_seconds")).toBe("gauge");
    expect(on.types.get("nodejs_version_info")).toBe("gauge");
    const off = await scrape(metrics());
    expect([...off.types.keys()].filter((n) => !n.startsWith("amlcert_"))).toEqual([]);
  });

  it("when two metrics objects exist, neither sees the other's series", async () => {
    const first = metrics();
    const second = metrics();
    first.requests("kubernetes", "200");
    feed(first, failedRun(A));
    const exp = await scrape(second);
    expect(seriesOf(exp, "amlcert_requests_total").size).toBe(0);
    expect(seriesOf(exp, "amlcert_runs_total").size).toBe(0);
  });
});

describe("one target's exposition", () => {
  it("when two targets have series, textFor carries only that target's plus the process-wide ones", async () => {
    const m = metrics();
    feed(m, renewedRun(A));
    feed(m, failedRun(B));
    m.observeHistory({ fqdn: B, lastAttempt: "2031-01-10T06:00:00.000Z", consecutiveFailures: 1 });
    m.requests("acme", "201");

    const a = await scrape(m, A);
    const targets = new Set([...a.samples.keys()].flatMap((s) => [...s.matchAll(/target="([^"]*)"/g)].map((x) => x[1])));
    expect(targets).toEqual(new Set([A]));
    expect(a.samples.get(`amlcert_runs_total{target="${A}",result="renewed"}`)).toBe(1);
    expect(a.samples.get('amlcert_requests_total{system="acme",status="201"}')).toBe(1);
    expect(seriesOf(a, "amlcert_build_info").size).toBe(1);
    expect(seriesOf(a, "amlcert_consecutive_failures").size).toBe(0);

    const b = await scrape(m, B);
    expect(b.samples.get(`amlcert_renewal_failures_total{target="${B}",stage="acme-order",code="ACME_REJECTED"}`)).toBe(1);
    expect(b.samples.get(`amlcert_consecutive_failures{target="${B}"}`)).toBe(1);
    expect(seriesOf(b, "amlcert_runs_total")).toEqual(new Map([[`amlcert_runs_total{target="${B}",result="failed"}`, 1]]));
    expect(b.samples.get('amlcert_requests_total{system="acme",status="201"}')).toBe(1);

    // the whole registry has both
    const all = await scrape(m);
    expect(seriesOf(all, "amlcert_runs_total").size).toBe(2);
  });

  it("when the target has no series at all, textFor still carries the families' HELP and TYPE and the process-wide series", async () => {
    const m = metrics();
    feed(m, renewedRun(A));
    const text = await m.textFor("other.test");
    expect(text).not.toContain(A);
    expect(text).toContain("# TYPE amlcert_runs_total counter");
    expect(text).toContain(`amlcert_build_info{version="1.2.3",node_version="${process.versions.node}"} 1`);
  });
});

describe("Pushgateway grouping key", () => {
  it("when the values are plain, the path is /metrics/job/<job>/target/<fqdn> under the base URL, its path prefix kept", () => {
    expect(groupUrl("http://pgw.monitoring:9091", "amlcert", A)).toBe(`http://pgw.monitoring:9091/metrics/job/amlcert/target/${A}`);
    expect(groupUrl("https://pgw.example/prefix/", "amlcert", A)).toBe(`https://pgw.example/prefix/metrics/job/amlcert/target/${A}`);
  });

  it("when a value holds a '/' or is empty, it is sent in the @base64 form; other special characters are URL-encoded", () => {
    expect(groupingSegment("target", "a/b")).toBe(`target@base64/${Buffer.from("a/b").toString("base64url")}`);
    expect(groupingSegment("target", "")).toBe("target@base64/=");
    expect(groupingSegment("target", "a b?")).toBe("target/a%20b%3F");
  });
});
