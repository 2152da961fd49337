/**
 * The Key Vault and Kubernetes TLS sources over in-process fakes of their adapters: what each offers, what each
 * obtains, and each refusal with its words. (The adapters themselves run against the stand-ins in
 * test/integration/keyvault.test.ts and the e2e suites.)
 */
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { KeyVault, KeyVaultCertificate } from "../../src/keyvault/key-vault.js";
import { createKeyVaultSource } from "../../src/sources/key-vault-source.js";
import { createKubeTlsSource } from "../../src/sources/kube-tls-source.js";
import type { StoredSecret } from "../../src/ports.js";
import { days, makeTestCa, type TestIssuer } from "../support/certs.js";
import { derOf, makeSourceLeaf, pkcs12Of, type SourceLeaf } from "../support/source-certs.js";

const NAMES = ["ml.contoso.test"];
const VAULT = "https://kv-web.vault.azure.net";
let intermediate: TestIssuer;
let a: SourceLeaf;
let b: SourceLeaf;

beforeAll(async () => {
  ({ intermediate } = await makeTestCa("sources"));
  const now = Date.now();
  a = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(60)), keyType: "rsa" });
  b = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(90)), keyType: "ec" });
});

async function failure(p: Promise<unknown>): Promise<AmlcertError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AmlcertError) return err;
    throw err;
  }
  throw new Error("expected an AmlcertError");
}

function fakeVault(cert: Partial<KeyVaultCertificate> & { leaf: SourceLeaf }, secret: { value: string; contentType?: string }): KeyVault & { secretReads: number } {
  const v = {
    vaultUrl: VAULT,
    secretReads: 0,
    getCertificate: async (name: string) => ({ name, version: "v7", cer: derOf(cert.leaf.leafPem), enabled: true, secretName: name, secretVersion: "v7", ...cert }),
    getSecret: async () => {
      v.secretReads += 1;
      return secret;
    },
  };
  return v;
}
const kvSource = (vault: KeyVault) => createKeyVaultSource({ vault, certificateName: "web", fetchIntermediates: false, fetchIssuer: () => Promise.reject(new Error("no fetch in this test")) });

describe("Key Vault source", () => {
  it("names itself by vault and certificate (and the pinned version)", () => {
    const vault = fakeVault({ leaf: a }, { value: "" });
    expect(kvSource(vault).origin).toBe(`keyVault ${VAULT}/certificates/web`);
    expect(createKeyVaultSource({ vault, certificateName: "web", version: "0123456789abcdef0123456789abcdef", fetchIntermediates: false, fetchIssuer: () => Promise.reject(new Error("x")) }).origin).toBe(
      `keyVault ${VAULT}/certificates/web/0123456789abcdef0123456789abcdef`,
    );
    expect(kvSource(vault).kind).toBe("keyVault");
  });

  it("when the certificate version is disabled, offer refuses it naming the version and the setting", async () => {
    const err = await failure(kvSource(fakeVault({ leaf: a, enabled: false }, { value: "" })).offer!());
    expect(err.code).toBe("CERT_INVALID");
    expect(err.message).toBe(`certificate web in ${VAULT} version v7 is disabled in Key Vault; enable it, or pin another version (source.keyVault.version)`);
  });

  it("when the secret's content type is neither PKCS#12 nor PEM, obtain refuses it naming the type", async () => {
    const err = await failure(kvSource(fakeVault({ leaf: a }, { value: "x", contentType: "text/plain" })).obtain({ names: NAMES }));
    expect(err.message).toBe(`certificate web in ${VAULT} version v7: the secret's content type is text/plain; amlcert reads application/x-pkcs12 and application/x-pem-file`);
  });

  it("when the secret has no content type, the policy's is used", async () => {
    const vault = fakeVault({ leaf: a, contentType: "application/x-pkcs12" }, { value: pkcs12Of(a.keyPem, a.leafPem + a.intermediatePem).toString("base64") });
    const { chainPem } = await kvSource(vault).obtain({ names: NAMES });
    expect(new X509Certificate(chainPem).serialNumber.toUpperCase()).toBe(a.serial);
  });

  it("when the secret holds another certificate than the certificate object (mid-update), obtain refuses it and says to run again", async () => {
    const vault = fakeVault({ leaf: a }, { value: b.keyPem + b.leafPem + b.intermediatePem, contentType: "application/x-pem-file" });
    const err = await failure(kvSource(vault).obtain({ names: NAMES }));
    expect(err.message).toBe(`certificate web in ${VAULT} version v7: the secret's certificate (serial ${b.serial}) is not the certificate object's; Key Vault is mid-update, run again`);
  });

  it("when the PEM secret's key is encrypted, obtain is CERT_INVALID with the conversion's reason", async () => {
    const { encryptKey } = await import("../support/certs.js");
    const vault = fakeVault({ leaf: b }, { value: encryptKey(b.keyPem) + b.leafPem, contentType: "application/x-pem-file" });
    const err = await failure(kvSource(vault).obtain({ names: NAMES }));
    expect(err.code).toBe("CERT_INVALID");
    expect(err.details.problem).toBe("encrypted-key");
    expect(err.message).toBe(`certificate web in ${VAULT} version v7 (PEM): the key is passphrase-protected; Azure ML needs an unencrypted key, so export it without a passphrase`);
  });

  it("when the policy says the key is not exportable, obtain reads no secret", async () => {
    const vault = fakeVault({ leaf: a, exportable: false }, { value: "" });
    await failure(kvSource(vault).obtain({ names: NAMES }));
    expect(vault.secretReads).toBe(0);
  });
});

describe("Kubernetes TLS secret source", () => {
  const secret = (data: Record<string, string>, resourceVersion = "4711"): StoredSecret => ({
    name: "web-tls",
    type: "kubernetes.io/tls",
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)])),
    labels: {},
    annotations: {},
    resourceVersion,
  });
  const tlsSource = (s: StoredSecret | undefined) => createKubeTlsSource({ kube: { getSecret: async () => s }, namespace: "web", secretName: "web-tls" });

  it("offers the leaf the key belongs to (even when tls.crt starts with the intermediate) at the secret's resourceVersion", async () => {
    const offer = await tlsSource(secret({ "tls.crt": b.intermediatePem + b.leafPem, "tls.key": b.traditionalKeyPem }, "99")).offer!();
    expect(offer).toMatchObject({ version: "99", serialNumber: b.serial, fingerprint256: b.fingerprint256 });
  });

  it("offers the first certificate when there is no key yet, and refuses at obtain naming tls.key", async () => {
    const s = tlsSource(secret({ "tls.crt": a.leafPem + a.intermediatePem }));
    expect((await s.offer!()).serialNumber).toBe(a.serial);
    const err = await failure(s.obtain({ names: NAMES }));
    expect([err.code, err.stage, err.message]).toEqual(["CERT_INVALID", "acme-order", "source secret web/web-tls has no tls.key"]);
  });

  it("when tls.crt is missing or empty, offer refuses naming the secret", async () => {
    const err = await failure(tlsSource(secret({ "tls.key": a.keyPem })).offer!());
    expect([err.code, err.stage, err.message]).toEqual(["CERT_INVALID", "preflight", "source secret web/web-tls has no tls.crt"]);
  });

  it("when the key belongs to none of the certificates, obtain refuses it", async () => {
    const err = await failure(tlsSource(secret({ "tls.crt": a.leafPem + a.intermediatePem, "tls.key": b.keyPem })).obtain({ names: NAMES }));
    expect(err.message).toBe("source secret web/web-tls: the private key belongs to none of its 2 certificate(s)");
  });

  it("obtains PKCS#8 and the chain leaf first from cert-manager's layout with a PKCS#1 key", async () => {
    const { chainPem, keyPem } = await tlsSource(secret({ "tls.crt": a.leafPem + a.intermediatePem, "tls.key": a.traditionalKeyPem, "ca.crt": "" })).obtain({ names: NAMES });
    expect(keyPem.startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    expect((chainPem.match(/BEGIN CERTIFICATE/g) ?? []).length).toBe(2);
    expect(new X509Certificate(chainPem).serialNumber.toUpperCase()).toBe(a.serial);
  });
});
