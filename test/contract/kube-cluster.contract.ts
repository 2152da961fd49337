/**
 * The KubeCluster port (src/ports.ts) as the Kubernetes API server shows it, for one namespace: secrets (read, create,
 * replace with optimistic concurrency, list by label, delete), azureml-fe's load balancer ingress, and Events that are
 * best effort. The in-process fake (FakeKube) and the real adapter (kube-cluster.ts on the API server stand-in, as the
 * amlcert ServiceAccount under test/fixtures/rbac-adapters.yaml) must both pass it.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { KubeCluster, SecretWrite } from "../../src/ports.js";

export interface KubeSubject {
  /** the port under test, for namespace azureml with no secrets and an azureml-fe LoadBalancer service */
  kube: KubeCluster;
  /** another writer (kubectl, a person) creates or overwrites a secret, beside the port */
  putSecret(name: string, data: Record<string, string>, opts?: { type?: string; labels?: Record<string, string>; annotations?: Record<string, string> }): void;
  /** a secret's data as the cluster holds it (text); undefined when it does not exist */
  secretData(name: string): Record<string, string> | undefined;
  /** azureml-fe is (re)created with this load balancer ingress, or deleted (undefined) */
  setFrontEnd(ingress: { ips: string[]; hostnames: string[] } | undefined): void;
  /** the Events recorded about `secretName` (type, reason, message) */
  eventsAbout(secretName: string): { type: string; reason: string; message: string }[];
  /** the API server refuses the next Event */
  failNextEvent(): void;
}

const text = (data: Record<string, Buffer>) => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString("utf8")]));

function versionWrite(name: string, cert: string, labels: Record<string, string> = {}, extra: Partial<SecretWrite> = {}): SecretWrite {
  return {
    name,
    data: { "cert.pem": Buffer.from(cert), "key.pem": Buffer.from(`KEY-${cert}`) },
    labels: { "app.kubernetes.io/managed-by": "amlcert", ...labels },
    annotations: { "amlcert.io/fqdn": "ml.contoso.test" },
    ...extra,
  };
}

export function describeContract(name: string, makeSubject: () => Promise<KubeSubject>): void {
  describe(`KubeCluster contract: ${name}`, () => {
    let s: KubeSubject;
    beforeEach(async () => {
      s = await makeSubject();
    });

    it("getSecret of a secret that does not exist is undefined", async () => {
      expect(await s.kube.getSecret("tls-absent")).toBeUndefined();
    });

    it("when the secret does not exist, writeSecret creates an Opaque secret with the data, labels and annotations given", async () => {
      const stored = await s.kube.writeSecret(versionWrite("tls-new", "CHAIN"));
      expect(stored).toMatchObject({ name: "tls-new", type: "Opaque", labels: { "app.kubernetes.io/managed-by": "amlcert" }, annotations: { "amlcert.io/fqdn": "ml.contoso.test" } });
      expect(text(stored.data)).toEqual({ "cert.pem": "CHAIN", "key.pem": "KEY-CHAIN" });
      expect(stored.resourceVersion).toMatch(/^\d+$/);
      expect(s.secretData("tls-new")).toEqual({ "cert.pem": "CHAIN", "key.pem": "KEY-CHAIN" });
      const read = await s.kube.getSecret("tls-new");
      expect(read).toMatchObject({ name: "tls-new", type: "Opaque", resourceVersion: stored.resourceVersion });
      expect(text(read!.data)).toEqual({ "cert.pem": "CHAIN", "key.pem": "KEY-CHAIN" });
      expect(read!.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT/);
    });

    it("when the secret exists, writeSecret replaces its data, keeps the labels and annotations others put on it (ours win) and moves its resourceVersion", async () => {
      s.putSecret("tls-existing", { "cert.pem": "OLD", "key.pem": "OLD", extra: "x" }, { labels: { team: "ml", "app.kubernetes.io/managed-by": "someone" }, annotations: { note: "keep" } });
      const before = (await s.kube.getSecret("tls-existing"))!;
      const stored = await s.kube.writeSecret(versionWrite("tls-existing", "NEW"));
      expect(stored.resourceVersion).not.toBe(before.resourceVersion);
      expect(s.secretData("tls-existing")).toEqual({ "cert.pem": "NEW", "key.pem": "KEY-NEW" });
      expect(stored.labels).toEqual({ team: "ml", "app.kubernetes.io/managed-by": "amlcert" });
      expect(stored.annotations).toEqual({ note: "keep", "amlcert.io/fqdn": "ml.contoso.test" });
      expect(stored.creationTimestamp).toBe(before.creationTimestamp);
    });

    it("with replaceMetadata, labels and annotations become exactly those given", async () => {
      s.putSecret("tls-restore", { "cert.pem": "NEW" }, { labels: { a: "1" }, annotations: { "amlcert.io/serial": "NEW" } });
      const stored = await s.kube.writeSecret({ name: "tls-restore", data: { "cert.pem": Buffer.from("OLD") }, labels: { team: "ml" }, annotations: {}, replaceMetadata: true });
      expect(stored.labels).toEqual({ team: "ml" });
      expect(stored.annotations).toEqual({});
      expect(s.secretData("tls-restore")).toEqual({ "cert.pem": "OLD" });
    });

    it("with the expected resourceVersion of the secret as it is, the write replaces it", async () => {
      s.putSecret("tls-fixed", { "cert.pem": "PLANNED" });
      const planned = (await s.kube.getSecret("tls-fixed"))!.resourceVersion!;
      await s.kube.writeSecret(versionWrite("tls-fixed", "NEW", {}, { expectedResourceVersion: planned }));
      expect(s.secretData("tls-fixed")!["cert.pem"]).toBe("NEW");
    });

    it("when the secret changed since the expected resourceVersion, the write fails with KUBE_CONFLICT at store and the other writer's change stays", async () => {
      s.putSecret("tls-fixed", { "cert.pem": "PLANNED" });
      const planned = (await s.kube.getSecret("tls-fixed"))!.resourceVersion!;
      s.putSecret("tls-fixed", { "cert.pem": "SOMEONE-ELSE" });
      const err = await s.kube.writeSecret(versionWrite("tls-fixed", "NEW", {}, { expectedResourceVersion: planned })).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "KUBE_CONFLICT", stage: "store" });
      expect(s.secretData("tls-fixed")).toEqual({ "cert.pem": "SOMEONE-ELSE" });
    });

    it('with expectedResourceVersion "" the write only creates: a missing secret is created, an existing one is a KUBE_CONFLICT and stays', async () => {
      await s.kube.writeSecret(versionWrite("tls-create-only", "FIRST", {}, { expectedResourceVersion: "" }));
      expect(s.secretData("tls-create-only")!["cert.pem"]).toBe("FIRST");
      const err = await s.kube.writeSecret(versionWrite("tls-create-only", "SECOND", {}, { expectedResourceVersion: "" })).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: "KUBE_CONFLICT", stage: "store" });
      expect(s.secretData("tls-create-only")!["cert.pem"]).toBe("FIRST");
    });

    it("with an expected resourceVersion for a secret that does not exist (deleted since), the write fails with KUBE_CONFLICT and creates nothing", async () => {
      const err = await s.kube.writeSecret(versionWrite("tls-gone", "NEW", {}, { expectedResourceVersion: "12345" })).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: "KUBE_CONFLICT", stage: "store" });
      expect(s.secretData("tls-gone")).toBeUndefined();
    });

    it("when a secret of another type than Opaque has the name, the write fails with KUBE_ERROR and leaves it alone", async () => {
      s.putSecret("tls-kubernetes", { "tls.crt": "C", "tls.key": "K" }, { type: "kubernetes.io/tls" });
      const err = await s.kube.writeSecret(versionWrite("tls-kubernetes", "NEW")).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: "KUBE_ERROR", stage: "store" });
      expect((err as Error).message).toContain("kubernetes.io/tls");
      expect(s.secretData("tls-kubernetes")).toEqual({ "tls.crt": "C", "tls.key": "K" });
    });

    it("listSecrets returns the secrets every term of the selector matches (=, != and existence), with their data", async () => {
      await s.kube.writeSecret(versionWrite("web-v1", "1", { "amlcert.io/secret-base": "web" }));
      await s.kube.writeSecret(versionWrite("web-v2", "2", { "amlcert.io/secret-base": "web", pinned: "yes" }));
      await s.kube.writeSecret(versionWrite("api-v1", "3", { "amlcert.io/secret-base": "api" }));
      s.putSecret("web-manual", { a: "b" }, { labels: { "amlcert.io/secret-base": "web" } });
      const names = async (selector: string) => (await s.kube.listSecrets(selector)).map((x) => x.name).sort();
      expect(await names("app.kubernetes.io/managed-by=amlcert,amlcert.io/secret-base=web")).toEqual(["web-v1", "web-v2"]);
      expect(await names("amlcert.io/secret-base=web,pinned")).toEqual(["web-v2"]);
      expect(await names("amlcert.io/secret-base!=web,app.kubernetes.io/managed-by=amlcert")).toEqual(["api-v1"]);
      expect(await names("amlcert.io/secret-base=nothing")).toEqual([]);
      const v2 = (await s.kube.listSecrets("amlcert.io/secret-base=web,pinned=yes"))[0]!;
      expect(text(v2.data)).toEqual({ "cert.pem": "2", "key.pem": "KEY-2" });
      expect(v2.annotations).toEqual({ "amlcert.io/fqdn": "ml.contoso.test" });
    });

    it("deleteSecret removes the secret; deleting one that is already gone is not an error", async () => {
      await s.kube.writeSecret(versionWrite("tls-old", "OLD"));
      await s.kube.deleteSecret("tls-old");
      expect(s.secretData("tls-old")).toBeUndefined();
      expect(await s.kube.getSecret("tls-old")).toBeUndefined();
      await expect(s.kube.deleteSecret("tls-old")).resolves.toBeUndefined();
    });

    it("getServiceIngress returns azureml-fe's type, load balancer IPs and host names and its cluster IP; undefined once it is gone", async () => {
      s.setFrontEnd({ ips: ["20.1.2.3"], hostnames: ["fe.example.net"] });
      const ingress = await s.kube.getServiceIngress("azureml-fe");
      expect(ingress).toMatchObject({ type: "LoadBalancer", ips: ["20.1.2.3"], hostnames: ["fe.example.net"] });
      expect(ingress?.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      s.setFrontEnd(undefined);
      expect(await s.kube.getServiceIngress("azureml-fe")).toBeUndefined();
    });

    it("recordEvent records an Event about the secret with its type, reason and message", async () => {
      await s.kube.writeSecret(versionWrite("tls-evented", "E"));
      await s.kube.recordEvent({ secretName: "tls-evented", type: "Normal", reason: "Renewed", message: "renewed ml.contoso.test" });
      await s.kube.recordEvent({ secretName: "tls-evented", type: "Warning", reason: "VerificationFailed", message: "old certificate still served" });
      expect(s.eventsAbout("tls-evented").sort((a, b) => a.reason.localeCompare(b.reason))).toEqual([
        { type: "Normal", reason: "Renewed", message: "renewed ml.contoso.test" },
        { type: "Warning", reason: "VerificationFailed", message: "old certificate still served" },
      ]);
    });

    it("when the API server refuses an Event, recordEvent still resolves (best effort: it never throws)", async () => {
      s.failNextEvent();
      await expect(s.kube.recordEvent({ secretName: "tls-x", type: "Warning", reason: "RenewalFailed", message: "m" })).resolves.toBeUndefined();
      expect(s.eventsAbout("tls-x")).toEqual([]);
    });
  });
}
