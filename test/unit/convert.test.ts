import { createPrivateKey, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { caIssuersUrls, ConversionError, orderChain, readPemBundle, readPkcs12, toPkcs8Pem, type ConversionProblem } from "../../src/certs/convert.js";
import { days, encryptKey, makeTestCa, type TestIssuer } from "../support/certs.js";
import { makeSourceLeaf, pkcs12Of, type SourceLeaf } from "../support/source-certs.js";

const NAMES = ["ml.contoso.test"];
let root: TestIssuer;
let intermediate: TestIssuer;
let rsa: SourceLeaf;
let ec: SourceLeaf;

beforeAll(async () => {
  ({ root, intermediate } = await makeTestCa("convert"));
  const now = Date.now();
  rsa = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(60)), keyType: "rsa", caIssuersUrl: "http://127.0.0.1:9/int.cer" });
  ec = await makeSourceLeaf(intermediate, { names: NAMES, notBefore: new Date(now - days(1)), notAfter: new Date(now + days(60)), keyType: "ec" });
});

const label = (pem: string) => /-----BEGIN ([A-Z ]+)-----/.exec(pem)?.[1];
const sameKey = (a: string, b: string) =>
  createPrivateKey(a).export({ format: "der", type: "pkcs8" }).equals(createPrivateKey(b).export({ format: "der", type: "pkcs8" }));

async function problemOf(run: () => unknown): Promise<{ problem: ConversionProblem; message: string }> {
  try {
    await run();
  } catch (err) {
    if (err instanceof ConversionError) return { problem: err.problem, message: err.message };
    throw err;
  }
  throw new Error("expected a ConversionError");
}

describe("toPkcs8Pem", () => {
  it("when the key is PKCS#1 (BEGIN RSA PRIVATE KEY), it comes back as the same key in PKCS#8", () => {
    expect(label(rsa.traditionalKeyPem)).toBe("RSA PRIVATE KEY");
    const out = toPkcs8Pem(rsa.traditionalKeyPem);
    expect(label(out)).toBe("PRIVATE KEY");
    expect(sameKey(out, rsa.keyPem)).toBe(true);
  });

  it("when the key is SEC1 (BEGIN EC PRIVATE KEY), it comes back as the same key in PKCS#8", () => {
    expect(label(ec.traditionalKeyPem)).toBe("EC PRIVATE KEY");
    const out = toPkcs8Pem(ec.traditionalKeyPem);
    expect(label(out)).toBe("PRIVATE KEY");
    expect(sameKey(out, ec.keyPem)).toBe(true);
  });

  it("when the key is already PKCS#8, it is the same key", () => {
    expect(sameKey(toPkcs8Pem(ec.keyPem), ec.keyPem)).toBe(true);
  });

  it("when the key is encrypted PKCS#8, it is refused as passphrase-protected", async () => {
    const { problem, message } = await problemOf(() => toPkcs8Pem(encryptKey(ec.keyPem), "tls.key"));
    expect(problem).toBe("encrypted-key");
    expect(message).toBe("tls.key is passphrase-protected; Azure ML needs an unencrypted key, so export it without a passphrase");
  });

  it("when the key is a legacy encrypted PKCS#1 (Proc-Type: 4,ENCRYPTED), it is refused as passphrase-protected", async () => {
    const legacy = createPrivateKey(rsa.keyPem).export({ format: "pem", type: "pkcs1", cipher: "aes-128-cbc", passphrase: "x" }).toString();
    expect(legacy).toContain("Proc-Type: 4,ENCRYPTED");
    expect((await problemOf(() => toPkcs8Pem(legacy))).problem).toBe("encrypted-key");
  });

  it("when the key is garbage, it is refused as unparsable, naming what was read", async () => {
    const { problem, message } = await problemOf(() => toPkcs8Pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "tls.key"));
    expect(problem).toBe("unparsable-key");
    expect(message).toBe("tls.key is not a parsable PEM private key (PKCS#1, SEC1 or PKCS#8)");
  });
});

describe("readPemBundle and orderChain", () => {
  it("when the bundle is key, intermediate, leaf (Key Vault's PEM may come in any order), the chain comes out leaf first and the key as PKCS#8", () => {
    const material = readPemBundle(rsa.traditionalKeyPem + rsa.intermediatePem + rsa.leafPem);
    const ordered = orderChain(material);
    expect(ordered.chain.map((p) => new X509Certificate(p).subject)).toEqual([`CN=${NAMES[0]}`, "CN=convert intermediate"]);
    expect(ordered.missingIssuer).toBeUndefined();
    expect(ordered.unrelated).toBe(0);
    expect(label(material.keyPem!)).toBe("PRIVATE KEY");
    expect(sameKey(material.keyPem!, rsa.keyPem)).toBe(true);
  });

  it("when the bundle is root, leaf, key, intermediate, the chain is leaf, intermediate, root", () => {
    const ordered = orderChain(readPemBundle(root.pem + ec.leafPem + ec.keyPem + ec.intermediatePem));
    expect(ordered.chain.map((p) => new X509Certificate(p).subject)).toEqual([`CN=${NAMES[0]}`, "CN=convert intermediate", "CN=convert root"]);
  });

  it("when the bundle carries a certificate off the leaf's path, it is dropped and counted", async () => {
    const other = await makeTestCa("other");
    const ordered = orderChain(readPemBundle(ec.leafPem + other.intermediate.pem + ec.intermediatePem + ec.keyPem));
    expect(ordered.chain).toHaveLength(2);
    expect(ordered.unrelated).toBe(1);
  });

  it("when the bundle holds only the leaf, the missing issuer is named with the leaf's AIA caIssuers URL", () => {
    const ordered = orderChain(readPemBundle(rsa.leafPem + rsa.keyPem));
    expect(ordered.chain).toHaveLength(1);
    expect(ordered.missingIssuer).toEqual({ subject: `CN=${NAMES[0]}`, issuer: "CN=convert intermediate", caIssuersUrls: ["http://127.0.0.1:9/int.cer"] });
    expect(caIssuersUrls(new X509Certificate(ec.leafPem))).toEqual([]);
  });

  it("when the key belongs to none of the certificates, it is refused", async () => {
    const { problem, message } = await problemOf(() => orderChain(readPemBundle(rsa.leafPem + ec.keyPem), "secret web-tls"));
    expect(problem).toBe("key-matches-no-certificate");
    expect(message).toBe("secret web-tls: the private key belongs to none of its 1 certificate(s)");
  });

  it("when there is no key, or no certificate, or two keys, each is its own refusal", async () => {
    expect((await problemOf(() => orderChain(readPemBundle(ec.leafPem)))).problem).toBe("no-key");
    expect((await problemOf(() => orderChain(readPemBundle(ec.keyPem)))).problem).toBe("no-certificate");
    expect((await problemOf(() => readPemBundle(ec.keyPem + rsa.keyPem))).problem).toBe("several-keys");
  });

  it("when the bundle's key is encrypted, it is refused with its reason", async () => {
    const { problem, message } = await problemOf(() => readPemBundle(ec.leafPem + encryptKey(ec.keyPem), "certificate web in vault kv"));
    expect(problem).toBe("encrypted-key");
    expect(message).toBe("certificate web in vault kv: the key is passphrase-protected; Azure ML needs an unencrypted key, so export it without a passphrase");
  });

  it("when a certificate block is garbage, it is refused naming the block", async () => {
    const { problem, message } = await problemOf(() => readPemBundle(ec.leafPem + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"));
    expect(problem).toBe("unparsable-certificate");
    expect(message).toBe("the PEM bundle: certificate #2 is not a valid X.509 certificate");
  });
});

describe("readPkcs12", () => {
  it("when the PKCS#12 is exported without a password (as Key Vault does) with an RSA key, the key and both certificates come out", async () => {
    const material = await readPkcs12(pkcs12Of(rsa.keyPem, rsa.leafPem + rsa.intermediatePem));
    expect(material.certificates.map((p) => new X509Certificate(p).subject).sort()).toEqual([`CN=${NAMES[0]}`, "CN=convert intermediate"].sort());
    expect(label(material.keyPem!)).toBe("PRIVATE KEY");
    expect(sameKey(material.keyPem!, rsa.keyPem)).toBe(true);
    expect(orderChain(material).chain.map((p) => new X509Certificate(p).serialNumber.toUpperCase())[0]).toBe(rsa.serial);
  });

  it("when the PKCS#12 holds an ECDSA key, the key comes out as PKCS#8", async () => {
    const material = await readPkcs12(pkcs12Of(ec.keyPem, ec.leafPem + ec.intermediatePem));
    expect(sameKey(material.keyPem!, ec.keyPem)).toBe(true);
    expect(orderChain(material).chain).toHaveLength(2);
  });

  it("when the PKCS#12 uses the legacy 3DES/RC2 encryption (older exports), it is read too", async () => {
    const material = await readPkcs12(pkcs12Of(rsa.keyPem, rsa.leafPem, { legacy: true }));
    expect(sameKey(material.keyPem!, rsa.keyPem)).toBe(true);
    expect(material.certificates).toHaveLength(1);
  });

  it("when the PKCS#12 has no MAC at all (no password, no integrity data), it is read too", async () => {
    const material = await readPkcs12(pkcs12Of(ec.keyPem, ec.leafPem + ec.intermediatePem, { noMac: true }));
    expect(sameKey(material.keyPem!, ec.keyPem)).toBe(true);
    expect(material.certificates).toHaveLength(2);
  });

  it("when the PKCS#12 has a password, it is refused as password-protected", async () => {
    const { problem, message } = await problemOf(() => readPkcs12(pkcs12Of(ec.keyPem, ec.leafPem, { password: "hunter2" })));
    expect(problem).toBe("pkcs12-password");
    expect(message).toBe("the PKCS#12 file is protected with a password; amlcert reads PKCS#12 without a password, as Key Vault exports it");
  });

  it("when the bytes are not PKCS#12, it is refused as unreadable", async () => {
    const { problem, message } = await problemOf(() => readPkcs12(Buffer.from("not a pfx"), "secret web/1"));
    expect(problem).toBe("pkcs12-unreadable");
    expect(message.startsWith("secret web/1 is not a readable PKCS#12 file (")).toBe(true);
  });
});
