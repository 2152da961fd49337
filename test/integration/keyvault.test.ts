/**
 * The Key Vault adapter and the Key Vault certificate source against the loopback Key Vault stand-in, through the
 * real @azure/keyvault-certificates and @azure/keyvault-secrets and the real identity (workload identity on the
 * Entra stand-in). The SDK's challenge-resource check stays on: the stand-in is served at
 * https://amlcert-kv.vault.localhost:<port> and challenges with resource https://vault.localhost.
 */
import "../servers/localhost-names.js";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import { createKeyVault, type KeyVault } from "../../src/keyvault/key-vault.js";
import { createKeyVaultSource } from "../../src/sources/key-vault-source.js";
import { httpIssuerFetcher } from "../../src/sources/issuer-fetch.js";
import { readPemBundle, readPkcs12 } from "../../src/certs/convert.js";
import { validateNewPair } from "../../src/certs/certificate.js";
import { startKeyVaultServer, VAULT_RESOURCE, type KeyVaultServer } from "../servers/keyvault-server.js";
import { startAzureFixture, WI, type AzureFixture } from "./azure-fixture.js";
import { days, makeTestCa, type TestIssuer } from "../support/certs.js";
import { makeSourceLeaf, type SourceLeaf } from "../support/source-certs.js";

const NAMES = ["ml.contoso.test"];
const CERT = "ml-contoso";
let fx: AzureFixture;
let kv: KeyVaultServer;
let vault: KeyVault;
let intermediate: TestIssuer;
let rsa: SourceLeaf;
let ec: SourceLeaf;
const observed: string[] = [];

async function failure(p: Promise<unknown>): Promise<AmlcertError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AmlcertError) return err;
    throw err;
  }
  throw new Error("expected an AmlcertError");
}

beforeAll(async () => {
  fx = await startAzureFixture();
  kv = await startKeyVaultServer({ pki: fx.pki, entra: fx.entra });
  ({ intermediate } = await makeTestCa("kv"));
  const now = Date.now();
  rsa = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(90)), keyType: "rsa" });
  ec = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(120)), keyType: "ec" });
  vault = createKeyVault({ vaultUrl: kv.url, credential: fx.credential(fx.wiEnv).credential, requests: (system, status) => observed.push(`${system} ${status}`) });
});

afterAll(async () => {
  await kv?.close();
  await fx?.close();
});

beforeEach(() => {
  kv.reset();
  observed.length = 0;
});

/** least privilege: Key Vault Reader on the certificate, Key Vault Secrets User on its secret */
const grantLeastPrivilege = () => {
  kv.assign({ principalId: WI.objectId, role: "Key Vault Reader", scope: `certificates/${CERT}` });
  kv.assign({ principalId: WI.objectId, role: "Key Vault Secrets User", scope: `secrets/${CERT}` });
};

describe("Key Vault adapter", () => {
  it("when the identity holds the least-privilege roles, the certificate's current version is read after the 401 bearer challenge, with a token for the vault resource", async () => {
    grantLeastPrivilege();
    const version = await kv.putCertificate(CERT, { certsPem: rsa.leafPem + rsa.intermediatePem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const mark = kv.requests.length;
    const tokenMark = fx.entra.tokenRequests.length;
    const c = await vault.getCertificate(CERT);
    expect(c.version).toBe(version);
    expect(c.secretName).toBe(CERT);
    expect(c.secretVersion).toBe(version);
    expect(c.exportable).toBe(true);
    expect(c.contentType).toBe("application/x-pkcs12");
    expect(new X509Certificate(c.cer).serialNumber.toUpperCase()).toBe(rsa.serial);
    // the SDK sends the request without a token first; Key Vault challenges; then with the token
    expect(kv.requests.slice(mark).map((r) => [r.path, r.status, r.authenticated])).toEqual([
      [`/certificates/${CERT}/`, 401, false],
      [`/certificates/${CERT}/`, 200, true],
    ]);
    expect(fx.entra.tokenRequests.slice(tokenMark).map((t) => [t.scope, t.status])).toEqual([[`${VAULT_RESOURCE}/.default`, 200]]);
    expect(observed).toEqual(["keyvault 401", "keyvault 200"]);
  });

  it("when the certificate has two versions, the current is the newest, and a pinned version and its secret are read as asked", async () => {
    grantLeastPrivilege();
    const v1 = await kv.putCertificate(CERT, { certsPem: rsa.leafPem + rsa.intermediatePem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const v2 = await kv.putCertificate(CERT, { certsPem: ec.leafPem + ec.intermediatePem, keyPem: ec.keyPem, contentType: "application/x-pem-file" });
    expect((await vault.getCertificate(CERT)).version).toBe(v2);
    const pinned = await vault.getCertificate(CERT, v1);
    expect(pinned.version).toBe(v1);
    expect(new X509Certificate(pinned.cer).serialNumber.toUpperCase()).toBe(rsa.serial);
    const s1 = await vault.getSecret(CERT, v1);
    expect(s1.contentType).toBe("application/x-pkcs12");
    expect((await readPkcs12(Buffer.from(s1.value, "base64"))).certificates).toHaveLength(2);
    const s2 = await vault.getSecret(CERT, v2);
    expect(s2.contentType).toBe("application/x-pem-file");
    expect(readPemBundle(s2.value).certificates).toHaveLength(2);
  });

  it("when the identity has no role on the secret, reading it is AZURE_FORBIDDEN naming the action and the role to assign", async () => {
    kv.assign({ principalId: WI.objectId, role: "Key Vault Reader", scope: `certificates/${CERT}` });
    const version = await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const err = await failure(vault.getSecret(CERT, version));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.details.status).toBe(403);
    expect(err.message).toBe(
      `Key Vault ${kv.url} refused reading secret ${CERT} version ${version} (the certificate's key) (403 Forbidden, action Microsoft.KeyVault/vaults/secrets/getSecret/action): ` +
        `Caller is not authorized to perform action on resource. Assign the identity amlcert uses "Key Vault Secrets User" (Microsoft.KeyVault/vaults/secrets/getSecret/action) on the secret (${kv.url}/secrets/${CERT}) or the vault`,
    );
  });

  it("when the identity has only Key Vault Secrets User, reading the certificate's metadata is AZURE_FORBIDDEN naming Key Vault Reader", async () => {
    kv.assign({ principalId: WI.objectId, role: "Key Vault Secrets User", scope: "vault" });
    await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const err = await failure(vault.getCertificate(CERT));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toContain("action Microsoft.KeyVault/vaults/certificates/read");
    expect(err.message).toContain(`"Key Vault Reader" (Microsoft.KeyVault/vaults/certificates/read) on the certificate (${kv.url}/certificates/${CERT}) or the vault`);
  });

  it("when the certificate or the version does not exist, it is AZURE_NOT_FOUND naming it", async () => {
    grantLeastPrivilege();
    const missing = await failure(vault.getCertificate(CERT));
    expect(missing.code).toBe("AZURE_NOT_FOUND");
    expect(missing.message).toBe(`Key Vault ${kv.url} has no certificate ${CERT} (404 CertificateNotFound)`);
    await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const version = "0123456789abcdef0123456789abcdef";
    expect((await failure(vault.getCertificate(CERT, version))).message).toBe(`Key Vault ${kv.url} has no certificate ${CERT} version ${version} (404 CertificateNotFound)`);
    expect((await failure(vault.getSecret(CERT, version))).code).toBe("AZURE_NOT_FOUND");
  });

  it("when Key Vault throttles with Retry-After 0, the SDK retries and the read succeeds; with a Retry-After over 60 s, it ends at once as AZURE_THROTTLED", async () => {
    grantLeastPrivilege();
    const version = await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    await vault.getCertificate(CERT); // past the challenge
    let mark = kv.requests.length;
    kv.throttle({ retryAfterSeconds: 0 });
    expect((await vault.getCertificate(CERT)).version).toBe(version);
    expect(kv.requests.slice(mark).map((r) => r.status)).toEqual([429, 200]);
    mark = kv.requests.length;
    observed.length = 0;
    kv.throttle({ retryAfterSeconds: 3600 });
    const err = await failure(vault.getCertificate(CERT));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(err.message).toBe(`reading certificate ${CERT}: Key Vault answered 429 and asked to retry after 3600 s, longer than the 60 s a run waits`);
    expect(err.details).toMatchObject({ status: 429, retryAfterMs: 3_600_000 });
    expect(kv.requests.slice(mark).map((r) => r.status)).toEqual([429]);
    expect(observed).toEqual(["keyvault 429"]);
  });

  it("when the challenge names a resource the vault's host is not under, the SDK's check refuses to send a token and no token is asked for", async () => {
    grantLeastPrivilege();
    await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    kv.challengeResource = "https://vault.azure.net";
    // a fresh client: the one above cached the earlier challenge
    const fresh = createKeyVault({ vaultUrl: kv.url, credential: fx.credential(fx.wiEnv).credential });
    const tokenMark = fx.entra.tokenRequests.length;
    const mark = kv.requests.length;
    const err = await failure(fresh.getCertificate(CERT));
    expect(err.code).toBe("AZURE_ERROR");
    expect(err.message).toContain("The challenge resource 'vault.azure.net' does not match the requested domain");
    expect(fx.entra.tokenRequests.slice(tokenMark)).toEqual([]);
    expect(kv.requests.slice(mark).map((r) => [r.status, r.authenticated])).toEqual([[401, false]]);
  });
});

describe("Key Vault certificate source", () => {
  const source = (o: { version?: string; fetchIntermediates?: boolean } = {}) =>
    createKeyVaultSource({ vault, certificateName: CERT, version: o.version, fetchIntermediates: o.fetchIntermediates ?? false, fetchIssuer: httpIssuerFetcher(5_000) });

  it("when the secret is PKCS#12 with the chain, obtain gives a PKCS#8 key and the chain leaf first, which passes the new-pair validation", async () => {
    grantLeastPrivilege();
    await kv.putCertificate(CERT, { certsPem: rsa.leafPem + rsa.intermediatePem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const { chainPem, keyPem } = await source().obtain({ names: NAMES });
    expect(keyPem.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    const validation = validateNewPair(chainPem, keyPem, NAMES, new Date());
    expect(validation.problems).toEqual([]);
    expect(validation.leaf!.serialNumber).toBe(rsa.serial);
  });

  it("when the secret is PEM with the intermediate before the leaf and the key last, obtain orders it leaf first", async () => {
    grantLeastPrivilege();
    await kv.putCertificate(CERT, { certsPem: ec.leafPem + ec.intermediatePem, keyPem: ec.keyPem, contentType: "application/x-pem-file", pemValue: ec.intermediatePem + ec.leafPem + ec.traditionalKeyPem });
    const { chainPem, keyPem } = await source().obtain({ names: NAMES });
    expect(validateNewPair(chainPem, keyPem, NAMES, new Date()).problems).toEqual([]);
    expect(new X509Certificate(chainPem).serialNumber.toUpperCase()).toBe(ec.serial);
  });

  it("when offer is asked, it names the current version and the leaf, reading no secret", async () => {
    grantLeastPrivilege();
    const version = await kv.putCertificate(CERT, { certsPem: ec.leafPem + ec.intermediatePem, keyPem: ec.keyPem, contentType: "application/x-pem-file" });
    const mark = kv.requests.length;
    const offer = await source().offer!();
    expect(offer).toEqual({ version, serialNumber: ec.serial, fingerprint256: ec.fingerprint256, notBefore: new Date(new X509Certificate(ec.leafPem).validFrom), notAfter: new Date(new X509Certificate(ec.leafPem).validTo) });
    expect(kv.requests.slice(mark).some((r) => r.path.startsWith("/secrets/"))).toBe(false);
  });

  it("when the key is not exportable, obtain is CERT_INVALID naming the certificate and the policy setting, and reads no secret", async () => {
    grantLeastPrivilege();
    const version = await kv.putCertificate(CERT, { certsPem: rsa.leafPem + rsa.intermediatePem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12", exportable: false });
    const mark = kv.requests.length;
    const err = await failure(source().obtain({ names: NAMES }));
    expect(err.code).toBe("CERT_INVALID");
    expect(err.message).toBe(
      `certificate ${CERT} in ${kv.url} version ${version} has a non-exportable private key, so Key Vault does not hand it out: set the certificate policy's ` +
        `keyProperties.exportable to true (az keyvault certificate set-attributes --policy with "key_props": {"exportable": true}) and create a new version`,
    );
    expect(kv.requests.slice(mark).some((r) => r.path.startsWith("/secrets/"))).toBe(false);
  });

  it("when a pinned version's key is not exportable (no policy comes with a version), the secret without a key says the same", async () => {
    grantLeastPrivilege();
    const version = await kv.putCertificate(CERT, { certsPem: rsa.leafPem + rsa.intermediatePem, keyPem: rsa.keyPem, contentType: "application/x-pem-file", exportable: false });
    const err = await failure(source({ version }).obtain({ names: NAMES }));
    expect(err.code).toBe("CERT_INVALID");
    expect(err.message).toContain("has a non-exportable private key");
  });

  it("when Key Vault holds only the leaf and fetchIntermediates is off, obtain is CERT_INVALID saying how to fix it", async () => {
    grantLeastPrivilege();
    await kv.putCertificate(CERT, { certsPem: rsa.leafPem, keyPem: rsa.keyPem, contentType: "application/x-pkcs12" });
    const err = await failure(source().obtain({ names: NAMES }));
    expect(err.code).toBe("CERT_INVALID");
    expect(err.message).toContain("holds only the leaf; its issuer (CN=kv intermediate) is missing");
    expect(err.message).toContain("set source.keyVault.fetchIntermediates: true");
  });
});

describe("completing a leaf-only chain from the AIA URL", () => {
  it("when the URL serves the issuer (DER), it is appended; when it serves another CA's certificate, 404s, or the leaf names no URL, the refusal says so", async () => {
    const { createServer } = await import("node:http");
    const { completeChain } = await import("../../src/sources/issuer-fetch.js");
    const { derOf } = await import("../support/source-certs.js");
    const other = await makeTestCa("unrelated");
    const served: Record<string, Buffer> = { "/issuer.cer": derOf(intermediate.pem), "/other.cer": derOf(other.intermediate.pem) };
    const server = createServer((req, res) => {
      const body = served[req.url ?? ""];
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/pkix-cert" }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const now = Date.now();
      const leafWith = async (url?: string) => {
        const l = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(30)), caIssuersUrl: url });
        return { chain: [l.leafPem], missingIssuer: { subject: `CN=${NAMES[0]}`, issuer: "CN=kv intermediate", caIssuersUrls: url ? [url] : [] }, unrelated: 0 };
      };
      const fetcher = httpIssuerFetcher(5_000);
      const good = await completeChain(await leafWith(`${base}/issuer.cer`), fetcher, "certificate c");
      expect(good.map((p) => new X509Certificate(p).subject)).toEqual([`CN=${NAMES[0]}`, "CN=kv intermediate"]);
      const wrong = await failure(completeChain(await leafWith(`${base}/other.cer`), fetcher, "certificate c"));
      expect(wrong.code).toBe("CERT_INVALID");
      expect(wrong.message).toBe(`certificate c holds only the leaf, and its issuer (CN=kv intermediate) could not be fetched: ${base}/other.cer served CN=unrelated intermediate, which did not issue the leaf`);
      const missing = await failure(completeChain(await leafWith(`${base}/gone.cer`), fetcher, "certificate c"));
      expect(missing.message).toBe(`certificate c holds only the leaf, and its issuer (CN=kv intermediate) could not be fetched: ${base}/gone.cer: ${base}/gone.cer answered 404`);
      const none = await failure(completeChain(await leafWith(), fetcher, "certificate c"));
      expect(none.message).toBe("certificate c holds only the leaf, and the leaf names no caIssuers URL to fetch its issuer (CN=kv intermediate) from; store the certificate with its chain");
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
