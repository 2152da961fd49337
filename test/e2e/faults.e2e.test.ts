/**
 * The fault matrix (issue 7), end to end: the built CLI against Pebble and the stand-ins, one fault per row. Each row
 * asserts the outcome (renewed, failed, or verification failed), the exit code, a metric (the run's own, as it pushed
 * them to Debian's real Pushgateway: amlcert_runs_total, amlcert_renewal_failures_total, amlcert_requests_total) and
 * the log line a user would read. Every wait is bounded by a setting users have too (azure.requestTimeout,
 * kubernetesApi.requestTimeout, dns.queryTimeout, extension.lroTimeout, verify.timeout): a hung request is given up
 * by the client or released by the test, never waited out by a sleep of the test.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startHarness, type CliRun, type Harness } from "../harness/harness.js";
import { startPushgateway, type Pushgateway } from "../servers/pushgateway.js";

const FQDN = "ml.contoso.test";
const SLOT_A = "aml-tls-a";
const SLOT_B = "aml-tls-b";
const DAY = 86_400_000;
/** Not due (a day old, 89 days left): every run here is --force, so the fault meets a renewal, not a skip. */
const notDue = () => ({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });

/** The bounds every row runs with: small, so that a hung request gives up within seconds. */
const BOUNDS = {
  azure: { requestTimeout: "5s", maxRetries: 2, maxRetryAfter: "5s" },
  kubernetesApi: { requestTimeout: "5s", maxRetries: 2, maxRetryAfter: "5s" },
  extension: { lroTimeout: "30s" },
};
/** The DNS rows' bounds: one short try per query, and a short propagation wait. */
const DNS_BOUNDS = { queryTimeout: "500ms", queryTries: 1, propagationTimeout: "3s" };

function resultOf(run: CliRun): Record<string, unknown> & { action?: string; error?: { code?: string; stage?: string; message?: string } } {
  const r = run.lines.find((l) => l.fqdn === FQDN);
  if (!r) throw new Error(`no result line for ${FQDN} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

/** The messages of the run's log lines (JSON on stderr). */
function logMessages(run: CliRun): string[] {
  return run.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => {
      try {
        const o = JSON.parse(l) as { msg?: unknown; err?: { message?: unknown }; error?: unknown };
        return [o.msg, o.err?.message, o.error].filter((x): x is string => typeof x === "string").join(" | ");
      } catch {
        return l;
      }
    });
}

describe("the fault matrix: amlcert renew against injected faults of ARM, Kubernetes, the extension, DNS and TLS", () => {
  let h: Harness;
  let gateway: Pushgateway;
  let before: { secret: string; serial: string };

  beforeAll(async () => {
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    gateway = await startPushgateway();
  }, 120_000);
  afterAll(async () => {
    await gateway?.close();
    await h?.stop();
  });
  beforeEach(async () => {
    await h.reset();
    // slots mode (the default): both slots as the manifests create them, the certificate in place in slot -a
    for (const slot of [SLOT_A, SLOT_B]) {
      h.clusters[0]!.kube.putSecret("azureml", slot, {}, { labels: { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": "aml-tls" } });
    }
    const inPlace = await h.seedCertificateInPlace({ ...notDue(), name: SLOT_A });
    before = { secret: inPlace.secret, serial: inPlace.serial };
    // a new account key: a new ACME account, which has no valid authorization yet, so the DNS-01 challenge is written
    h.seedAccountKey();
  });
  afterEach(() => {
    h.clusters[0]!.fe.unfreeze();
  });

  /** Run `amlcert renew --force` with the bounds (and `overrides`) pushing to the Pushgateway. */
  async function renew(name: string, overrides: Record<string, unknown> = {}): Promise<CliRun> {
    const config = h.writeConfig({ ...BOUNDS, metrics: { pushgateway: gateway.url }, ...overrides }, `faults-${name}.yaml`);
    return h.runCli(["renew", "--config", config, "--force"], { timeoutMs: 150_000 });
  }

  /** The value of one series of the run's push (the group job=amlcert, target=FQDN; each run replaces it). */
  async function pushed(family: string, labels: Record<string, string>): Promise<number | undefined> {
    const group = (await gateway.groups()).find((g) => g.labels.job === "amlcert" && g.labels.target === FQDN);
    const m = group?.families.get(family)?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return m?.value === undefined ? undefined : Number(m.value);
  }
  const requests = (system: string, status: string) => pushed("amlcert_requests_total", { system, status });
  const failures = (stage: string, code: string) => pushed("amlcert_renewal_failures_total", { target: FQDN, stage, code });
  const runs = (result: string) => pushed("amlcert_runs_total", { target: FQDN, result });

  function expectRenewed(run: CliRun): void {
    expect(run.code, run.stderr).toBe(0);
    expect(resultOf(run)).toMatchObject({ action: "renewed", servingOk: true });
    expect(h.clusters[0]!.fe.servedSerial()).toBe(resultOf(run).serial);
  }
  async function expectFailed(run: CliRun, exit: number, code: string, stage: string): Promise<void> {
    expect(run.code, run.stderr).toBe(exit);
    expect(resultOf(run)).toMatchObject({ action: "failed", error: { code, stage } });
    expect(await runs("failed")).toBe(1);
    expect(await failures(stage, code)).toBe(1);
  }
  /** A failure up to the extension update: the certificate in place is still named and served, no TXT value left. */
  function expectPreviousServed(): void {
    const ext = h.arm.getExtension(h.clusters[0]!.extension)!;
    expect(ext.configurationSettings.sslSecret).toBe(before.secret);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
    expect(h.zones.allZones().flatMap((z) => h.zones.listRecordSets(z, "TXT").map((r) => `${r.name}.${z.name}`))).toEqual([]);
  }

  describe("Azure Resource Manager", () => {
    it("429 with a short Retry-After on the TXT write: waited out, renewed (exit 0); requests{arm,429}=2; the retries are logged", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 429, times: 2, retryAfterSeconds: 1 });
      const run = await renew("arm-429-short");
      expectRenewed(run);
      expect(await requests("arm", "429")).toBe(2);
      expect(await runs("renewed")).toBe(1);
      expect(logMessages(run).filter((m) => /^PUT \/subscriptions\/.+\/TXT\/_acme-challenge\.ml: ARM answered 429 TooManyRequests \(Retry-After 1 s\); retrying in (1(\.\d)?|2) s \(try [23] of 3\)$/.test(m))).toHaveLength(2);
    });

    it("429 with a Retry-After beyond azure.maxRetryAfter: failed at once (exit 3, AZURE_THROTTLED at dns-challenge); requests{arm,429}=1; the wait and the cap are named", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 429, times: Infinity, retryAfterSeconds: 600 });
      const run = await renew("arm-429-long");
      await expectFailed(run, 3, "AZURE_THROTTLED", "dns-challenge");
      expect(await requests("arm", "429")).toBe(1);
      expect(resultOf(run).error!.message).toContain("ARM answered 429 TooManyRequests and asked to retry after 600 s, longer than the 5 s amlcert waits (azure.maxRetryAfter)");
      expect(run.stderr).toContain("asked to retry after 600 s, longer than the 5 s amlcert waits (azure.maxRetryAfter)");
      expectPreviousServed();
    });

    it("a transient 500 on the TXT write: retried, renewed (exit 0); requests{arm,500}=1", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 500, times: 1 });
      const run = await renew("arm-500");
      expectRenewed(run);
      expect(await requests("arm", "500")).toBe(1);
      expect(logMessages(run).some((m) => /\/TXT\/_acme-challenge\.ml: ARM answered 500 InternalServerError; retrying in [\d.]+ m?s \(try 2 of 3\)$/.test(m))).toBe(true);
    });

    it("503 on every try: failed (exit 3, AZURE_ERROR at dns-challenge) after 3 tries; requests{arm,503}=3", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 503, times: Infinity });
      const run = await renew("arm-503");
      await expectFailed(run, 3, "AZURE_ERROR", "dns-challenge");
      expect(await requests("arm", "503")).toBe(3);
      expect(resultOf(run).error!.message).toBe(`could not write TXT record set _acme-challenge.ml in zone contoso.test: ARM answered 503 ServiceUnavailable: Injected failure (503).`);
      expectPreviousServed();
    });

    it("403 on the TXT write: failed (exit 3, AZURE_FORBIDDEN at dns-challenge); requests{arm,403}=1; names the action and the role to assign", async () => {
      h.arm.deny({ action: "Microsoft.Network/dnszones/TXT/write" });
      const run = await renew("arm-403");
      await expectFailed(run, 3, "AZURE_FORBIDDEN", "dns-challenge");
      expect(await requests("arm", "403")).toBe(1);
      expect(resultOf(run).error!.message).toMatch(/the action Microsoft\.Network\/dnszones\/TXT\/write on .+ Assign it "DNS Zone Contributor" or the custom role in deploy\/azure\/amlcert-dns-role\.json on that scope/);
      expectPreviousServed();
    });

    it("412 ETag races on the TXT record set: read again and written, renewed (exit 0); requests{arm,412}=2; each race is logged", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 412, times: 2, code: "PreconditionFailed", message: "The Record set _acme-challenge.ml has been modified (etag mismatch)." });
      const run = await renew("arm-412", { log: { level: "debug" } });
      expectRenewed(run);
      expect(await requests("arm", "412")).toBe(2);
      expect(logMessages(run).filter((m) => m === "record set changed concurrently (412); reading it again")).toHaveLength(2);
    });

    it("412 on every TXT write: failed (exit 3, AZURE_CONFLICT at dns-challenge) after 8 rounds; requests{arm,412}=8", async () => {
      h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 412, times: Infinity });
      const run = await renew("arm-412-forever");
      await expectFailed(run, 3, "AZURE_CONFLICT", "dns-challenge");
      expect(await requests("arm", "412")).toBe(8);
      expect(resultOf(run).error!.message).toBe("gave up to add a TXT value to _acme-challenge.ml.contoso.test after 8 concurrent modifications (HTTP 412) of the record set");
      expectPreviousServed();
    });

    it("a hung ARM read: the try is given up after azure.requestTimeout and retried, renewed (exit 0); requests{arm,error}=1", async () => {
      const hung = h.arm.faults.add({ method: "GET", pathIncludes: "/TXT/", status: 0, hang: true, times: 1 });
      try {
        const run = await renew("arm-hung-once");
        expectRenewed(run);
        expect(hung.hits).toBe(1);
        expect(await requests("arm", "error")).toBe(1);
        expect(logMessages(run).some((m) => /^GET \/subscriptions\/.+\/TXT\/_acme-challenge\.ml: ARM did not answer within 5 s \(azure\.requestTimeout\); retrying in [\d.]+ m?s \(try 2 of 3\)$/.test(m))).toBe(true);
      } finally {
        hung.release();
      }
    });

    it("a hung extension PATCH: every try given up (exit 3, AZURE_ERROR at extension); requests{arm,error}=3; the request, the bound and the tries are named", async () => {
      const hung = h.arm.faults.add({ method: "PATCH", status: 0, hang: true, times: Infinity });
      try {
        const run = await renew("arm-hung-patch");
        await expectFailed(run, 3, "AZURE_ERROR", "extension");
        expect(hung.hits).toBe(3);
        expect(await requests("arm", "error")).toBe(3);
        expect(resultOf(run).error!.message).toMatch(
          /^could not update extension azureml: ARM did not answer PATCH \/subscriptions\/.+\/providers\/Microsoft\.KubernetesConfiguration\/extensions\/azureml within 5 s \(azure\.requestTimeout\), 3 tries$/,
        );
        expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
      } finally {
        hung.release();
      }
    });
  });

  describe("the Kubernetes API server", () => {
    it("409 on the slot's replace: failed (exit 3, KUBE_CONFLICT at store), not written again; requests{kubernetes,409}=1; the certificate in place is kept", async () => {
      const kube = h.clusters[0]!.kube;
      kube.faults.add({ method: "PUT", pathIncludes: "/secrets/aml-tls", status: 409, times: Infinity });
      kube.faults.add({ method: "POST", pathIncludes: "/secrets", status: 409, times: Infinity, reason: "AlreadyExists" });
      const mark = kube.requests.length;
      const run = await renew("kube-409");
      const sent = kube.requests.slice(mark);
      await expectFailed(run, 3, "KUBE_CONFLICT", "store");
      // the slot is replaced at the resourceVersion read: a 409 means another writer, so it is not written again
      expect(sent.filter((r) => r.status === 409).map((r) => `${r.method} ${r.name}`)).toEqual([`PUT ${SLOT_B}`]);
      expect(await requests("kubernetes", "409")).toBe(1);
      expect(resultOf(run).error!.message).toMatch(/^secret "aml-tls-b" in namespace "azureml" changed since amlcert read it \(resourceVersion \d+\); not overwriting another writer's change$/);
      expectPreviousServed();
    });

    it("403 on the slot's replace: failed (exit 3, KUBE_FORBIDDEN at store), not sent again; requests{kubernetes,403}=1; names the verb, the secret and the Role", async () => {
      const kube = h.clusters[0]!.kube;
      kube.faults.add({ method: "PUT", pathIncludes: "/secrets/aml-tls", status: 403, times: Infinity });
      kube.faults.add({ method: "POST", pathIncludes: "/secrets", status: 403, times: Infinity });
      const mark = kube.requests.length;
      const run = await renew("kube-403");
      const sent = kube.requests.slice(mark);
      await expectFailed(run, 3, "KUBE_FORBIDDEN", "store");
      // the write was refused once and not sent again; the metric counts every 403 the server sent
      expect(sent.filter((r) => r.status === 403).map((r) => `${r.method} ${r.name}`)).toEqual([`PUT ${SLOT_B}`]);
      expect(await requests("kubernetes", "403")).toBe(1);
      expect(resultOf(run).error!.message).toMatch(/^Kubernetes denied "(create|update)" on secrets "aml-tls[-a-z0-9]*" in namespace "azureml" .*\(403 Forbidden\)\. amlcert needs "(create|update)" on secrets there: grant it with Role "amlcert"/);
      expectPreviousServed();
    });

    it("429 (API priority and fairness) with a short Retry-After: waited out, renewed (exit 0); requests{kubernetes,429}=2; the retries are logged", async () => {
      h.clusters[0]!.kube.faults.add({ method: "GET", pathIncludes: "/services/azureml-fe", status: 429, times: 2, retryAfterSeconds: 1 });
      const run = await renew("kube-429-short");
      expectRenewed(run);
      expect(await requests("kubernetes", "429")).toBe(2);
      expect(logMessages(run).filter((m) => /^GET \/api\/v1\/namespaces\/azureml\/services\/azureml-fe: the API server answered 429 \(Retry-After 1 s\); retrying in 1 s \(try [23] of 3\)$/.test(m))).toHaveLength(2);
    });

    it("429 with a Retry-After beyond kubernetesApi.maxRetryAfter: failed at once (exit 3, KUBE_ERROR at preflight); requests{kubernetes,429}=1; the throttling is named", async () => {
      h.clusters[0]!.kube.faults.add({ method: "GET", pathIncludes: "/services/azureml-fe", status: 429, times: Infinity, retryAfterSeconds: 600 });
      const run = await renew("kube-429-long");
      await expectFailed(run, 3, "KUBE_ERROR", "preflight");
      expect(await requests("kubernetes", "429")).toBe(1);
      expect(resultOf(run).error!.message).toMatch(
        /is throttling requests \(429 TooManyRequests, API priority and fairness\) and retries did not get through when trying to get services "azureml-fe" in namespace "azureml"; it asked to retry after 600 s/,
      );
      expectPreviousServed();
    });

    it("a transient 500 on a read: retried, renewed (exit 0); requests{kubernetes,500}=1", async () => {
      h.clusters[0]!.kube.faults.add({ method: "GET", pathIncludes: "/services/azureml-fe", status: 500, times: 1 });
      const run = await renew("kube-500");
      expectRenewed(run);
      expect(await requests("kubernetes", "500")).toBe(1);
      expect(logMessages(run).some((m) => m.startsWith("GET /api/v1/namespaces/azureml/services/azureml-fe: the API server answered 500; retrying in"))).toBe(true);
    });

    it("a hung read: given up after kubernetesApi.requestTimeout and retried, renewed (exit 0); requests{kubernetes,error}=1", async () => {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const fault = h.clusters[0]!.kube.faults.add({ method: "GET", pathIncludes: "/services/azureml-fe", status: 0, times: 1, before: () => held });
      try {
        const run = await renew("kube-hung");
        expectRenewed(run);
        expect(fault.hits).toBe(1);
        expect(await requests("kubernetes", "error")).toBe(1);
        expect(
          logMessages(run).filter((m) => /^GET \/api\/v1\/namespaces\/azureml\/services\/azureml-fe: the API server did not answer within 5 s \(kubernetesApi\.requestTimeout\); retrying in [\d.]+ m?s \(try 2 of 3\)$/.test(m)),
        ).toHaveLength(1);
      } finally {
        release();
      }
    });
  });

  describe("the extension's long-running operation", () => {
    it("an operation that ends Failed: failed (exit 3, EXTENSION_LRO_FAILED at extension); ARM's error is named", async () => {
      h.arm.lro = { ...h.arm.lro, outcome: "Failed" };
      const run = await renew("lro-failed");
      await expectFailed(run, 3, "EXTENSION_LRO_FAILED", "extension");
      expect(resultOf(run).error!.message).toMatch(/^the update of extension azureml failed in Azure: ExtensionOperationFailed: /);
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
    });

    it("an operation that ends Canceled: failed (exit 3, EXTENSION_LRO_FAILED at extension); the status is named", async () => {
      h.arm.lro = { ...h.arm.lro, outcome: "Canceled" };
      const run = await renew("lro-canceled");
      await expectFailed(run, 3, "EXTENSION_LRO_FAILED", "extension");
      expect(resultOf(run).error!.message).toMatch(/^the update of extension azureml failed in Azure: Canceled/);
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
    });

    it("the extension rejects the new certificate (E40007): failed (exit 3, EXTENSION_LRO_FAILED at extension); the extension's health code is named, the old certificate stays served", async () => {
      h.arm.lro = { ...h.arm.lro, rejectSecrets: [SLOT_B] };
      const run = await renew("lro-e40007");
      await expectFailed(run, 3, "EXTENSION_LRO_FAILED", "extension");
      expect(resultOf(run).error!.message).toMatch(/E40007 INVALID_SSL_SETTING: the certificate in secret aml-tls-b was rejected by the extension's health check/);
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
      expect(h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret).toBe(SLOT_A);
    });

    it("an unchanged PATCH answered 200 with no operation, on an extension whose last operation failed: failed (exit 3, EXTENSION_LRO_FAILED at extension); ARM's no-op is named", async () => {
      await h.seedExtension({ sslSecret: SLOT_A, provisioningState: "Failed" });
      const armMark = h.arm.requests.length;
      const config = h.writeConfig({ ...BOUNDS, metrics: { pushgateway: gateway.url } }, "faults-unchanged-patch.yaml");
      // not forced: nothing is due, so the run only drives the failed extension again with the settings it has
      const run = await h.runCli(["renew", "--config", config], { timeoutMs: 150_000 });
      await expectFailed(run, 3, "EXTENSION_LRO_FAILED", "extension");
      expect(h.arm.requests.slice(armMark).filter((r) => r.method === "PATCH").map((r) => r.status)).toEqual([200]);
      expect(resultOf(run).error!.message).toMatch(/did not take effect: ARM made no change \(200: no update is done\) and the extension's last operation is Failed/);
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
    });

    it("an operation that never ends: given up after extension.lroTimeout (exit 3, EXTENSION_TIMEOUT at extension)", async () => {
      h.arm.lro = { ...h.arm.lro, pollsBeforeDone: 1_000_000 };
      const run = await renew("lro-never", { extension: { lroTimeout: "3s", pollInterval: "200ms" } });
      await expectFailed(run, 3, "EXTENSION_TIMEOUT", "extension");
      expect(resultOf(run).error!.message).toBe(
        "the update of extension azureml did not finish within 3 s (extension.lroTimeout); ARM may still complete it: check its provisioningState with az k8s-extension show",
      );
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
    });
  });

  describe("DNS and TLS", () => {
    it("the authoritative server answers SERVFAIL: failed (exit 3, DNS_PROPAGATION_TIMEOUT at propagation); the server is named with ESERVFAIL", async () => {
      h.dns.failNextQueries(1_000_000, "SERVFAIL");
      try {
        const run = await renew("dns-servfail", { dns: DNS_BOUNDS });
        await expectFailed(run, 3, "DNS_PROPAGATION_TIMEOUT", "propagation");
        expect(resultOf(run).error!.message).toContain(`${h.dns.address} (ESERVFAIL)`);
        expect(resultOf(run).error!.message).not.toContain("ETIMEOUT");
        expectPreviousServed();
      } finally {
        h.dns.failNextQueries(0);
      }
    });

    it("the authoritative server does not answer: failed (exit 3, DNS_PROPAGATION_TIMEOUT at propagation); the server is named with ETIMEOUT", async () => {
      h.dns.dropNextQueries(1_000_000);
      try {
        const run = await renew("dns-timeout", { dns: DNS_BOUNDS });
        await expectFailed(run, 3, "DNS_PROPAGATION_TIMEOUT", "propagation");
        expect(resultOf(run).error!.message).toContain(`${h.dns.address} (ETIMEOUT)`);
        expect(resultOf(run).error!.message).not.toContain("ESERVFAIL");
        expect(run.stderr).toContain("no answer (timed out after 1 try of 500 ms; dns.queryTimeout, dns.queryTries)");
        expectPreviousServed();
      } finally {
        h.dns.dropNextQueries(0);
      }
    });

    it("azureml-fe keeps serving the old certificate: verification failed (exit 4, TLS_OLD_CERT_SERVED at verify-tls); the new one stays stored", async () => {
      h.clusters[0]!.fe.freeze();
      const run = await renew("tls-old", { verify: { timeout: "2s" } });
      await expectFailed(run, 4, "TLS_OLD_CERT_SERVED", "verify-tls");
      expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
      expect(run.stderr).toMatch(/scoringFe\.sslCert/);
    });
  });
});
