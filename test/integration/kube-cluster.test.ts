/**
 * amlcert's Kubernetes adapter (KubeCluster and the Lease lock) against the API server stand-in, authenticated as
 * the amlcert ServiceAccount, so every call is authorized by the Role shipped in test/fixtures/rbac-adapters.yaml: if the adapter
 * needed a permission the Role lacks, these tests would fail with 403.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiException, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { Clock, KubeCluster } from "../../src/ports.js";
import { createKubeCluster, type KubeLogger, type KubeSource } from "../../src/kubernetes/kube-cluster.js";
import { createLeaseLock } from "../../src/kubernetes/lease-lock.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { amlcertFailure } from "../support/assertions.js";
import { captureLogger } from "../support/capture-logger.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NS = "azureml";


function manualClock(start = new Date("2030-01-01T00:00:00Z")): Clock & { advance(ms: number): void } {
  let t = start.getTime();
  return {
    now: () => new Date(t),
    sleep: async (ms) => {
      t += ms;
    },
    advance(ms) {
      t += ms;
    },
  };
}


describe("Kubernetes adapter against the API server stand-in, as the amlcert ServiceAccount", () => {
  let dir: string;
  let pki: TestPki;
  let kube: KubeServer;
  let saSource: KubeSource;
  let adminSource: KubeSource;
  let log: ReturnType<typeof captureLogger>;
  let cluster: KubeCluster;

  const makeCluster = (source = saSource, extra: Partial<Parameters<typeof createKubeCluster>[0]> = {}) =>
    createKubeCluster({ source, namespace: NS, logger: log, clock: manualClock(), ...extra });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-kube-cluster-"));
    pki = createTestPki(join(dir, "pki"));
    kube = await startKubeServer({ pki, rbacFile: join(ROOT, "test/fixtures/rbac-adapters.yaml") });
    const saConfig = kube.writeKubeconfig(join(dir, "sa.kubeconfig"), { token: kube.saToken, contexts: ["aks-westeurope", "aks-northeurope"] });
    saSource = { kind: "kubeconfig", path: saConfig, context: "aks-northeurope" };
    adminSource = { kind: "kubeconfig", path: kube.writeKubeconfig(join(dir, "admin.kubeconfig"), { token: kube.adminToken }) };
  });

  afterAll(async () => {
    await kube?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    log = captureLogger();
    cluster = makeCluster();
  });

  afterEach(() => kube.faults.clear());

  /** saSource with retry settings whose waits are recorded instead of slept (jitter draws 0.5) */
  const retrying = (o: Partial<NonNullable<KubeSource["retry"]>> = {}) => {
    const waits: number[] = [];
    const source: KubeSource = { ...saSource, retry: { retryDelayMs: 10, maxRetryDelayMs: 40, ...o, sleep: async (ms) => void waits.push(ms), random: () => 0.5 } };
    return { source, waits };
  };

  const write = (name: string, cert = "CHAIN", labels: Record<string, string> = { "app.kubernetes.io/managed-by": "amlcert" }) =>
    cluster.writeSecret({
      name,
      data: { "cert.pem": Buffer.from(cert), "key.pem": Buffer.from(`KEY-${cert}`) },
      labels,
      annotations: { "amlcert.io/fqdn": "ml.contoso.com" },
    });

  it("when the secret does not exist, writeSecret creates an Opaque secret with cert.pem and key.pem", async () => {
    const stored = await write("tls-new");
    expect(stored).toMatchObject({ name: "tls-new", type: "Opaque", labels: { "app.kubernetes.io/managed-by": "amlcert" } });
    expect(stored.resourceVersion).toMatch(/^\d+$/);
    expect(stored.data["cert.pem"]!.toString()).toBe("CHAIN");
    expect(kube.getSecret(NS, "tls-new")).toEqual({ "cert.pem": "CHAIN", "key.pem": "KEY-CHAIN" });
    expect(kube.getSecretObject(NS, "tls-new")).toMatchObject({ type: "Opaque", metadata: { annotations: { "amlcert.io/fqdn": "ml.contoso.com" } } });
    const read = await cluster.getSecret("tls-new");
    expect(read?.data["key.pem"]!.toString()).toBe("KEY-CHAIN");
    expect(read?.creationTimestamp).toMatch(/^\d{4}-/);
    expect(await cluster.getSecret("tls-absent")).toBeUndefined();
  });

  it("when the secret exists, writeSecret replaces it with the resourceVersion it read and keeps others' labels", async () => {
    kube.putSecret(NS, "tls-existing", { "cert.pem": "OLD", "key.pem": "OLD" }, { labels: { team: "ml" }, annotations: { note: "keep" } });
    const before = kube.getSecretObject(NS, "tls-existing")!.metadata.resourceVersion;
    const stored = await write("tls-existing", "NEW");
    expect(stored.resourceVersion).not.toBe(before);
    expect(kube.getSecret(NS, "tls-existing")).toEqual({ "cert.pem": "NEW", "key.pem": "KEY-NEW" });
    expect(stored.labels).toEqual({ team: "ml", "app.kubernetes.io/managed-by": "amlcert" });
    expect(stored.annotations).toMatchObject({ note: "keep", "amlcert.io/fqdn": "ml.contoso.com" });
    const put = kube.requests.filter((q) => q.method === "PUT" && q.name === "tls-existing");
    expect(put.map((q) => q.status)).toEqual([200]);
  });

  it("with an expected resourceVersion, a secret changed since then is not overwritten: KUBE_CONFLICT at once, no PUT", async () => {
    kube.putSecret(NS, "tls-fixed", { "cert.pem": "PLANNED", "key.pem": "PLANNED" });
    const planned = kube.getSecretObject(NS, "tls-fixed")!.metadata.resourceVersion;
    kube.putSecret(NS, "tls-fixed", { "cert.pem": "SOMEONE-ELSE", "key.pem": "SOMEONE-ELSE" });
    const err = await amlcertFailure(
      cluster.writeSecret({ name: "tls-fixed", data: { "cert.pem": Buffer.from("NEW") }, labels: {}, annotations: {}, expectedResourceVersion: planned }),
    );
    expect(err).toMatchObject({ code: "KUBE_CONFLICT", stage: "store" });
    expect(err.message).toMatch(/changed since amlcert read it/);
    expect(kube.getSecret(NS, "tls-fixed")!["cert.pem"]).toBe("SOMEONE-ELSE");
    expect(kube.requests.filter((q) => q.method === "PUT" && q.name === "tls-fixed")).toEqual([]);
  });

  it("with replaceMetadata, labels and annotations are restored exactly instead of merged", async () => {
    kube.putSecret(NS, "tls-restore", { "cert.pem": "NEW" }, { labels: { a: "1" }, annotations: { "amlcert.io/serial": "NEW" } });
    const stored = await cluster.writeSecret({ name: "tls-restore", data: { "cert.pem": Buffer.from("OLD") }, labels: { team: "ml" }, annotations: {}, replaceMetadata: true });
    expect(stored.labels).toEqual({ team: "ml" });
    expect(stored.annotations).toEqual({});
  });

  it("when one replace hits 409 Conflict, writeSecret reads the secret again and the retry succeeds", async () => {
    kube.putSecret(NS, "tls-raced", { "cert.pem": "OLD" });
    const fault = kube.faults.add({ method: "PUT", pathIncludes: "/secrets/tls-raced", status: 409 });
    const stored = await write("tls-raced", "WON");
    expect(fault.hits).toBe(1);
    expect(stored.data["cert.pem"]!.toString()).toBe("WON");
    const calls = kube.requests.filter((q) => q.name === "tls-raced").map((q) => `${q.verb} ${q.status}`);
    expect(calls).toEqual(["get 200", "update 409", "get 200", "update 200"]);
    expect(log.lines.some((l) => l.level === "debug" && l.obj.reason === "Conflict")).toBe(true);
  });

  it("when another writer changes the secret between amlcert's read and replace, the stale PUT gets 409 and is retried", async () => {
    kube.putSecret(NS, "tls-contended", { "cert.pem": "OLD" });
    const rival = kube.faults.add({
      method: "PUT",
      pathIncludes: "/secrets/tls-contended",
      status: 0,
      before: () => void kube.putSecret(NS, "tls-contended", { "cert.pem": "THEIRS" }),
    });
    const stored = await write("tls-contended", "OURS");
    expect(rival.hits).toBe(1);
    expect(stored.data["cert.pem"]!.toString()).toBe("OURS");
    const calls = kube.requests.filter((q) => q.name === "tls-contended").map((q) => `${q.verb} ${q.status}`);
    expect(calls).toEqual(["get 200", "update 409", "get 200", "update 200"]);
  });

  it("when every replace ends in 409, writeSecret gives up after the retry bound with KUBE_CONFLICT naming the secret", async () => {
    kube.putSecret(NS, "tls-stuck", { "cert.pem": "OLD" });
    kube.faults.add({ method: "PUT", pathIncludes: "/secrets/tls-stuck", status: 409, times: Infinity });
    const err = await amlcertFailure(makeCluster(saSource, { conflictRetries: 2 }).writeSecret({ name: "tls-stuck", data: { "cert.pem": Buffer.from("x") }, labels: {}, annotations: {} }));
    expect(err.code).toBe("KUBE_CONFLICT");
    expect(err.stage).toBe("store");
    expect(err.message).toContain('secret "tls-stuck"');
    expect(err.message).toContain("3 attempts");
    expect(err.details).toMatchObject({ secret: "tls-stuck", attempts: 3 });
    expect(kube.requests.filter((q) => q.method === "PUT" && q.name === "tls-stuck")).toHaveLength(3);
    expect(kube.getSecret(NS, "tls-stuck")).toEqual({ "cert.pem": "OLD" });
  });

  it("when a create races with another creator (409 AlreadyExists), writeSecret reads the winner and replaces it", async () => {
    kube.faults.add({
      method: "POST",
      pathIncludes: "/namespaces/azureml/secrets",
      status: 0,
      before: () => void kube.putSecret(NS, "tls-twin", { "cert.pem": "THEIRS" }, { labels: { owner: "rival" } }),
    });
    const stored = await write("tls-twin", "MINE");
    expect(stored.data["cert.pem"]!.toString()).toBe("MINE");
    expect(stored.labels).toMatchObject({ owner: "rival", "app.kubernetes.io/managed-by": "amlcert" });
    const calls = kube.requests.filter((q) => q.name === "tls-twin" || (q.method === "POST" && q.resource === "secrets")).map((q) => `${q.verb} ${q.status}`);
    expect(calls.slice(-4)).toEqual(["get 404", "create 409", "get 200", "update 200"]);
  });

  it("when the Role does not allow a call, the error is KUBE_FORBIDDEN and names the verb, the namespace and the Role", async () => {
    const other = makeCluster(saSource, { namespace: "kube-system" });
    const err = await amlcertFailure(other.writeSecret({ name: "x", data: {}, labels: {}, annotations: {} }));
    expect(err.code).toBe("KUBE_FORBIDDEN");
    expect(err.message).toContain('"get" on secrets "x"');
    expect(err.message).toContain('namespace "kube-system"');
    expect(err.message).toContain('Role "amlcert" in namespace "kube-system" (deploy/base/rbac.yaml)');
    expect(err.message).toContain('User "system:serviceaccount:azureml:amlcert" cannot get resource "secrets"');
    const svc = await amlcertFailure(cluster.getServiceIngress("some-other-service"));
    expect(svc.code).toBe("KUBE_FORBIDDEN");
    expect(svc.message).toContain('"get" on services "some-other-service"');
  });

  it("when a secret is missing and the Role may not create it (403), the error names the secret and says to apply the manifests in deploy/", async () => {
    const fault = kube.faults.add({ method: "POST", pathIncludes: "/namespaces/azureml/secrets", status: 403 });
    try {
      const err = await amlcertFailure(cluster.writeSecret({ name: "tls-slot-a", data: { "cert.pem": Buffer.from("c") }, labels: {}, annotations: {}, expectedResourceVersion: "" }));
      expect(err).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "store" });
      expect(err.message).toMatch(/^secret "tls-slot-a" does not exist in namespace "azureml" and amlcert may not create it \(403 Forbidden\): apply the manifests in deploy\//);
      expect(err.details).toMatchObject({ secret: "tls-slot-a", namespace: NS, verb: "create" });
    } finally {
      fault.remove();
    }
  });

  it("when the namespace does not exist, creating the secret fails with KUBE_NOT_FOUND naming the namespace", async () => {
    const err = await amlcertFailure(makeCluster(adminSource, { namespace: "no-azureml-here" }).writeSecret({ name: "x", data: {}, labels: {}, annotations: {} }));
    expect(err.code).toBe("KUBE_NOT_FOUND");
    expect(err.message).toContain('namespace "no-azureml-here" does not exist');
  });

  it("when secrets are listed by label, only amlcert's versions come back, and deleting removes them", async () => {
    await write("web-v1", "1", { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": "web" });
    await write("web-v2", "2", { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": "web" });
    await write("api-v1", "3", { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": "api" });
    kube.putSecret(NS, "web-manual", { a: "b" }, { labels: { "amlcert.io/secret-base": "web" } });
    const listed = await cluster.listSecrets("app.kubernetes.io/managed-by=amlcert,amlcert.io/secret-base=web");
    expect(listed.map((s) => s.name).sort()).toEqual(["web-v1", "web-v2"]);
    expect(listed.find((s) => s.name === "web-v2")!.data["cert.pem"]!.toString()).toBe("2");
    await cluster.deleteSecret("web-v1");
    expect(kube.getSecret(NS, "web-v1")).toBeUndefined();
    await cluster.deleteSecret("web-v1"); // already gone: not an error
    expect((await cluster.listSecrets("amlcert.io/secret-base=web")).map((s) => s.name).sort()).toEqual(["web-manual", "web-v2"]);
  });

  it("when there are more secrets than one page, listSecrets follows the continue token", async () => {
    for (let i = 0; i < 105; i++) kube.putSecret(NS, `page-${String(i).padStart(3, "0")}`, { a: "b" }, { labels: { paged: "yes" } });
    const listed = await cluster.listSecrets("paged=yes");
    expect(listed).toHaveLength(105);
    expect(kube.requests.filter((q) => q.verb === "list" && q.path.includes("paged")).length).toBe(2);
  });

  it("when azureml-fe has a load balancer, getServiceIngress returns its IPs, type and cluster IP; undefined once it is gone", async () => {
    kube.putService(NS, { name: "azureml-fe", ingress: [{ ip: "20.1.2.3" }, { hostname: "fe.example.net" }] });
    const ingress = await cluster.getServiceIngress("azureml-fe");
    expect(ingress).toMatchObject({ type: "LoadBalancer", ips: ["20.1.2.3"], hostnames: ["fe.example.net"] });
    expect(ingress?.clusterIP).toMatch(/^10\./);
    kube.deleteObject("v1", "Service", NS, "azureml-fe");
    expect(await cluster.getServiceIngress("azureml-fe")).toBeUndefined();
    kube.putService(NS, { name: "azureml-fe", ingress: [{ ip: "127.0.0.1" }] });
  });

  it("when an event is recorded, a core/v1 Event about the secret appears, with the secret's uid", async () => {
    await write("tls-evented", "E");
    await cluster.recordEvent({ secretName: "tls-evented", type: "Normal", reason: "CertificateRenewed", message: "renewed ml.contoso.com" });
    await cluster.recordEvent({ secretName: "tls-evented", type: "Warning", reason: "VerifyFailed", message: "old certificate still served" });
    const events = kube.listEvents(NS).filter((e) => (e.involvedObject as { name: string }).name === "tls-evented");
    expect(events).toHaveLength(2);
    const uid = kube.getSecretObject(NS, "tls-evented")!.metadata.uid;
    expect(events[0]).toMatchObject({
      involvedObject: { kind: "Secret", apiVersion: "v1", namespace: NS, name: "tls-evented", uid },
      source: { component: "amlcert" },
      reportingComponent: "amlcert",
      count: 1,
    });
    expect(events.map((e) => `${e.type} ${e.reason}`).sort()).toEqual(["Normal CertificateRenewed", "Warning VerifyFailed"]);
    expect(kube.requests.filter((q) => q.resource === "events").every((q) => q.path.startsWith("/api/v1/"))).toBe(true);
  });

  it("when recording an event fails, recordEvent logs a warning and does not throw", async () => {
    kube.faults.add({ method: "POST", pathIncludes: "/events", status: 500 });
    await expect(cluster.recordEvent({ secretName: "tls-x", type: "Normal", reason: "R", message: "m" })).resolves.toBeUndefined();
    const warn = log.lines.find((l) => l.level === "warn");
    expect(warn?.msg).toContain("could not record Kubernetes event");
    expect(warn?.obj.code).toBe("KUBE_ERROR");
  });

  it("when the server keeps failing with 500, the error is KUBE_ERROR with the status and the server's message", async () => {
    const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/tls-new", status: 500, times: Infinity });
    const err = await amlcertFailure(makeCluster(retrying({ maxRetries: 2 }).source).getSecret("tls-new"));
    expect(err.code).toBe("KUBE_ERROR");
    expect(err.details.status).toBe(500);
    expect(err.message).toContain("Internal error occurred: injected fault");
    expect(fault.hits).toBe(3);
  });

  it("when the server does not answer in time, the request is abandoned with KUBE_ERROR", async () => {
    kube.faults.add({ method: "GET", pathIncludes: "/secrets/slow", status: 0, delayMs: 2_000, times: Infinity });
    const err = await amlcertFailure(makeCluster(retrying({ maxRetries: 0 }).source, { requestTimeoutMs: 200 }).getSecret("slow"));
    expect(err.code).toBe("KUBE_ERROR");
    expect(err.message).toContain("did not answer in time");
  });

  describe("retries and bounds: 429 under API priority and fairness, 5xx on reads, a hung request (issue 7)", () => {
    let gate: { release: () => void; held: Promise<void> } | undefined;
    const hold = () => {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      gate = { release, held };
      return () => held;
    };
    afterEach(() => gate?.release());

    it("when the API server answers 429 with Retry-After, the read waits that long and is retried, for any verb", async () => {
      const { source, waits } = retrying();
      const c = makeCluster(source);
      await write("apf", "1");
      const get = kube.faults.add({ method: "GET", pathIncludes: "/secrets/apf", status: 429, times: 2, retryAfterSeconds: 3 });
      const put = kube.faults.add({ method: "PUT", pathIncludes: "/secrets/apf", status: 429, times: 1, retryAfterSeconds: 2 });
      const stored = await c.writeSecret({ name: "apf", data: { "cert.pem": Buffer.from("2"), "key.pem": Buffer.from("KEY-2") }, labels: {}, annotations: {} });
      expect(stored.data["cert.pem"]!.toString()).toBe("2");
      expect([get.hits, put.hits]).toEqual([2, 1]);
      expect(waits).toEqual([3000, 3000, 2000]);
    });

    it("when 429 comes without Retry-After, the waits are exponential with full jitter up to the ceiling", async () => {
      const { source, waits } = retrying({ maxRetries: 4, retryDelayMs: 100, maxRetryDelayMs: 300 });
      const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/apf-absent", status: 429, times: 4, retryAfterSeconds: 0 });
      expect(await makeCluster(source).getSecret("apf-absent")).toBeUndefined();
      expect(fault.hits).toBe(4);
      expect(waits).toEqual([50, 100, 150, 150]);
    });

    it("every retry is told to onRetry before its wait: what the server did, the request, the wait and the try", async () => {
      const notices: unknown[] = [];
      const { source } = retrying({ maxRetries: 3, timeoutMs: 1000, onRetry: (n) => notices.push(n) });
      kube.faults.add({ method: "GET", pathIncludes: "/secrets/told", status: 429, times: 1, retryAfterSeconds: 2 });
      kube.faults.add({ method: "GET", pathIncludes: "/secrets/told", status: 0, times: 1, before: hold() });
      expect(await makeCluster(source).getSecret("told")).toBeUndefined();
      const path = "/api/v1/namespaces/azureml/secrets/told";
      expect(notices).toEqual([
        { message: `GET ${path}: the API server answered 429 (Retry-After 2 s); retrying in 2 s (try 2 of 4)`, method: "GET", path, attempt: 1, attempts: 4, waitMs: 2000, status: 429 },
        { message: `GET ${path}: the API server did not answer within 1 s (kubernetesApi.requestTimeout); retrying in 0.01 s (try 3 of 4)`, method: "GET", path, attempt: 2, attempts: 4, waitMs: 10, error: "timeout" },
      ]);
    });

    it("when the Retry-After is longer than kubernetesApi.maxRetryAfter, the call fails at once naming the throttling and the wait", async () => {
      const { source, waits } = retrying({ maxRetryAfterMs: 30_000 });
      const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/apf", status: 429, times: Infinity, retryAfterSeconds: 120 });
      const err = await amlcertFailure(makeCluster(source).getSecret("apf"));
      expect(err.code).toBe("KUBE_ERROR");
      expect(err.message).toBe(
        `the Kubernetes API server at ${kube.url} is throttling requests (429 TooManyRequests, API priority and fairness) and retries did not get through when trying to get secrets "apf" in namespace "azureml"; it asked to retry after 120 s (amlcert waits at most kubernetesApi.maxRetryAfter). Server said: Too many requests, please try again later.`,
      );
      expect(err.details).toMatchObject({ status: 429, throttled: true, retryAfterSeconds: 120, verb: "get", resource: "secrets", name: "apf" });
      expect(fault.hits).toBe(1);
      expect(waits).toEqual([]);
    });

    it("when a read fails with 500 once, it is retried and succeeds; a write that fails with 500 is not sent again", async () => {
      const { source } = retrying();
      const c = makeCluster(source);
      const get = kube.faults.add({ method: "GET", pathIncludes: "/secrets/five", status: 500, times: 1 });
      expect(await c.getSecret("five")).toBeUndefined();
      expect(get.hits).toBe(1);
      const post = kube.faults.add({ method: "POST", pathIncludes: "/secrets", status: 500, times: 1 });
      const postsBefore = kube.requests.filter((r) => r.method === "POST" && r.path.includes("/secrets")).length;
      const err = await amlcertFailure(c.writeSecret({ name: "five", data: {}, labels: {}, annotations: {} }));
      expect(err.code).toBe("KUBE_ERROR");
      expect(err.details).toMatchObject({ status: 500, verb: "create", resource: "secrets", name: "five" });
      expect(post.hits).toBe(1);
      expect(kube.requests.filter((r) => r.method === "POST" && r.path.includes("/secrets")).length).toBe(postsBefore + 1);
    });

    it("when a read hangs, each try is abandoned after kubernetesApi.requestTimeout, and the error says how long and how often", async () => {
      const { source } = retrying({ maxRetries: 1, timeoutMs: 1000 });
      const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/hung", status: 0, times: Infinity, before: hold() });
      const err = await amlcertFailure(makeCluster(source).getSecret("hung"));
      expect(err.code).toBe("KUBE_ERROR");
      expect(err.message).toBe(
        `the Kubernetes API server at ${kube.url} did not answer in time when trying to get secrets "hung" in namespace "azureml": no answer within 1 s (kubernetesApi.requestTimeout), 2 tries.`,
      );
      expect(err.details).toMatchObject({ timeout: true, timeoutSeconds: 1, attempts: 2, verb: "get", name: "hung" });
      expect(fault.hits).toBe(2);
    });

    it("when a read hangs once, the retry gets the answer", async () => {
      const { source } = retrying({ timeoutMs: 1000 });
      await write("late", "1");
      const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/late", status: 0, times: 1, before: hold() });
      expect((await makeCluster(source).getSecret("late"))?.data["cert.pem"]?.toString()).toBe("1");
      expect(fault.hits).toBe(1);
    });

    it("when a write hangs, it is abandoned after the timeout and not sent again (it may have been applied)", async () => {
      const { source } = retrying({ timeoutMs: 1000 });
      const fault = kube.faults.add({ method: "POST", pathIncludes: "/secrets", status: 0, times: Infinity, before: hold() });
      const err = await amlcertFailure(makeCluster(source).writeSecret({ name: "hung-write", data: {}, labels: {}, annotations: {} }));
      expect(err.code).toBe("KUBE_ERROR");
      expect(err.message).toContain('did not answer in time when trying to create secrets "hung-write"');
      expect(fault.hits).toBe(1);
    });

    it("when RBAC forbids a call, the 403 names the verb, the resource and the object, and is not retried", async () => {
      const fault = kube.faults.add({ method: "PUT", pathIncludes: "/secrets/denied", status: 403, times: Infinity });
      const { source } = retrying();
      const c = makeCluster(source);
      await write("denied", "1");
      const err = await amlcertFailure(c.writeSecret({ name: "denied", data: { "cert.pem": Buffer.from("2") }, labels: {}, annotations: {} }));
      expect(err.code).toBe("KUBE_FORBIDDEN");
      expect(err.message).toContain('Kubernetes denied "update" on secrets "denied" in namespace "azureml"');
      expect(err.message).toContain('amlcert needs "update" on secrets there');
      expect(fault.hits).toBe(1);
    });

    it("when a replace keeps getting 409, it stays KUBE_CONFLICT (the 409 is the adapter's to handle, not the retry's)", async () => {
      const { source, waits } = retrying();
      const c = makeCluster(source, { conflictRetries: 1 });
      await write("raced", "1");
      const fault = kube.faults.add({ method: "PUT", pathIncludes: "/secrets/raced", status: 409, times: Infinity });
      const err = await amlcertFailure(c.writeSecret({ name: "raced", data: { "cert.pem": Buffer.from("2") }, labels: {}, annotations: {} }));
      expect(err.code).toBe("KUBE_CONFLICT");
      expect(fault.hits).toBe(2);
      expect(waits).toEqual([]);
    });
  });

  it("when the token is not accepted, the error says the credentials were refused (401)", async () => {
    const bogus: KubeSource = { kind: "kubeconfig", path: kube.writeKubeconfig(join(dir, "bogus.kubeconfig"), { token: "expired-token" }) };
    const err = await amlcertFailure(makeCluster(bogus).getSecret("tls-new"));
    expect(err.code).toBe("KUBE_FORBIDDEN");
    expect(err.details.status).toBe(401);
    expect(err.message).not.toContain("expired-token");
  });

  it("when the kubeconfig's CA does not match the server, TLS verification fails instead of being skipped", async () => {
    const otherPki = createTestPki(join(dir, "other-pki"));
    const path = join(dir, "wrong-ca.kubeconfig");
    kube.writeKubeconfig(path, { token: kube.saToken });
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const wrong = kc.exportConfig().replace(Buffer.from(pki.caPem).toString("base64"), Buffer.from(otherPki.caPem).toString("base64"));
    writeFileSync(path, wrong);
    const err = await amlcertFailure(makeCluster({ kind: "kubeconfig", path }).getSecret("tls-new"));
    expect(err.code).toBe("KUBE_ERROR");
    expect(err.message).toContain("TLS verification");
  });

  it("when the kubeconfig has no such context, the error is CONFIG_INVALID and lists the contexts", async () => {
    const err = await amlcertFailure(makeCluster({ kind: "kubeconfig", path: join(dir, "sa.kubeconfig"), context: "aks-nowhere" }).getSecret("x"));
    expect(err.code).toBe("CONFIG_INVALID");
    expect(err.message).toContain('no context "aks-nowhere" (contexts: aks-westeurope, aks-northeurope)');
  });

  it("when running in-cluster, the mounted ServiceAccount token and CA are used", async () => {
    const mount = join(dir, "serviceaccount");
    mkdirSync(mount, { recursive: true });
    writeFileSync(join(mount, "token"), kube.saToken);
    writeFileSync(join(mount, "ca.crt"), pki.caPem);
    writeFileSync(join(mount, "namespace"), NS);
    const inCluster = makeCluster({ kind: "in-cluster", serviceAccountDir: mount, server: kube.url });
    expect(await inCluster.getServiceIngress("azureml-fe")).toMatchObject({ ips: ["127.0.0.1"] });
    expect(kube.requests[kube.requests.length - 1]!.user).toBe("system:serviceaccount:azureml:amlcert");
  });

  describe("Lease lock", () => {
    const lock = (clock: Clock, name = "amlcert") => createLeaseLock({ source: saSource, namespace: NS, name, logger: log, clock });

    it("when nobody holds the lease, acquire creates it; a second holder is refused until the lease expires, then takes over", async () => {
      const clock = manualClock(new Date());
      const a = lock(clock);
      const b = lock(clock);
      expect(await a.acquire("run-a", 60)).toBe(true);
      const lease = kube.store.peek("leases", NS, "amlcert")!;
      expect(lease.spec).toMatchObject({ holderIdentity: "run-a", leaseDurationSeconds: 60, leaseTransitions: 0 });
      expect(String((lease.spec as { renewTime: string }).renewTime)).toMatch(/\.\d{6}Z$/);
      expect(await b.acquire("run-b", 60)).toBe(false);
      expect(await a.acquire("run-a", 60)).toBe(true); // renewing one's own lease
      clock.advance(61_000);
      expect(await b.acquire("run-b", 60)).toBe(true);
      expect(kube.store.peek("leases", NS, "amlcert")!.spec).toMatchObject({ holderIdentity: "run-b", leaseTransitions: 1 });
      await a.release(); // a lost the lease: its release must not free b's
      expect(kube.store.peek("leases", NS, "amlcert")!.spec).toMatchObject({ holderIdentity: "run-b" });
      await b.release();
      expect((kube.store.peek("leases", NS, "amlcert")!.spec as { holderIdentity?: string }).holderIdentity).toBeUndefined();
      expect(await a.acquire("run-a", 60)).toBe(true);
      await a.release();
    });

    it("when two runs race for a fresh lease, exactly one wins", async () => {
      kube.deleteObject("coordination.k8s.io/v1", "Lease", NS, "amlcert");
      const clock = manualClock(new Date());
      const results = await Promise.all([lock(clock).acquire("run-1", 30), lock(clock).acquire("run-2", 30)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      const holder = (kube.store.peek("leases", NS, "amlcert")!.spec as { holderIdentity: string }).holderIdentity;
      expect(holder).toBe(results[0] ? "run-1" : "run-2");
    });

    it("when two runs race to take over an expired lease, the resourceVersion lets only one through", async () => {
      kube.deleteObject("coordination.k8s.io/v1", "Lease", NS, "amlcert");
      const clock = manualClock(new Date());
      expect(await lock(clock).acquire("old", 10)).toBe(true);
      clock.advance(11_000);
      const origin = kube.requests.length;
      const results = await Promise.all([lock(clock).acquire("new-1", 30), lock(clock).acquire("new-2", 30)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(kube.requests.slice(origin).some((q) => q.resource === "leases" && q.verb === "update" && q.status === 409)).toBe(true);
    });

    it("when the lease has another name than the Role allows, RBAC refuses it with KUBE_FORBIDDEN", async () => {
      const err = await amlcertFailure(lock(manualClock(), "someone-elses-lease").acquire("me", 30));
      expect(err.code).toBe("KUBE_FORBIDDEN");
      expect(err.message).toContain('leases.coordination.k8s.io "someone-elses-lease"');
    });
  });

  describe("the shipped Role is least privilege", () => {
    let core: CoreV1Api;
    const status = (p: Promise<unknown>) => p.then(() => 200, (e: unknown) => (e instanceof ApiException ? (e as ApiException<unknown>).code : -1));

    beforeAll(() => {
      const kc = new KubeConfig();
      kc.loadFromFile(join(dir, "sa.kubeconfig"));
      core = kc.makeApiClient(CoreV1Api);
    });

    it("when the ServiceAccount reaches beyond what amlcert does, every such call is refused with 403", async () => {
      kube.putSecret("default", "neighbour", { password: "hunter2" });
      kube.putSecret(NS, "tls-guarded", { a: "b" });
      expect(await status(core.listNamespacedConfigMap({ namespace: NS }))).toBe(403);
      expect(await status(core.readNamespacedSecret({ name: "neighbour", namespace: "default" }))).toBe(403);
      expect(await status(core.listSecretForAllNamespaces())).toBe(403);
      expect(await status(core.patchNamespacedSecret({ name: "tls-guarded", namespace: NS, body: { metadata: { labels: { x: "y" } } } }))).toBe(403);
      expect(await status(core.listNamespacedSecret({ namespace: NS, watch: true, timeoutSeconds: 1 }))).toBe(403);
      expect(await status(core.listNamespacedService({ namespace: NS }))).toBe(403);
      expect(await status(core.listNamespacedEvent({ namespace: NS }))).toBe(403);
      expect(await status(core.listNamespacedPod({ namespace: NS }))).toBe(403);
      expect(await status(core.readNamespace({ name: NS }))).toBe(403);
      expect(kube.getSecret(NS, "tls-guarded")).toEqual({ a: "b" });
    });

    it("when the Role file is read, it is namespaced, has no wildcard and grants exactly the verbs amlcert's calls need", async () => {
      const role = kube.store.peek("roles", NS, "amlcert")!;
      const rules = role.rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
      expect(JSON.stringify(rules)).not.toContain("*");
      const grants = rules.flatMap((r) => r.verbs.map((v) => `${r.apiGroups[0] || "core"}/${r.resources[0]}:${v}${r.resourceNames ? `(${r.resourceNames.join(",")})` : ""}`)).sort();
      expect(grants).toEqual([
        "coordination.k8s.io/leases:create",
        "coordination.k8s.io/leases:get(amlcert)",
        "coordination.k8s.io/leases:update(amlcert)",
        "core/configmaps:create",
        "core/configmaps:get(amlcert-history)",
        "core/configmaps:update(amlcert-history)",
        "core/events:create",
        "core/secrets:create",
        "core/secrets:delete",
        "core/secrets:get",
        "core/secrets:list",
        "core/secrets:update",
        "core/services:get(azureml-fe)",
      ]);
      expect(kube.store.all("clusterrolebindings").some((b) => JSON.stringify(b.subjects).includes("amlcert"))).toBe(false);
    });
  });
});
