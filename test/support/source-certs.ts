/**
 * Certificates as other systems hand them over (Key Vault, cert-manager): a leaf with an RSA or ECDSA key, an
 * optional AIA caIssuers URL, issued by a test intermediate (test/support/certs.ts makeTestCa), and the same
 * material as PKCS#12 made by the real `openssl pkcs12 -export` with an empty password, as Key Vault exports it.
 */
import { execFileSync } from "node:child_process";
import { createPrivateKey, webcrypto } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { pkcs8Pem, type TestIssuer } from "./certs.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyKey = any;
x509.cryptoProvider.set(webcrypto as AnyKey);

export interface SourceLeafOptions {
  names: string[];
  notBefore: Date;
  notAfter: Date;
  /** default "ec" (P-256) */
  keyType?: "rsa" | "ec";
  /** an AIA caIssuers URL naming where the issuer can be fetched */
  caIssuersUrl?: string;
}

export interface SourceLeaf {
  leafPem: string;
  /** the issuing intermediate */
  intermediatePem: string;
  /** PKCS#8 */
  keyPem: string;
  /** PKCS#1 (RSA) or SEC1 (EC) */
  traditionalKeyPem: string;
  /** upper-case hex, as amlcert reports serials */
  serial: string;
  fingerprint256: string;
}

const RSA = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as const;
const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export async function makeSourceLeaf(issuer: TestIssuer, o: SourceLeafOptions): Promise<SourceLeaf> {
  const alg = o.keyType === "rsa" ? RSA : EC;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${o.names[0]}`,
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey as AnyKey,
    signingKey: issuer.keys.privateKey as AnyKey,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(o.names.map((n) => ({ type: "dns" as const, value: n }))),
      ...(o.caIssuersUrl ? [new x509.AuthorityInfoAccessExtension({ caIssuers: [new x509.GeneralName("url", o.caIssuersUrl)] })] : []),
    ],
  });
  const keyPem = await pkcs8Pem(keys.privateKey);
  const traditionalKeyPem = createPrivateKey(keyPem).export({ format: "pem", type: o.keyType === "rsa" ? "pkcs1" : "sec1" }).toString();
  const leafPem = cert.toString("pem") + "\n";
  const { X509Certificate } = await import("node:crypto");
  const node = new X509Certificate(leafPem);
  return { leafPem, intermediatePem: issuer.pem, keyPem, traditionalKeyPem, serial: node.serialNumber.toUpperCase(), fingerprint256: node.fingerprint256 };
}

/** PKCS#12 of `keyPem` and `certsPem` (leaf first, then the rest) with an empty password, made by openssl; without a
 * key (`keyPem` ""), the certificates only, as Key Vault exports a certificate whose key is not exportable. */
export function pkcs12Of(keyPem: string, certsPem: string, opts: { password?: string; legacy?: boolean; noMac?: boolean } = {}): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "amlcert-p12-"));
  try {
    writeFileSync(join(dir, "key.pem"), keyPem, { mode: 0o600 });
    writeFileSync(join(dir, "certs.pem"), certsPem);
    execFileSync(
      "openssl",
      ["pkcs12", "-export", ...(keyPem ? ["-inkey", "key.pem"] : ["-nokeys"]), "-in", "certs.pem", "-passout", `pass:${opts.password ?? ""}`, "-out", "out.p12", ...(opts.legacy ? ["-legacy"] : []), ...(opts.noMac ? ["-nomac"] : [])],
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    return readFileSync(join(dir, "out.p12"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The DER form of a PEM certificate (what an AIA URL usually serves). */
export function derOf(certPem: string): Buffer {
  return Buffer.from(certPem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
}

const DAY = 86_400_000;
/** A validity from `fromDays` to `toDays` days from now (negative: in the past). */
export const validDays = (fromDays: number, toDays: number) => ({ notBefore: new Date(Date.now() + fromDays * DAY), notAfter: new Date(Date.now() + toDays * DAY) });
