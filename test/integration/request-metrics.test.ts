/**
 * amlcert_requests_total from the adapters' own HTTP stacks, against the same peers as their integration suites:
 * the ARM and Entra stand-ins (the Azure SDK pipeline policy), the Kubernetes API stand-in (client-node's HTTP
 * library) and Pebble (acme-client's axios). Each count is checked against what the other side saw: the stand-ins'
 * request logs, or for Pebble Node's own http client diagnostics channel.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type { ClientRequest, IncomingMessage } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fileAccountKeyStore } from "../../src/acme/account-key-store.js";
import { createAcmeIssuer } from "../../src/acme/acme-issuer.js";
import { generateCertificateKey } from "../../src/acme/keys.js";
import { createAzureCredential } from "../../src/azure/credential.js";
import { loadKubeConfig, makeKubeApis } from "../../src/kubernetes/kube-client.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { systemClock, type RequestObserver, type RequestSystem } from "../../src/ports.js";
import type { ExtensionRef } from "../servers/arm-server.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { challTestSrvSolver, freePort, startChallTestSrv, startPebble, type ChallTestSrv, type Pebble } from "../servers/pebble.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { parseExposition } from "../support/exposition.js";
import { SUBSCRIPTION, ZONE, fixtureDnsZone, fixtureExtensionClient, startAzureFixture, type AzureFixture } from "./azure-fixture.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A RequestObserver that remembers, in order, what it was told. */
function recorder(): { observe: RequestObserver; seen: [RequestSystem, string][]; byStatus(system: RequestSystem): Record<string, number> } {
  const seen: [RequestSystem, string][] = [];
  return {
    seen,
    observe: (system, status) => void seen.push([system, status]),
    byStatus: (system) => tally(seen.filter(([s]) => s === system).map(([, st]) => st)),
  };
}

function tally(values: (string | number)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}

const silent = pino({ level: "silent" });

describe("ARM and Entra requests through the Azure SDK pipeline", () => {
  let fx: AzureFixture;
  beforeAll(async () => {
    fx = await startAzureFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });
  afterEach(() => {
    fx.arm.faults.clear();
    fx.arm.requests.length = 0;
  });

  const zoneWith = (observe: RequestObserver | undefined, endpoint = fx.cloud.resourceManagerEndpoint) =>
    fixtureDnsZone(fx, { endpoint, ...(observe ? { requests: observe } : {}) });

  it("when ARM answers 429 and the SDK retries to a 200, both responses are counted", async () => {
    const r = recorder();
    fx.arm.faults.add({ method: "GET", pathIncludes: `/dnszones/${ZONE}`, status: 429, retryAfterSeconds: 0, times: 1 });
    expect(await zoneWith(r.observe).nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    expect(r.seen).toEqual([
      ["arm", "429"],
      ["arm", "200"],
    ]);
    expect(fx.arm.requests.map((q) => q.status)).toEqual([429, 200]);
  });

  it("when a TXT value is written and removed, every ARM response is counted with the status ARM sent", async () => {
    const r = recorder();
    const z = zoneWith(r.observe);
    await z.addTxtValue(`_acme-challenge.www.${ZONE}`, "v1", 60);
    await z.removeTxtValue(`_acme-challenge.www.${ZONE}`, "v1");
    expect(r.seen.map(([, s]) => s)).toEqual(fx.arm.requests.map((q) => String(q.status)));
    // read (404), create (201), read (200), delete (200)
    expect(r.seen.map(([, s]) => s)).toEqual(["404", "201", "200", "200"]);
  });

  it("when the extension update runs its long-running operation, the PATCH and every poll are counted", async () => {
    const ref: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: "rg-ml", clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" };
    fx.arm.addExtension({ ...ref, configurationSettings: { sslSecret: "old" }, protectedSettings: {} });
    fx.arm.lro.outcome = "Succeeded";
    fx.arm.lro.pollsBeforeDone = 2;
    const r = recorder();
    const client = fixtureExtensionClient(fx, ref, { retry: { maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 40 }, requests: r.observe });
    fx.arm.faults.add({ method: "PATCH", status: 429, retryAfterSeconds: 0, times: 1 });
    const result = await client.updateSettings({ sslSecret: "new" });
    await fx.arm.settleOperations();
    expect(result.changed).toBe(true);
    // in the order ARM answered: the throttled PATCH, its retry (202 + operation), then the polls and the final GET
    const statuses = fx.arm.requests.map((q) => String(q.status));
    expect(r.seen.map(([, s]) => s)).toEqual(statuses);
    expect(statuses.slice(0, 2)).toEqual(["429", "202"]);
    expect(statuses.length).toBeGreaterThanOrEqual(4);
  });

  it("when ARM cannot be reached, each attempt the SDK makes is counted as error", async () => {
    const r = recorder();
    const port = await freePort();
    await expect(zoneWith(r.observe, `https://127.0.0.1:${port}`).nameServers()).rejects.toThrow();
    // one try and the two retries of `retry.maxRetries`
    expect(r.seen).toEqual([
      ["arm", "error"],
      ["arm", "error"],
      ["arm", "error"],
    ]);
  });

  it("when no observer is given, the adapter works as before", async () => {
    expect(await zoneWith(undefined).nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
  });

  it("when a token is requested from Entra, every Entra response is counted, a refused token request included", async () => {
    const r = recorder();
    const azure = createAzureCredential({ cloud: fx.cloud, env: fx.spEnv, logger: fx.logger, requests: r.observe });
    const before = fx.entra.requests;
    const token = await azure.credential.getToken(fx.cloud.tokenScope);
    expect(token?.token.length).toBeGreaterThan(0);
    const served = fx.entra.requests - before;
    expect(r.seen.length).toBe(served);
    expect(r.byStatus("entra")).toEqual({ "200": served });

    fx.entra.failTokenRequests({ status: 400, times: 1 });
    const failing = recorder();
    const other = createAzureCredential({ cloud: fx.cloud, env: fx.spEnv, logger: fx.logger, requests: failing.observe });
    const beforeFailure = fx.entra.requests;
    await expect(other.credential.getToken(fx.cloud.tokenScope)).rejects.toMatchObject({ code: "AZURE_AUTH" });
    const servedFailing = fx.entra.requests - beforeFailure;
    expect(failing.seen.length).toBe(servedFailing);
    expect(failing.byStatus("entra")["400"]).toBe(1);
  });
});

describe("Kubernetes requests through client-node", () => {
  let dir: string;
  let pki: TestPki;
  let kube: KubeServer;
  let kubeconfig: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-request-metrics-kube-"));
    pki = createTestPki(join(dir, "pki"));
    kube = await startKubeServer({ pki, rbacFile: join(ROOT, "test/fixtures/rbac-adapters.yaml") });
    kubeconfig = kube.writeKubeconfig(join(dir, "sa.kubeconfig"), { token: kube.saToken });
  });
  afterAll(async () => {
    await kube?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    kube.faults.clear();
    kube.requests.length = 0;
  });

  it("when the API server answers 200, 404 and an injected 429 that the retry gets past, each response is counted as the server sent it", async () => {
    const r = recorder();
    const apis = makeKubeApis(loadKubeConfig({ kind: "kubeconfig", path: kubeconfig }), { timeoutMs: 5_000, sleep: async () => undefined }, r.observe);
    await apis.core.listNamespacedSecret({ namespace: "azureml" });
    await expect(apis.core.readNamespacedSecret({ name: "does-not-exist", namespace: "azureml" })).rejects.toMatchObject({ code: 404 });
    kube.faults.add({ method: "GET", pathIncludes: "/secrets", status: 429, times: 1 });
    await apis.core.listNamespacedSecret({ namespace: "azureml" });
    expect(r.seen).toEqual([
      ["kubernetes", "200"],
      ["kubernetes", "404"],
      ["kubernetes", "429"],
      ["kubernetes", "200"],
    ]);
    expect(kube.requests.map((q) => q.status)).toEqual([200, 404, 429, 200]);
  });

  it("when the API server cannot be reached, each try is counted as error", async () => {
    const r = recorder();
    const port = await freePort();
    const unreachable = join(dir, "unreachable.kubeconfig");
    writeFileSync(unreachable, readFileSync(kubeconfig, "utf8").replace(kube.url, `https://127.0.0.1:${port}`));
    const apis = makeKubeApis(loadKubeConfig({ kind: "kubeconfig", path: unreachable }), { timeoutMs: 5_000, maxRetries: 2, sleep: async () => undefined }, r.observe);
    await expect(apis.core.listNamespacedSecret({ namespace: "azureml" })).rejects.toThrow();
    // a read that found no server is tried again: the first try and maxRetries=2 retries
    expect(r.seen).toEqual([
      ["kubernetes", "error"],
      ["kubernetes", "error"],
      ["kubernetes", "error"],
    ]);
  });
});

interface WireLog {
  statuses: number[];
  errors: number;
  stop(): void;
}

/** What Node's http client saw for requests to `port`: response statuses and request errors (the oracle for ACME). */
function watchWire(port: number): WireLog {
  const log: WireLog = { statuses: [], errors: 0, stop: () => undefined };
  const toPort = (req: ClientRequest) => {
    const host = req.getHeader("host");
    return typeof host === "string" && host.endsWith(`:${port}`);
  };
  const onResponse = (msg: unknown) => {
    const { request, response } = msg as { request: ClientRequest; response: IncomingMessage };
    if (toPort(request)) log.statuses.push(response.statusCode ?? 0);
  };
  const onError = (msg: unknown) => {
    if (toPort((msg as { request: ClientRequest }).request)) log.errors++;
  };
  subscribe("http.client.response.finish", onResponse);
  subscribe("http.client.request.error", onError);
  log.stop = () => {
    unsubscribe("http.client.response.finish", onResponse);
    unsubscribe("http.client.request.error", onError);
  };
  return log;
}

describe("ACME requests through acme-client against Pebble (-strict, 15% nonce rejection)", () => {
  let work: string;
  let pki: TestPki;
  let dns: ChallTestSrv;
  let pebble: Pebble;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "amlcert-request-metrics-acme-"));
    pki = createTestPki(join(work, "pki"));
    dns = await startChallTestSrv();
    pebble = await startPebble({ pki, dnsServer: dns.dnsServer });
  });
  afterAll(async () => {
    await pebble?.close().catch(() => undefined);
    await dns?.close().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const issuer = (observe: RequestObserver, directoryUrl = pebble.directoryUrl, keyFile = join(work, "account.key")) =>
    createAcmeIssuer({
      directoryUrl,
      email: "ops@example.test",
      accountKeys: fileAccountKeyStore(keyFile),
      logger: silent,
      clock: systemClock,
      termsOfServiceAgreed: true,
      caPem: pki.caPem,
      poll: { attempts: 20, minDelayMs: 100, maxDelayMs: 1_000 },
      transportRetry: { retries: 2, delaySeconds: 0 },
      requests: observe,
    });

  it("when a certificate is issued, every response from the CA is counted with its status, retried badNonce answers included", async () => {
    const metrics = createMetrics({ version: "test", defaultMetrics: false });
    const r = recorder();
    const both: RequestObserver = (system, status) => {
      r.observe(system, status);
      metrics.requests(system, status);
    };
    const wire = watchWire(Number(new URL(pebble.directoryUrl).port));
    try {
      await issuer(both).issue({ names: ["count.example.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, challTestSrvSolver(dns));
    } finally {
      wire.stop();
    }
    expect(wire.errors).toBe(0);
    expect(r.byStatus("acme")).toEqual(tally(wire.statuses));
    expect(r.seen.every(([s]) => s === "acme")).toBe(true);
    // newAccount and newOrder answer 201
    expect(r.byStatus("acme")["201"]).toBeGreaterThanOrEqual(2);

    const exp = parseExposition(await metrics.text());
    for (const [status, n] of Object.entries(r.byStatus("acme"))) {
      expect(exp.samples.get(`amlcert_requests_total{system="acme",status="${status}"}`)).toBe(n);
    }
  });

  it("when the CA cannot be reached, each attempt acme-client makes is counted as error", async () => {
    const r = recorder();
    const port = await freePort();
    const wire = watchWire(port);
    try {
      await expect(
        issuer(r.observe, `https://127.0.0.1:${port}/dir`, join(work, "unreachable.key")).issue(
          { names: ["never.example.test"], keyPem: await generateCertificateKey("ecdsa-p256") },
          challTestSrvSolver(dns),
        ),
      ).rejects.toThrow();
    } finally {
      wire.stop();
    }
    // the first try and the two retries of transportRetry.retries
    expect(wire.errors).toBe(3);
    expect(r.seen).toEqual([
      ["acme", "error"],
      ["acme", "error"],
      ["acme", "error"],
    ]);
  });
});
