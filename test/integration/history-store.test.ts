/**
 * The durable history in its ConfigMap, against the Kubernetes API server stand-in, authenticated as the amlcert
 * ServiceAccount: every call is authorized by the Role shipped in test/fixtures/rbac-adapters.yaml (get/update on amlcert-history,
 * create on configmaps), so a call the Role does not allow fails here with 403.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiException, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { TargetHistory } from "../../src/history/history.js";
import { nextHistory } from "../../src/history/record.js";
import { createHistoryStore, historyKey } from "../../src/kubernetes/history-store.js";
import { createLeaseLock } from "../../src/kubernetes/lease-lock.js";
import { createRunLock, deadOnThisHost } from "../../src/app/run-lock.js";
import type { KubeLogger, KubeSource } from "../../src/kubernetes/kube-client.js";
import type { Clock } from "../../src/ports.js";
import type { TargetOutcome } from "../../src/renewal/events.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { createTestPki } from "../servers/pki.js";
import { amlcertFailure } from "../support/assertions.js";
import { captureLogger } from "../support/capture-logger.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NS = "azureml";
const CM = "amlcert-history";
const A = "ml.contoso.test";
const B = "api.contoso.test";


/** sleeps return at once (the retry pauses are not what is tested) and are counted */
function countingClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return { sleeps, now: () => new Date("2030-01-01T00:00:00Z"), sleep: async (ms) => void sleeps.push(ms) };
}

const outcome = (fqdn: string, o: Partial<TargetOutcome> & Pick<TargetOutcome, "action">): TargetOutcome => ({
  fqdn,
  reason: "UpToDate",
  extensionUpdated: false,
  dnsOk: true,
  servingOk: true,
  durationMs: 10,
  ...o,
});
const t0 = new Date("2030-01-01T00:00:00.000Z");
const t1 = new Date("2030-01-02T00:00:00.000Z");
const failure = (fqdn: string) => outcome(fqdn, { action: "failed", reason: "InRenewalWindow", error: { code: "ACME_REJECTED", stage: "acme-order", message: "refused", exitCode: 3 } });

describe("history ConfigMap against the API server stand-in, as the amlcert ServiceAccount", () => {
  let dir: string;
  let kube: KubeServer;
  let saSource: KubeSource;
  let saKubeconfig: string;
  let log: ReturnType<typeof captureLogger>;
  let clock: ReturnType<typeof countingClock>;

  const store = (extra: Partial<Parameters<typeof createHistoryStore>[0]> = {}) =>
    createHistoryStore({ source: saSource, namespace: NS, name: CM, logger: log, clock, ...extra });
  const stored = () => kube.store.peek("configmaps", NS, CM);
  const storedHistory = (fqdn: string) => {
    const text = (stored()?.data as Record<string, string> | undefined)?.[fqdn];
    return text === undefined ? undefined : (JSON.parse(text) as TargetHistory);
  };
  const putMap = (data: Record<string, string>, labels: Record<string, string> = {}) =>
    kube.putObject({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: CM, namespace: NS, labels }, data });
  const calls = () => kube.requests.filter((q) => q.resource === "configmaps").map((q) => `${q.verb} ${q.status}`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-history-store-"));
    const pki = createTestPki(join(dir, "pki"));
    kube = await startKubeServer({ pki, rbacFile: join(ROOT, "test/fixtures/rbac-adapters.yaml") });
    saKubeconfig = kube.writeKubeconfig(join(dir, "sa.kubeconfig"), { token: kube.saToken });
    saSource = { kind: "kubeconfig", path: saKubeconfig };
  });

  afterAll(async () => {
    await kube?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    kube.deleteObject("v1", "ConfigMap", NS, CM);
    kube.requests.length = 0;
    log = captureLogger();
    clock = countingClock();
  });

  afterEach(() => kube.faults.clear());

  it("when the ConfigMap does not exist, the first update creates it with the target's key, and read returns it", async () => {
    const h = store();
    expect(await h.read(A)).toBeUndefined();
    const written = await h.update(A, (prev) => nextHistory(prev, failure(A), t0, t1));
    expect(written).toEqual({
      fqdn: A,
      lastAttempt: t0.toISOString(),
      lastFailure: t0.toISOString(),
      lastAction: "failed",
      lastReason: "InRenewalWindow",
      consecutiveFailures: 1,
      lastError: { code: "ACME_REJECTED", stage: "acme-order", message: "refused", exitCode: 3 },
      nextAttempt: t1.toISOString(),
      dnsOk: true,
      servingOk: true,
    });
    expect(calls()).toEqual(["get 404", "get 404", "create 201"]);
    expect(stored()!.metadata.labels).toEqual({ "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/managed-by": "amlcert" });
    expect(Object.keys(stored()!.data as object)).toEqual([A]);
    expect(storedHistory(A)).toEqual(written);
    // a fresh process (another store, as a new CronJob pod) reads the same count
    expect(await store().read(A)).toEqual(written);
    const again = await store().update(A, (prev) => nextHistory(prev, failure(A), t1));
    expect(again.consecutiveFailures).toBe(2);
    expect(calls().slice(-2)).toEqual(["get 200", "update 200"]);
  });

  it("when two targets update at once, both land: the loser of the race reads again and keeps the winner's key", async () => {
    const [a, b] = await Promise.all([
      store().update(A, (prev) => nextHistory(prev, failure(A), t0)),
      store().update(B, (prev) => nextHistory(prev, outcome(B, { action: "renewed", serial: "0B" }), t0)),
    ]);
    expect(storedHistory(A)).toEqual(a);
    expect(storedHistory(B)).toEqual(b);
    expect(b).toMatchObject({ consecutiveFailures: 0, serial: "0B", lastSuccess: t0.toISOString() });
    // both found it missing; one create won, the other got 409 AlreadyExists and replaced the winner's object
    expect(calls().filter((c) => c.startsWith("create")).sort()).toEqual(["create 201", "create 409"]);
    expect(calls().filter((c) => c.startsWith("update"))).toEqual(["update 200"]);
  });

  it("when another writer changes the ConfigMap between the read and the replace, the update is retried and neither change is lost", async () => {
    putMap({ [A]: JSON.stringify({ fqdn: A, consecutiveFailures: 0 }) }, { team: "ml" });
    const rival = kube.faults.add({
      method: "PUT",
      pathIncludes: `/configmaps/${CM}`,
      status: 0,
      before: () =>
        void putMap({ [A]: JSON.stringify({ fqdn: A, consecutiveFailures: 0 }), [B]: JSON.stringify({ fqdn: B, consecutiveFailures: 4 }) }, { team: "ml" }),
    });
    const seen: (TargetHistory | undefined)[] = [];
    const written = await store().update(A, (prev) => {
      seen.push(prev);
      return nextHistory(prev, failure(A), t0);
    });
    expect(rival.hits).toBe(1);
    expect(calls()).toEqual(["get 200", "update 409", "get 200", "update 200"]);
    expect(seen).toEqual([{ fqdn: A, consecutiveFailures: 0 }, { fqdn: A, consecutiveFailures: 0 }]);
    expect(clock.sleeps).toEqual([50]);
    expect(storedHistory(A)).toEqual(written);
    expect(storedHistory(B)).toEqual({ fqdn: B, consecutiveFailures: 4 });
    expect(stored()!.metadata.labels).toEqual({ team: "ml" });
    expect(log.lines.some((l) => l.level === "debug" && l.obj.reason === "Conflict")).toBe(true);
  });

  it("when every replace ends in 409, update gives up after the retry bound with KUBE_CONFLICT and writes nothing", async () => {
    putMap({ [A]: JSON.stringify({ fqdn: A, consecutiveFailures: 7 }) });
    kube.faults.add({ method: "PUT", pathIncludes: `/configmaps/${CM}`, status: 409, times: Infinity });
    const err = await amlcertFailure(store({ conflictRetries: 2 }).update(A, (prev) => nextHistory(prev, failure(A), t0)));
    expect(err.code).toBe("KUBE_CONFLICT");
    expect(err.message).toBe(`could not update the history of ${A} in ConfigMap "${CM}" in namespace "${NS}": 3 attempts each ended in 409 because the ConfigMap kept changing between read and write`);
    expect(calls().filter((c) => c.startsWith("update"))).toEqual(["update 409", "update 409", "update 409"]);
    expect(clock.sleeps).toEqual([50, 100]);
    expect(storedHistory(A)).toEqual({ fqdn: A, consecutiveFailures: 7 });
  });

  it("when a stored value is not valid JSON, it is a warning and no history; the next update replaces it", async () => {
    putMap({ [A]: "{truncated", [B]: JSON.stringify({ fqdn: B, consecutiveFailures: 1 }) });
    expect(await store().read(A)).toBeUndefined();
    const warning = log.lines.find((l) => l.level === "warn");
    expect(warning?.obj).toMatchObject({ configMap: CM, namespace: NS, key: A });
    expect(warning?.msg).toMatch(/^the stored history of ml\.contoso\.test is unreadable \(not JSON \(.+\)\); treating it as no history, the next update replaces it$/);
    expect(await store().read(B)).toEqual({ fqdn: B, consecutiveFailures: 1 });
    const written = await store().update(A, (prev) => nextHistory(prev, failure(A), t0));
    expect(written.consecutiveFailures).toBe(1);
    expect(storedHistory(A)).toEqual(written);
  });

  it("when the ConfigMap has another name than the Role allows, the 403 names the verb, the ConfigMap and the rule to change", async () => {
    const err = await amlcertFailure(store({ name: "my-history" }).update(A, (prev) => nextHistory(prev, failure(A), t0)));
    expect(err.code).toBe("KUBE_FORBIDDEN");
    expect(err.message).toContain('Kubernetes denied "get" on configmaps "my-history" in namespace "azureml"');
    expect(err.message).toContain(
      'grant it with Role "amlcert" in namespace "azureml" (deploy/base/rbac.yaml): its configmaps rule allows only resourceNames ["amlcert-history"]; add "my-history" (history.configMap) there.',
    );
    expect(err.message).toContain('User "system:serviceaccount:azureml:amlcert" cannot get resource "configmaps"');
    expect(kube.store.peek("configmaps", NS, "my-history")).toBeUndefined();
  });

  it("when the ConfigMap was created empty by the manifests, an update needs only get and update on it, and keeps its labels", async () => {
    putMap({}, { "app.kubernetes.io/part-of": "amlcert" });
    (stored() as { data?: unknown }).data = undefined;
    kube.requests.length = 0;
    const written = await store().update(A, (prev) => nextHistory(prev, failure(A), t0));
    expect(calls()).toEqual(["get 200", "update 200"]);
    expect(storedHistory(A)).toEqual(written);
    expect(stored()!.metadata.labels).toEqual({ "app.kubernetes.io/part-of": "amlcert" });
  });

  it("when the ConfigMap is missing and creating it is forbidden, the error names the ConfigMap and says to apply the manifests in deploy/", async () => {
    kube.faults.add({ method: "POST", pathIncludes: "/configmaps", status: 403, times: Infinity });
    const err = await amlcertFailure(store().update(A, (prev) => nextHistory(prev, failure(A), t0)));
    expect(err).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "preflight" });
    expect(err.message).toBe(
      'ConfigMap "amlcert-history" does not exist in namespace "azureml", and amlcert may not create it (403 Forbidden on create configmaps). ' +
        'Apply the manifests in deploy/ (they create it, e.g. kubectl apply -k deploy/overlays/cronjob), or grant create on configmaps in namespace "azureml"',
    );
    expect(stored()).toBeUndefined();
  });

  it("when the Lease is missing and creating it is forbidden, acquiring fails naming the Lease and saying to apply the manifests in deploy/", async () => {
    kube.deleteObject("coordination.k8s.io/v1", "Lease", NS, "amlcert");
    kube.faults.add({ method: "POST", pathIncludes: "/leases", status: 403, times: Infinity });
    const lease = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    const err = await amlcertFailure(lease.tryAcquire("pod-a/1", 90));
    expect(err).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "preflight" });
    expect(err.message).toBe(
      'Lease "amlcert" does not exist in namespace "azureml", and amlcert may not create it (403 Forbidden on create leases (coordination.k8s.io)). ' +
        'Apply the manifests in deploy/ (they create it, e.g. kubectl apply -k deploy/overlays/cronjob), or grant create on leases (coordination.k8s.io) in namespace "azureml"',
    );
  });

  it("when two runs take the existing, released Lease at once, the one that loses the update race is told who holds it and until when (so it waits instead of skipping)", async () => {
    const earlier = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    expect(await earlier.acquire("pod-c/1", 90)).toBe(true);
    await earlier.release(); // as the manifests leave it, or a finished run: a Lease with no holder
    const winner = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    const loser = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    // the loser read the Lease; before its update lands, the winner reads and updates it: the loser's update gets 409
    kube.faults.add({ method: "PUT", pathIncludes: "/leases/amlcert", status: 0, times: 1, before: async () => void (await winner.tryAcquire("pod-a/1", 90)) });
    const attempt = await loser.tryAcquire("pod-b/1", 90);
    expect(attempt).toEqual({ acquired: false, holder: "pod-a/1", expiresAt: clock.now().getTime() + 90_000 });
    expect((kube.store.peek("leases", NS, "amlcert") as unknown as { spec: { holderIdentity: string } }).spec.holderIdentity).toBe("pod-a/1");
    await winner.release();
  });

  it("when a crashed holder's unexpired Lease names a dead process of this host, the lock is taken over (takeOverFrom); another holder's is not", async () => {
    kube.deleteObject("coordination.k8s.io/v1", "Lease", NS, "amlcert");
    const crashed = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    expect(await crashed.acquire("pod-a/7", 90)).toBe(true);
    const rerun = createLeaseLock({ source: saSource, namespace: NS, logger: log, clock });
    expect(await rerun.tryAcquire("pod-a/8", 90)).toMatchObject({ acquired: false, holder: "pod-a/7" });
    expect(await rerun.tryAcquire("pod-a/8", 90, { takeOverFrom: "pod-b/7" })).toMatchObject({ acquired: false, holder: "pod-a/7" });
    expect(await rerun.tryAcquire("pod-a/8", 90, { takeOverFrom: "pod-a/7" })).toEqual({ acquired: true });
    expect((kube.store.peek("leases", NS, "amlcert") as unknown as { spec: { holderIdentity: string; leaseTransitions: number } }).spec).toMatchObject({ holderIdentity: "pod-a/8", leaseTransitions: 1 });
    await rerun.release();
  });

  it("when a crashed run in another pod holds an unexpired Lease, the next run waits for it to lapse (bounded, on its clock) and takes it over", async () => {
    kube.deleteObject("coordination.k8s.io/v1", "Lease", NS, "amlcert");
    const t0 = Date.parse("2030-01-01T00:00:00.000Z");
    let now = t0;
    // waits without a signal move time on at once; the held lease's renewal loop (it has a signal) never wakes
    const virtual: Clock = {
      now: () => new Date(now),
      sleep: (ms, signal) =>
        signal ? new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true })) : ((now += ms), Promise.resolve()),
    };
    expect(await createLeaseLock({ source: saSource, namespace: NS, logger: log, clock: virtual }).acquire("pod-crashed/7", 90)).toBe(true);
    const lock = createRunLock({
      lease: createLeaseLock({ source: saSource, namespace: NS, logger: log, clock: virtual }),
      holder: "pod-b/1",
      clock: virtual,
      logger: log,
      abandonedBy: deadOnThisHost("pod-b/1", () => false),
    });

    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);

    expect((kube.store.peek("leases", NS, "amlcert") as unknown as { spec: { holderIdentity: string } }).spec.holderIdentity).toBe("pod-b/1");
    // polled every 5 s: the poll at 90 s finds the crashed holder's lease lapsed (renewTime + 90 s)
    expect(now - t0).toBe(90_000);
    await lock.release();
  });

  it("when the Role has no ConfigMap rules, reading the history fails with KUBE_FORBIDDEN naming the rule", async () => {
    kube.addToken("no-history-token", "system:serviceaccount:azureml:someone-else");
    const source: KubeSource = { kind: "kubeconfig", path: kube.writeKubeconfig(join(dir, "other.kubeconfig"), { token: "no-history-token" }) };
    const err = await amlcertFailure(store({ source }).read(A));
    expect(err).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "preflight" });
    expect(err.message).toContain('Kubernetes denied "get" on configmaps "amlcert-history" in namespace "azureml"');
    expect(err.message).toContain('grant it with Role "amlcert" in namespace "azureml" (deploy/base/rbac.yaml), the configmaps rule with resourceNames ["amlcert-history"].');
  });

  it("when read with the kubectl command the README gives, as the amlcert ServiceAccount, the target's history is printed", async () => {
    const written = await store().update(A, (prev) => nextHistory(prev, failure(A), t0));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        "kubectl",
        ["--kubeconfig", saKubeconfig, "--cache-dir", join(dir, "kube-cache"), "--request-timeout", "20s", "-n", "azureml", "get", "configmap", "amlcert-history", "-o", "jsonpath={.data.ml\\.contoso\\.test}"],
        { timeout: 60_000, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } },
        (err, stdout, stderr) => (err ? reject(new Error(`kubectl failed: ${stderr}`)) : resolve(stdout)),
      ),
    );
    expect(JSON.parse(out)).toEqual(written);
  });

  it("when the ServiceAccount reaches beyond the history's calls, each is refused with 403: no list, watch, patch, delete, nor another ConfigMap", async () => {
    putMap({ [A]: JSON.stringify({ fqdn: A, consecutiveFailures: 0 }) });
    kube.putObject({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "amlcert-config", namespace: NS }, data: { "amlcert.yaml": "x" } });
    const kc = new KubeConfig();
    kc.loadFromFile(saKubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const status = (p: Promise<unknown>) => p.then(() => 200, (e: unknown) => (e instanceof ApiException ? (e as ApiException<unknown>).code : -1));
    expect(await status(core.readNamespacedConfigMap({ name: CM, namespace: NS }))).toBe(200);
    expect(await status(core.listNamespacedConfigMap({ namespace: NS }))).toBe(403);
    expect(await status(core.listNamespacedConfigMap({ namespace: NS, watch: true, timeoutSeconds: 1 }))).toBe(403);
    expect(await status(core.patchNamespacedConfigMap({ name: CM, namespace: NS, body: { metadata: { labels: { x: "y" } } } }))).toBe(403);
    expect(await status(core.deleteNamespacedConfigMap({ name: CM, namespace: NS }))).toBe(403);
    expect(await status(core.readNamespacedConfigMap({ name: "amlcert-config", namespace: NS }))).toBe(403);
    expect(await status(core.readNamespacedConfigMap({ name: CM, namespace: "default" }))).toBe(403);
    expect(storedHistory(A)).toEqual({ fqdn: A, consecutiveFailures: 0 });
  });

  it("a ConfigMap key is the FQDN in lower case, without a trailing dot", () => {
    expect(historyKey("ML.Contoso.Test.")).toBe(A);
    expect(() => historyKey("*.contoso.test")).toThrow(/not a valid ConfigMap key/);
  });
});
