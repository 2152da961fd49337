/**
 * Certificate (and ACME account) keys: generated with node:crypto, returned as unencrypted PKCS#8 PEM
 * ("-----BEGIN PRIVATE KEY-----"), the form Azure ML's `key.pem` accepts (it rejects passphrase-protected keys).
 */
import { generateKeyPair } from "node:crypto";
import { promisify } from "node:util";

const generateKeyPairAsync = promisify(generateKeyPair);

export const CertificateKeyTypes = ["rsa2048", "rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"] as const;
export type CertificateKeyType = (typeof CertificateKeyTypes)[number];

const rsaBits: Partial<Record<CertificateKeyType, number>> = { rsa2048: 2048, rsa3072: 3072, rsa4096: 4096 };
const ecCurve: Partial<Record<CertificateKeyType, string>> = { "ecdsa-p256": "prime256v1", "ecdsa-p384": "secp384r1" };

const pkcs8 = { type: "pkcs8", format: "pem" } as const;
const spki = { type: "spki", format: "pem" } as const;

/** A fresh private key of `type` as unencrypted PKCS#8 PEM. */
export async function generateCertificateKey(type: CertificateKeyType): Promise<string> {
  const bits = rsaBits[type];
  if (bits !== undefined) {
    const { privateKey } = await generateKeyPairAsync("rsa", {
      modulusLength: bits,
      publicExponent: 0x10001,
      privateKeyEncoding: pkcs8,
      publicKeyEncoding: spki,
    });
    return privateKey;
  }
  const namedCurve = ecCurve[type];
  if (namedCurve !== undefined) {
    const { privateKey } = await generateKeyPairAsync("ec", {
      namedCurve,
      privateKeyEncoding: pkcs8,
      publicKeyEncoding: spki,
    });
    return privateKey;
  }
  throw new TypeError(`unknown key type ${JSON.stringify(type)}; expected one of ${CertificateKeyTypes.join(", ")}`);
}
