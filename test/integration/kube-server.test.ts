/**
 * The Kubernetes API server stand-in, proved against the real `kubectl` (and the real @kubernetes/client-node):
 * discovery, tables, label selectors, create/replace/delete, jsonpath output, RBAC from test/fixtures/rbac-adapters.yaml with the
 * real Forbidden wording, optimistic concurrency (409), validation (422), fault injection and watches.
 * kubectl trusts the test CA through certificate-authority-data only.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiException, CoordinationV1Api, CoreV1Api, EventsV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { createTestPki, type TestPki } from "../servers/pki.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RBAC_FILE = join(ROOT, "test/fixtures/rbac-adapters.yaml");
const SA_USER = "system:serviceaccount:azureml:amlcert";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe("Kubernetes API server stand-in, driven by kubectl", () => {
  let dir: string;
  let pki: TestPki;
  let kube: KubeServer;
  let admin: string;
  let sa: string;

  const kubectl = (kubeconfig: string, args: string[], input?: string): Promise<Run> =>
    new Promise((resolve) => {
      const child = execFile(
        "kubectl",
        ["--kubeconfig", kubeconfig, "--cache-dir", join(dir, "kube-cache"), "--request-timeout", "20s", ...args],
        { timeout: 60_000, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } },
        (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
      if (input !== undefined) child.stdin?.end(input);
    });

  const apiClient = (token: string) => {
    const kc = new KubeConfig();
    kc.loadFromFile(kube.writeKubeconfig(join(dir, `client-${token.slice(0, 8)}.kubeconfig`), { token }));
    return kc;
  };

  beforeAll(async () => {
    try {
      execFileSync("kubectl", ["version", "--client"], { stdio: "pipe", env: { PATH: process.env.PATH ?? "", HOME: tmpdir() } });
    } catch (err) {
      throw new Error(`these tests need kubectl on PATH (scripts/setup.sh installs it): ${(err as Error).message}`);
    }
    dir = mkdtempSync(join(tmpdir(), "amlcert-kube-server-"));
    pki = createTestPki(join(dir, "pki"));
    kube = await startKubeServer({ pki, rbacFile: RBAC_FILE });
    admin = kube.writeKubeconfig(join(dir, "admin.kubeconfig"), { token: kube.adminToken, contexts: ["aks-westeurope", "aks-northeurope"] });
    sa = kube.writeKubeconfig(join(dir, "sa.kubeconfig"), { token: kube.saToken });
  });

  afterAll(async () => {
    await kube?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => kube.faults.clear());

  it("when kubectl gets a secret as JSON, it sees base64 data and the metadata the server set", async () => {
    kube.putSecret("azureml", "tls-a", { "cert.pem": "CERT-A", "key.pem": "KEY-A" }, { labels: { app: "amlcert" } });
    const r = await kubectl(admin, ["get", "secret", "tls-a", "-n", "azureml", "-o", "json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.kind).toBe("Secret");
    expect(s.apiVersion).toBe("v1");
    expect(s.type).toBe("Opaque");
    expect(Buffer.from(s.data["cert.pem"], "base64").toString()).toBe("CERT-A");
    expect(s.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(s.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(s.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it("when kubectl lists secrets with label selectors, only the matching secrets are printed", async () => {
    kube.putSecret("azureml", "sel-1", { a: "1" }, { labels: { "amlcert.io/base": "web", v: "1" } });
    kube.putSecret("azureml", "sel-2", { a: "2" }, { labels: { "amlcert.io/base": "web", v: "2" } });
    kube.putSecret("azureml", "sel-3", { a: "3" }, { labels: { "amlcert.io/base": "api" } });
    const names = async (selector: string) => {
      const r = await kubectl(admin, ["get", "secrets", "-n", "azureml", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split(" ").filter(Boolean).sort();
    };
    expect(await names("amlcert.io/base=web")).toEqual(["sel-1", "sel-2"]);
    expect(await names("amlcert.io/base=web,v!=1")).toEqual(["sel-2"]);
    expect(await names("amlcert.io/base in (web,api),!v")).toEqual(["sel-3"]);
    expect(await names("amlcert.io/base,v")).toEqual(["sel-1", "sel-2"]);
    const table = await kubectl(admin, ["get", "secrets", "-n", "azureml", "-l", "amlcert.io/base=api"]);
    expect(table.stdout).toMatch(/^NAME\s+TYPE\s+DATA\s+AGE\nsel-3\s+Opaque\s+1\s+\d+s\n$/);
  });

  it("when kubectl creates and deletes a secret, the store follows and onSecretChange reports it", async () => {
    const seen: string[] = [];
    const stop = kube.onSecretChange((c) => seen.push(`${c.type} ${c.namespace}/${c.name}`));
    const created = await kubectl(admin, ["create", "secret", "generic", "made-by-kubectl", "-n", "azureml", "--from-literal=cert.pem=PEM"]);
    expect(created.stdout.trim()).toBe("secret/made-by-kubectl created");
    expect(kube.getSecret("azureml", "made-by-kubectl")).toEqual({ "cert.pem": "PEM" });
    const deleted = await kubectl(admin, ["delete", "secret", "made-by-kubectl", "-n", "azureml"]);
    expect(deleted.stdout.trim()).toBe('secret "made-by-kubectl" deleted');
    expect(kube.getSecret("azureml", "made-by-kubectl")).toBeUndefined();
    const again = await kubectl(admin, ["delete", "secret", "made-by-kubectl", "-n", "azureml"]);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim()).toBe('Error from server (NotFound): secrets "made-by-kubectl" not found');
    stop();
    expect(seen).toEqual(["ADDED azureml/made-by-kubectl", "DELETED azureml/made-by-kubectl"]);
  });

  it("when kubectl asks for the azureml-fe ingress IP with jsonpath, it prints the seeded load balancer address", async () => {
    kube.putService("azureml", { name: "azureml-fe", ingress: [{ ip: "20.30.40.50" }] });
    const r = await kubectl(admin, ["get", "svc", "azureml-fe", "-n", "azureml", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("20.30.40.50");
    const table = await kubectl(admin, ["get", "svc", "-n", "azureml"]);
    expect(table.stdout).toMatch(/azureml-fe\s+LoadBalancer\s+10\.\d+\.\d+\.\d+\s+20\.30\.40\.50\s+80\/TCP,443\/TCP/);
  });

  it("when the amlcert ServiceAccount uses a verb its Role lacks, the 403 is worded like the real API server", async () => {
    kube.putSecret("azureml", "tls-b", { a: "b" });
    const patch = await kubectl(sa, ["patch", "secret", "tls-b", "-n", "azureml", "-p", '{"metadata":{"labels":{"x":"y"}}}']);
    expect(patch.code).not.toBe(0);
    expect(patch.stderr.trim()).toBe(
      `Error from server (Forbidden): secrets "tls-b" is forbidden: User "${SA_USER}" cannot patch resource "secrets" in API group "" in the namespace "azureml"`,
    );
    const otherNs = await kubectl(sa, ["get", "secrets", "-n", "default"]);
    expect(otherNs.stderr.trim()).toBe(
      `Error from server (Forbidden): secrets is forbidden: User "${SA_USER}" cannot list resource "secrets" in API group "" in the namespace "default"`,
    );
    const adminPatch = await kubectl(admin, ["patch", "secret", "tls-b", "-n", "azureml", "-p", '{"metadata":{"labels":{"x":"y"}},"stringData":{"c":"d"}}']);
    expect(adminPatch.stdout.trim()).toBe("secret/tls-b patched");
    expect(kube.getSecret("azureml", "tls-b")).toEqual({ a: "b", c: "d" });
    expect(kube.getSecretObject("azureml", "tls-b")?.metadata.labels).toEqual({ x: "y" });
    const read = await kubectl(sa, ["get", "secret", "tls-b", "-n", "azureml", "-o", "jsonpath={.metadata.name}"]);
    expect(read.stdout).toBe("tls-b");
    expect(kube.requests.some((q) => q.user === SA_USER && q.verb === "patch" && q.status === 403)).toBe(true);
  });

  it("when kubectl auth can-i asks for the ServiceAccount, the answers follow the shipped Role", async () => {
    const can = async (...args: string[]) => (await kubectl(sa, ["auth", "can-i", ...args])).stdout.trim();
    expect(await can("update", "secrets", "-n", "azureml")).toBe("yes");
    expect(await can("patch", "secrets", "-n", "azureml")).toBe("no");
    expect(await can("watch", "secrets", "-n", "azureml")).toBe("no");
    expect(await can("get", "services/azureml-fe", "-n", "azureml")).toBe("yes");
    expect(await can("get", "services/other", "-n", "azureml")).toBe("no");
    expect(await can("create", "events", "-n", "azureml")).toBe("yes");
    expect(await can("create", "events.events.k8s.io", "-n", "azureml")).toBe("no");
    expect(await can("update", "leases.coordination.k8s.io/amlcert", "-n", "azureml")).toBe("yes");
    expect(await can("update", "leases.coordination.k8s.io/other", "-n", "azureml")).toBe("no");
    expect(await can("get", "secrets", "-n", "kube-system")).toBe("no");
    expect((await kubectl(admin, ["auth", "can-i", "*", "*", "-A"])).stdout.trim()).toBe("yes");
  });

  it("when kubectl replaces a secret with a stale resourceVersion, it gets 409 Conflict", async () => {
    kube.putSecret("azureml", "tls-c", { a: "1" });
    const got = await kubectl(admin, ["get", "secret", "tls-c", "-n", "azureml", "-o", "json"]);
    const file = join(dir, "tls-c.json");
    writeFileSync(file, got.stdout);
    kube.putSecret("azureml", "tls-c", { a: "2" }); // someone else writes in between
    const r = await kubectl(admin, ["replace", "-f", file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe(
      `Error from server (Conflict): error when replacing "${file}": Operation cannot be fulfilled on secrets "tls-c": the object has been modified; please apply your changes to the latest version and try again`,
    );
    expect(kube.getSecret("azureml", "tls-c")).toEqual({ a: "2" });
    const fresh = await kubectl(admin, ["get", "secret", "tls-c", "-n", "azureml", "-o", "json"]);
    const edited = JSON.parse(fresh.stdout);
    edited.data.a = Buffer.from("3").toString("base64");
    writeFileSync(file, JSON.stringify(edited));
    const ok = await kubectl(admin, ["replace", "-f", file]);
    expect(ok.stdout.trim()).toBe("secret/tls-c replaced");
    expect(kube.getSecret("azureml", "tls-c")).toEqual({ a: "3" });
  });

  it("when client-node PUTs a stale resourceVersion, the ApiException carries code 409 and a Conflict Status", async () => {
    const core = apiClient(kube.adminToken).makeApiClient(CoreV1Api);
    const created = await core.createNamespacedSecret({ namespace: "azureml", body: { metadata: { name: "tls-d" }, stringData: { a: "1" } } });
    expect(created.data).toEqual({ a: Buffer.from("1").toString("base64") });
    const rv = created.metadata!.resourceVersion!;
    await core.replaceNamespacedSecret({ name: "tls-d", namespace: "azureml", body: { metadata: { name: "tls-d", resourceVersion: rv }, data: { a: "Mg==" } } });
    const stale = await core
      .replaceNamespacedSecret({ name: "tls-d", namespace: "azureml", body: { metadata: { name: "tls-d", resourceVersion: rv }, data: { a: "Mw==" } } })
      .then(() => undefined, (e: unknown) => e);
    expect(stale).toBeInstanceOf(ApiException);
    const ex = stale as ApiException<string>;
    expect(ex.code).toBe(409);
    expect(JSON.parse(ex.body)).toMatchObject({
      kind: "Status",
      status: "Failure",
      reason: "Conflict",
      code: 409,
      details: { name: "tls-d", kind: "secrets" },
      message: 'Operation cannot be fulfilled on secrets "tls-d": the object has been modified; please apply your changes to the latest version and try again',
    });
    const dup = await core.createNamespacedSecret({ namespace: "azureml", body: { metadata: { name: "tls-d" } } }).then(() => undefined, (e: unknown) => e);
    expect(JSON.parse((dup as ApiException<string>).body)).toMatchObject({ reason: "AlreadyExists", code: 409, message: 'secrets "tls-d" already exists' });
  });

  it("when a write is invalid, the server answers like the real one: 422 naming the field, 400 for bad base64", async () => {
    const bad = await kubectl(admin, ["create", "secret", "generic", "Not_A_DNS_Name", "-n", "azureml", "--from-literal=a=b"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Secret "Not_A_DNS_Name" is invalid: metadata.name: Invalid value: "Not_A_DNS_Name": a lowercase RFC 1123 subdomain');
    const core = apiClient(kube.adminToken).makeApiClient(CoreV1Api);
    const b64 = await core.createNamespacedSecret({ namespace: "azureml", body: { metadata: { name: "bad-b64" }, data: { a: "not base64!" } } }).then(() => undefined, (e: unknown) => e);
    expect((b64 as ApiException<string>).code).toBe(400);
    expect(JSON.parse((b64 as ApiException<string>).body).message).toContain("illegal base64 data at input byte");
    const label = await core.createNamespacedSecret({ namespace: "azureml", body: { metadata: { name: "bad-label", labels: { fqdn: "*.contoso.com" } } } }).then(() => undefined, (e: unknown) => e);
    expect((label as ApiException<string>).code).toBe(422);
    expect(JSON.parse((label as ApiException<string>).body)).toMatchObject({ reason: "Invalid", details: { causes: [{ field: "metadata.labels" }] } });
    const noNs = await kubectl(admin, ["create", "secret", "generic", "x", "-n", "no-such-namespace", "--from-literal=a=b"]);
    expect(noNs.stderr).toContain('namespaces "no-such-namespace" not found');
  });

  it("when a fault is injected, kubectl sees it once and the request log records it without tokens", async () => {
    kube.putSecret("azureml", "tls-e", { a: "1" });
    const fault = kube.faults.add({ method: "GET", pathIncludes: "/secrets/tls-e", status: 500 });
    const failed = await kubectl(admin, ["get", "secret", "tls-e", "-n", "azureml", "-o", "name"]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("Internal error occurred: injected fault");
    expect(fault.hits).toBe(1);
    const ok = await kubectl(admin, ["get", "secret", "tls-e", "-n", "azureml", "-o", "name"]);
    expect(ok.stdout.trim()).toBe("secret/tls-e");
    const logged = kube.requests.filter((q) => q.path.startsWith("/api/v1/namespaces/azureml/secrets/tls-e"));
    expect(logged.map((q) => q.status)).toEqual([500, 200]);
    expect(JSON.stringify(kube.requests)).not.toContain(kube.adminToken);
    expect(JSON.stringify(kube.requests)).not.toContain(kube.saToken);
  });

  it("when a request has no valid token, the server answers 401 and kubectl says so", async () => {
    const bogus = kube.writeKubeconfig(join(dir, "bogus.kubeconfig"), { token: "not-a-token" });
    const r = await kubectl(bogus, ["get", "secrets", "-n", "azureml"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("You must be logged in to the server (Unauthorized)");
  });

  it("when kubectl switches between contexts of one kubeconfig, each reaches the server", async () => {
    const names = (await kubectl(admin, ["config", "get-contexts", "-o", "name"])).stdout.trim().split("\n");
    expect(names.sort()).toEqual(["aks-northeurope", "aks-westeurope"]);
    const r = await kubectl(admin, ["--context", "aks-northeurope", "get", "ns", "azureml", "-o", "jsonpath={.status.phase}"]);
    expect(r.stdout).toBe("Active");
    expect(readFileSync(admin, "utf8")).toContain("certificate-authority-data");
    expect(readFileSync(admin, "utf8")).not.toContain("insecure-skip-tls-verify");
  });

  it("when events are created through core/v1 and events.k8s.io/v1, both are listed as core Events", async () => {
    const kc = apiClient(kube.adminToken);
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedEvent({
      namespace: "azureml",
      body: { metadata: { name: "tls-a.1" }, involvedObject: { kind: "Secret", name: "tls-a", namespace: "azureml" }, reason: "Renewed", message: "core", type: "Normal", firstTimestamp: new Date(), lastTimestamp: new Date(), count: 1 },
    });
    const eventsApi = kc.makeApiClient(EventsV1Api);
    const { V1MicroTime } = await import("@kubernetes/client-node");
    await eventsApi.createNamespacedEvent({
      namespace: "azureml",
      body: { metadata: { name: "tls-a.2" }, eventTime: new V1MicroTime(), regarding: { kind: "Secret", name: "tls-a", namespace: "azureml" }, reason: "Renewed", note: "events.k8s.io", type: "Normal", action: "Renew", reportingController: "amlcert", reportingInstance: "amlcert-0" },
    });
    const listed = kube.listEvents("azureml").filter((e) => (e.involvedObject as { name?: string }).name === "tls-a");
    expect(listed.map((e) => e.message).sort()).toEqual(["core", "events.k8s.io"]);
    const printed = await kubectl(admin, ["get", "events", "-n", "azureml", "--field-selector", "involvedObject.name=tls-a", "-o", "jsonpath={.items[*].reason}"]);
    expect(printed.stdout).toBe("Renewed Renewed");
    const mismatched = await core
      .createNamespacedEvent({ namespace: "azureml", body: { metadata: { name: "x.1" }, involvedObject: { kind: "Secret", name: "x", namespace: "default" }, reason: "R", message: "m" } })
      .then(() => undefined, (e: unknown) => e);
    expect(JSON.parse((mismatched as ApiException<string>).body).message).toContain("involvedObject.namespace");
  });

  it("when a Lease time has millisecond precision, the server refuses it as the real API server's MicroTime parser does", async () => {
    const coordination = apiClient(kube.adminToken).makeApiClient(CoordinationV1Api);
    const plainDate = await coordination
      .createNamespacedLease({ namespace: "azureml", body: { metadata: { name: "ms-lease" }, spec: { holderIdentity: "a", renewTime: new Date() } } })
      .then(() => undefined, (e: unknown) => e);
    expect((plainDate as ApiException<string>).code).toBe(400);
    expect(JSON.parse((plainDate as ApiException<string>).body).message).toContain('as "2006-01-02T15:04:05.000000Z07:00"');
    const { V1MicroTime } = await import("@kubernetes/client-node");
    const ok = await coordination.createNamespacedLease({ namespace: "azureml", body: { metadata: { name: "ms-lease" }, spec: { holderIdentity: "a", renewTime: new V1MicroTime() } } });
    expect(String(ok.spec?.renewTime)).toMatch(/\.\d{6}Z$/);
  });

  it("when a client watches secrets, it receives the change events the store makes", async () => {
    const events: { type: string; name: string }[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const req = request(
        `${kube.url}/api/v1/namespaces/azureml/secrets?watch=true&timeoutSeconds=10&resourceVersion=${kube.store.resourceVersion}`,
        { ca: pki.caPem, headers: { Authorization: `Bearer ${kube.adminToken}` } },
        (res) => {
          let buf = "";
          res.on("data", (chunk: Buffer) => {
            buf += chunk.toString();
            let nl: number;
            while ((nl = buf.indexOf("\n")) >= 0) {
              const ev = JSON.parse(buf.slice(0, nl));
              buf = buf.slice(nl + 1);
              events.push({ type: ev.type, name: ev.object.metadata.name });
              if (events.length === 1) {
                // the first event has come, so the server is subscribed: these two travel as live events
                kube.putSecret("azureml", "watched", { a: "2" });
                kube.deleteObject("v1", "Secret", "azureml", "watched");
              }
              if (events.length === 3) {
                req.destroy();
                resolve();
              }
            }
          });
          res.on("end", () => resolve());
        },
      );
      req.on("error", (e) => (events.length === 3 ? resolve() : reject(e)));
      req.end();
      // made after the resourceVersion in the URL was read: the watch delivers it whether it starts before or after
      kube.putSecret("azureml", "watched", { a: "1" });
    });
    await done;
    expect(events).toEqual([
      { type: "ADDED", name: "watched" },
      { type: "MODIFIED", name: "watched" },
      { type: "DELETED", name: "watched" },
    ]);
  });

  it("when the amlcert ServiceAccount tries to watch secrets, RBAC refuses it", async () => {
    const r = await kubectl(sa, ["get", "secrets", "-n", "azureml", "--watch-only", "--request-timeout", "5s"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`User "${SA_USER}" cannot watch resource "secrets" in API group "" in the namespace "azureml"`);
  });
});
