import { createPrivateKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CertificateKeyTypes, generateCertificateKey, type CertificateKeyType } from "../../src/acme/keys.js";

const expected: Record<CertificateKeyType, { type: string; bits?: number; curve?: string }> = {
  rsa2048: { type: "rsa", bits: 2048 },
  rsa3072: { type: "rsa", bits: 3072 },
  rsa4096: { type: "rsa", bits: 4096 },
  "ecdsa-p256": { type: "ec", curve: "prime256v1" },
  "ecdsa-p384": { type: "ec", curve: "secp384r1" },
};

describe("generateCertificateKey", () => {
  it.each(CertificateKeyTypes)("when asked for %s, returns an unencrypted PKCS#8 PEM key of that algorithm and size", async (type) => {
    const pem = await generateCertificateKey(type);

    expect(pem.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
    expect(pem.trimEnd().endsWith("-----END PRIVATE KEY-----")).toBe(true);
    expect(pem).not.toContain("ENCRYPTED");
    // parses without a passphrase
    const key = createPrivateKey(pem);
    const want = expected[type];
    expect(key.asymmetricKeyType).toBe(want.type);
    if (want.bits !== undefined) {
      expect(key.asymmetricKeyDetails?.modulusLength).toBe(want.bits);
      expect(key.asymmetricKeyDetails?.publicExponent).toBe(65537n);
    }
    if (want.curve !== undefined) expect(key.asymmetricKeyDetails?.namedCurve).toBe(want.curve);
    // and re-exports to the same PKCS#8 bytes, i.e. it really is PKCS#8 and not SEC1/PKCS#1
    expect(key.export({ type: "pkcs8", format: "pem" })).toBe(pem);
  });

  it("when called twice, returns two different keys", async () => {
    const [a, b] = await Promise.all([generateCertificateKey("ecdsa-p256"), generateCertificateKey("ecdsa-p256")]);
    expect(a).not.toBe(b);
  });

  it("when given an unknown type, rejects naming the valid ones", async () => {
    await expect(generateCertificateKey("dsa1024" as CertificateKeyType)).rejects.toThrow(/rsa2048/);
  });
});
