/**
 * End to end, a Key Vault certificate as the target's source: the built CLI as a child process, the Key Vault
 * stand-in reached through the real Key Vault SDKs with the harness's workload identity (the SDK's
 * challenge-resource check on: the vault is https://amlcert-kv.vault.localhost:<port>, names under localhost
 * resolve to loopback in the child through NODE_OPTIONS=--import localhost-names.js), the Kubernetes stand-in with
 * the shipped RBAC, the extension at ARM and azureml-fe serving what the extension names.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { OBJECT_ID, startHarness, type CliRun, type Harness, resultLine } from "../harness/harness.js";
import { startKeyVaultServer, VAULT_DNS_SUFFIX, type KeyVaultServer } from "../servers/keyvault-server.js";
import { LOCALHOST_NAMES_MODULE } from "../servers/localhost-names.js";
import { makeTestCa, type TestIssuer } from "../support/certs.js";
import { derOf, makeSourceLeaf, type SourceLeaf, type SourceLeafOptions, validDays as valid } from "../support/source-certs.js";

const FQDN = "ml.contoso.test";
const CERT = "ml-contoso";

const result = (run: CliRun) => resultLine(run, FQDN);

describe("a Key Vault certificate as the source", () => {
  let h: Harness;
  let kv: KeyVaultServer;
  let aia: Server;
  let aiaUrl: string;
  let aiaHits = 0;
  let intermediate: TestIssuer;
  let trustBundle: string;

  beforeAll(async () => {
    h = await startHarness();
    kv = await startKeyVaultServer({ pki: h.pki, entra: h.entra });
    const ca = await makeTestCa("amlcert kv e2e");
    intermediate = ca.intermediate;
    // azureml-fe's certificate chains to this test CA: the TLS check trusts its root (and Pebble's, as the harness does)
    trustBundle = join(h.dir, "kv-trust.pem");
    writeFileSync(trustBundle, ca.root.pem + readFileSync(h.pebbleRootsFile, "utf8"));
    aia = createServer((req, res) => {
      aiaHits += 1;
      if (req.url !== "/intermediate.cer") return void res.writeHead(404).end();
      const body = derOf(intermediate.pem);
      res.writeHead(200, { "content-type": "application/pkix-cert", "content-length": body.length }).end(body);
    });
    await new Promise<void>((resolve) => aia.listen(0, "127.0.0.1", resolve));
    aiaUrl = `http://127.0.0.1:${(aia.address() as AddressInfo).port}/intermediate.cer`;
  });
  beforeEach(async () => {
    await h.reset();
    kv.reset();
    // least privilege: metadata of the one certificate, the value of its one secret
    kv.assign({ principalId: OBJECT_ID, role: "Key Vault Reader", scope: `certificates/${CERT}` });
    kv.assign({ principalId: OBJECT_ID, role: "Key Vault Secrets User", scope: `secrets/${CERT}` });
    aiaHits = 0;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (aia ? aia.close(() => resolve()) : resolve()));
    await kv?.close();
    await h?.stop();
  });

  /** the harness's config with the target's source set to the Key Vault certificate */
  function configWith(keyVault: Record<string, unknown> = {}, name = "kv.yaml"): string {
    const path = h.writeConfig({ azure: { keyVaultDnsSuffix: VAULT_DNS_SUFFIX }, verify: { trustBundleFile: trustBundle } }, name);
    const cfg = parseYaml(readFileSync(path, "utf8")) as { targets: Record<string, unknown>[] };
    cfg.targets[0]!.source = { keyVault: { vaultUrl: kv.url, certificateName: CERT, ...keyVault } };
    writeFileSync(path, stringify(cfg));
    return path;
  }
  const env = () => ({ NODE_OPTIONS: `--import ${LOCALHOST_NAMES_MODULE}` });
  const renew = (config: string) => h.runCli(["renew", "--config", config], { env: env() });
  const leaf = (o: Partial<SourceLeafOptions> & Pick<SourceLeafOptions, "notBefore" | "notAfter">) => makeSourceLeaf(intermediate, { names: [FQDN], ...o });
  const extension = () => h.arm.getExtension(h.clusters[0]!.extension)!;
  const served = () => h.clusters[0]!.fe.servedSerial();
  /** writes to secrets in azureml since `mark` (a refused certificate must leave none) */
  const secretWrites = (mark: number) => h.clusters[0]!.kube.requests.slice(mark).filter((r) => r.method !== "GET" && r.path.includes("/secrets"));
  const putPkcs12 = (l: SourceLeaf, o: { chain?: boolean; exportable?: boolean } = {}) =>
    kv.putCertificate(CERT, { certsPem: l.leafPem + (o.chain === false ? "" : l.intermediatePem), keyPem: l.keyPem, contentType: "application/x-pkcs12", exportable: o.exportable });

  it("when Key Vault holds a PKCS#12 certificate, it is rolled out and served; a second run with no new version changes nothing; a new version is rolled out on the next run", async () => {
    const config = configWith();
    const v1 = await leaf({ ...valid(-1, 89), keyType: "rsa" });
    await putPkcs12(v1);
    const first = await renew(config);
    expect(first.code, first.stderr).toBe(0);
    expect(result(first)).toMatchObject({ action: "renewed", reason: "SecretMissing", serial: v1.serial, servingOk: true });
    expect(served()).toBe(v1.serial);
    const secret = String(result(first).secret);
    const stored = h.clusters[0]!.kube.getSecret("azureml", secret)!;
    expect(stored["key.pem"]!.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    expect((stored["cert.pem"]!.match(/BEGIN CERTIFICATE/g) ?? []).length).toBe(2);

    const mark = h.clusters[0]!.kube.requests.length;
    const armMark = h.arm.requests.length;
    const kvMark = kv.requests.length;
    const second = await renew(config);
    expect(second.code, second.stderr).toBe(0);
    expect(result(second)).toMatchObject({ action: "none", reason: "UpToDate", serial: v1.serial });
    expect(secretWrites(mark)).toEqual([]);
    expect(h.arm.requests.slice(armMark).filter((r) => r.method !== "GET")).toEqual([]);
    // nothing new: only the certificate object was read, not the secret with the key
    expect(kv.requests.slice(kvMark).filter((r) => r.status === 200).map((r) => r.path)).toEqual([`/certificates/${CERT}/`]);

    const v2 = await leaf({ ...valid(-1, 120), keyType: "rsa" });
    const version2 = await putPkcs12(v2);
    const third = await renew(config);
    expect(third.code, third.stderr).toBe(0);
    expect(result(third)).toMatchObject({ action: "renewed", reason: "SourceUpdated", serial: v2.serial, servingOk: true });
    expect(served()).toBe(v2.serial);
    expect(third.stderr).toContain(`holds a newer certificate (version ${version2}`);
  });

  it("when Key Vault holds PEM with the chain in another order and an EC key, it is rolled out leaf first and served", async () => {
    const config = configWith();
    const l = await leaf({ ...valid(-1, 89), keyType: "ec" });
    await kv.putCertificate(CERT, { certsPem: l.leafPem + l.intermediatePem, keyPem: l.keyPem, contentType: "application/x-pem-file", pemValue: l.intermediatePem + l.traditionalKeyPem + l.leafPem });
    const run = await renew(config);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", serial: l.serial, servingOk: true });
    expect(served()).toBe(l.serial);
    const certPem = h.clusters[0]!.kube.getSecret("azureml", String(result(run).secret))!["cert.pem"]!;
    expect(new X509Certificate(certPem).serialNumber.toUpperCase()).toBe(l.serial);
  });

  it("when the certificate's key is not exportable, the run fails naming the certificate and the policy setting, and nothing is written", async () => {
    const config = configWith();
    await putPkcs12(await leaf({ ...valid(-1, 89), keyType: "rsa" }), { exportable: false });
    const mark = h.clusters[0]!.kube.requests.length;
    const before = extension().configurationSettings.sslSecret;
    const run = await renew(config);
    expect(run.code).toBe(3);
    const r = result(run);
    expect(r.action).toBe("failed");
    expect(r.error).toMatchObject({ code: "CERT_INVALID" });
    expect(String((r.error as { message: string }).message)).toContain(`certificate ${CERT} in ${kv.url}`);
    expect(String((r.error as { message: string }).message)).toContain("keyProperties.exportable");
    expect(secretWrites(mark)).toEqual([]);
    expect(extension().configurationSettings.sslSecret).toBe(before);
  });

  it("when Key Vault holds only the leaf, the run is refused saying how to complete the chain, and nothing is written", async () => {
    const config = configWith();
    await putPkcs12(await leaf({ ...valid(-1, 89), keyType: "rsa", caIssuersUrl: aiaUrl }), { chain: false });
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew(config);
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "CERT_INVALID" });
    expect(String((result(run).error as { message: string }).message)).toContain("set source.keyVault.fetchIntermediates: true");
    expect(secretWrites(mark)).toEqual([]);
    expect(aiaHits).toBe(0);
  });

  it("when Key Vault holds only the leaf and fetchIntermediates is on, the intermediate comes from the leaf's AIA URL and the full chain is served", async () => {
    const config = configWith({ fetchIntermediates: true }, "kv-aia.yaml");
    const l = await leaf({ ...valid(-1, 89), keyType: "rsa", caIssuersUrl: aiaUrl });
    await putPkcs12(l, { chain: false });
    const run = await renew(config);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", serial: l.serial, servingOk: true });
    expect(aiaHits).toBe(1);
    const certPem = h.clusters[0]!.kube.getSecret("azureml", String(result(run).secret))!["cert.pem"]!;
    const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(blocks.map((b) => new X509Certificate(b).subject)).toEqual([`CN=${FQDN}`, "CN=amlcert kv e2e intermediate"]);
  });

  it("when Key Vault's certificate is for another name, it is refused and nothing is written", async () => {
    const config = configWith();
    await putPkcs12(await makeSourceLeaf(intermediate, { names: ["other.contoso.test"], ...valid(-1, 89), keyType: "rsa" }));
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew(config);
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "CERT_INVALID" });
    expect(String((result(run).error as { message: string }).message)).toContain(`does not cover ${FQDN}`);
    expect(secretWrites(mark)).toEqual([]);
  });

  it("when Key Vault's certificate has expired, it is refused and nothing is written", async () => {
    const config = configWith();
    await putPkcs12(await leaf({ ...valid(-100, -10), keyType: "rsa" }));
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew(config);
    expect(run.code).toBe(3);
    expect(result(run).error).toMatchObject({ code: "CERT_INVALID" });
    expect(String((result(run).error as { message: string }).message)).toContain("expired");
    expect(secretWrites(mark)).toEqual([]);
  });

  it("when the certificate in place is due and Key Vault has no newer version, the run succeeds with SourceNotRenewing and a warning, writing nothing", async () => {
    const config = configWith();
    const due = await leaf({ ...valid(-61, 29), keyType: "rsa" });
    await putPkcs12(due);
    expect((await renew(config)).code).toBe(0);
    const mark = h.clusters[0]!.kube.requests.length;
    const run = await renew(config);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "none", reason: "SourceNotRenewing", serial: due.serial });
    expect(run.stderr).toContain("the source is not renewing: keyVault");
    expect(secretWrites(mark)).toEqual([]);
  });

  it("plan names the Key Vault source in its reason", async () => {
    const config = configWith();
    const l = await leaf({ ...valid(-1, 89), keyType: "rsa" });
    await putPkcs12(l);
    expect((await renew(config)).code).toBe(0);
    const v2 = await leaf({ ...valid(-1, 150), keyType: "rsa" });
    const version = await putPkcs12(v2);
    const run = await h.runCli(["plan", "--config", config], { env: env() });
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renew", reason: "SourceUpdated" });
    expect(JSON.stringify(result(run))).toContain(`keyVault ${kv.url}/certificates/${CERT} holds a newer certificate (version ${version}`);
  });
});
