/**
 * End to end, a Kubernetes TLS secret as the target's source, in cert-manager's layout (type kubernetes.io/tls,
 * `tls.crt` the leaf then the chain, `tls.key` PKCS#1 or PKCS#8), in another namespace of the same cluster. The
 * Kubernetes stand-in enforces RBAC: the shipped Role plus the one extra rule the README names (`get` on that one
 * secret, by name, in its namespace).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { startHarness, type CliRun, type Harness, resultLine } from "../harness/harness.js";
import { makeTestCa, type TestIssuer } from "../support/certs.js";
import { makeSourceLeaf, type SourceLeaf, validDays as valid } from "../support/source-certs.js";

const FQDN = "ml.contoso.test";
const NAMESPACE = "web-certs";
const SOURCE = "ml-contoso-tls";

const result = (run: CliRun) => resultLine(run, FQDN);
const errorMessage = (run: CliRun) => String((result(run).error as { message?: string } | undefined)?.message ?? "");

describe("a Kubernetes TLS secret as the source", () => {
  let h: Harness;
  let intermediate: TestIssuer;
  let config: string;

  beforeAll(async () => {
    h = await startHarness();
    const ca = await makeTestCa("amlcert tls e2e");
    intermediate = ca.intermediate;
    const trustBundle = join(h.dir, "tls-trust.pem");
    writeFileSync(trustBundle, ca.root.pem + readFileSync(h.pebbleRootsFile, "utf8"));
    const path = h.writeConfig({ verify: { trustBundleFile: trustBundle } }, "tls.yaml");
    const cfg = parseYaml(readFileSync(path, "utf8")) as { targets: Record<string, unknown>[] };
    cfg.targets[0]!.source = { kubernetesTls: { namespace: NAMESPACE, secretName: SOURCE } };
    writeFileSync(path, stringify(cfg));
    config = path;
    const kube = h.clusters[0]!.kube;
    kube.putObject({ apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } });
    // the one extra permission a TLS source needs: get on that one secret, by name, in its namespace
    kube.putObject({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { namespace: NAMESPACE, name: "amlcert-tls-source" },
      rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: [SOURCE] }],
    });
    kube.putObject({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { namespace: NAMESPACE, name: "amlcert-tls-source" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "amlcert-tls-source" },
      subjects: [{ kind: "ServiceAccount", name: "amlcert", namespace: "azureml" }],
    });
  });
  beforeEach(async () => {
    await h.reset();
    h.clusters[0]!.kube.deleteObject("v1", "Secret", NAMESPACE, SOURCE);
  });
  afterAll(async () => {
    await h?.stop();
  });

  const leaf = (keyType: "rsa" | "ec", fromDays = -1, toDays = 89) => makeSourceLeaf(intermediate, { names: [FQDN], ...valid(fromDays, toDays), keyType });
  /** cert-manager's layout: tls.crt leaf then chain, tls.key as it generated it, plus ca.crt */
  const putSource = (l: SourceLeaf, keyPem: string, crt = l.leafPem + l.intermediatePem) =>
    h.clusters[0]!.kube.putSecret(NAMESPACE, SOURCE, { "tls.crt": crt, "tls.key": keyPem, "ca.crt": "" }, { type: "kubernetes.io/tls", annotations: { "cert-manager.io/certificate-name": "ml-contoso" } });
  const renew = () => h.runCli(["renew", "--config", config]);
  const served = () => h.clusters[0]!.fe.servedSerial();
  const secretWrites = (mark: number) => h.clusters[0]!.kube.requests.slice(mark).filter((r) => r.method !== "GET" && r.path.includes("/secrets"));

  it("when the secret holds tls.crt with the chain and a PKCS#1 tls.key, it is rolled out as PKCS#8 and served; a changed secret is rolled out on the next run", async () => {
    const first = await leaf("rsa");
    putSource(first, first.traditionalKeyPem);
    const run = await renew();
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", reason: "SecretMissing", serial: first.serial, servingOk: true });
    expect(served()).toBe(first.serial);
    const stored = h.clusters[0]!.kube.getSecret("azureml", String(result(run).secret))!;
    expect(stored["key.pem"]!.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    expect((stored["cert.pem"]!.match(/BEGIN CERTIFICATE/g) ?? []).length).toBe(2);

    const mark = h.clusters[0]!.kube.requests.length;
    const same = await renew();
    expect(same.code, same.stderr).toBe(0);
    expect(result(same)).toMatchObject({ action: "none", reason: "UpToDate" });
    expect(secretWrites(mark)).toEqual([]);

    // cert-manager renewed: a new certificate and key in the same secret (PKCS#8 now)
    const renewed = await leaf("rsa", -1, 120);
    putSource(renewed, renewed.keyPem);
    const next = await renew();
    expect(next.code, next.stderr).toBe(0);
    expect(result(next)).toMatchObject({ action: "renewed", reason: "SourceUpdated", serial: renewed.serial, servingOk: true });
    expect(served()).toBe(renewed.serial);
    expect(next.stderr).toContain(`kubernetesTls ${NAMESPACE}/${SOURCE} holds a newer certificate`);
  });

  it("when the secret holds an ECDSA key in PKCS#8 and tls.crt with the intermediate first, it is rolled out leaf first and served", async () => {
    const l = await leaf("ec");
    putSource(l, l.keyPem, l.intermediatePem + l.leafPem);
    const run = await renew();
    expect(run.code, run.stderr).toBe(0);
    expect(served()).toBe(l.serial);
    const certPem = h.clusters[0]!.kube.getSecret("azureml", String(result(run).secret))!["cert.pem"]!;
    expect(new X509Certificate(certPem).serialNumber.toUpperCase()).toBe(l.serial);
  });

  it("when amlcert may not get the source secret (no Role in its namespace), the run fails KUBE_FORBIDDEN naming the secret's namespace, and nothing is written", async () => {
    const kube = h.clusters[0]!.kube;
    const l = await leaf("rsa");
    putSource(l, l.keyPem);
    const binding = kube.store.all("rolebindings", NAMESPACE).find((b) => b.metadata.name === "amlcert-tls-source")!;
    kube.deleteObject("rbac.authorization.k8s.io/v1", "RoleBinding", NAMESPACE, "amlcert-tls-source");
    try {
      const mark = kube.requests.length;
      const run = await renew();
      expect(run.code).toBe(3);
      expect(result(run).error).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "preflight" });
      expect(errorMessage(run)).toContain(SOURCE);
      expect(errorMessage(run)).toContain(NAMESPACE);
      expect(secretWrites(mark)).toEqual([]);
    } finally {
      kube.putObject({ ...binding, apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding" });
    }
  });

  it("when the source secret is missing, the run fails naming it, and nothing is written", async () => {
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew();
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "KUBE_NOT_FOUND", stage: "preflight" });
    expect(errorMessage(run)).toBe(`source secret ${NAMESPACE}/${SOURCE} (source.kubernetesTls) does not exist; create it (cert-manager's Certificate spec.secretName) or fix namespace/secretName`);
    expect(secretWrites(mark)).toEqual([]);
  });

  it("when the source secret's tls.key is not a key, the run fails naming the secret, and nothing is written", async () => {
    const l = await leaf("rsa");
    putSource(l, "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n");
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew();
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "CERT_INVALID" });
    expect(errorMessage(run)).toBe(`source secret ${NAMESPACE}/${SOURCE} tls.key is not a parsable PEM private key (PKCS#1, SEC1 or PKCS#8)`);
    expect(secretWrites(mark)).toEqual([]);
  });

  it("when the source secret's tls.crt is garbage, the run fails naming the secret, and nothing is written", async () => {
    const l = await leaf("rsa");
    putSource(l, l.keyPem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew();
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "CERT_INVALID" });
    expect(errorMessage(run)).toBe(`source secret ${NAMESPACE}/${SOURCE} tls.crt: certificate #1 is not a valid X.509 certificate`);
    expect(secretWrites(mark)).toEqual([]);
  });
});
