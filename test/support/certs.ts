/**
 * Test certificates with chosen names and dates: a root, an intermediate and leaves, made in-process with
 * @peculiar/x509 on WebCrypto (ECDSA P-256). Keys are exported as unencrypted PKCS#8 PEM like amlcert writes them.
 */
import { webcrypto, createPrivateKey } from "node:crypto";
import * as x509 from "@peculiar/x509";

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type CryptoKey = webcrypto.CryptoKey;
// @peculiar/x509 is typed against the DOM's WebCrypto; Node's is the same API.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyKey = any;

x509.cryptoProvider.set(webcrypto as AnyKey);

const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface TestIssuer {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  pem: string;
}

export interface TestLeaf {
  /** leaf + intermediate, leaf first */
  chainPem: string;
  leafPem: string;
  keyPem: string;
  serialNumber: string;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END PRIVATE KEY-----\n`;
}

const caExtensions = async (keys: CryptoKeyPair) => [
  new x509.BasicConstraintsExtension(true, undefined, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as AnyKey),
];

const DAY = 86_400_000;

/** A root CA and an intermediate signed by it. */
export async function makeTestCa(name = "amlcert unit"): Promise<{ root: TestIssuer; intermediate: TestIssuer }> {
  const rootKeys = await keyPair();
  const now = Date.now();
  const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name} root`,
    keys: rootKeys as AnyKey,
    notBefore: new Date(now - 3650 * DAY),
    notAfter: new Date(now + 3650 * DAY),
    signingAlgorithm: alg,
    extensions: await caExtensions(rootKeys),
  });
  const intKeys = await keyPair();
  const intCert = await x509.X509CertificateGenerator.create({
    subject: `CN=${name} intermediate`,
    issuer: rootCert.subject,
    publicKey: intKeys.publicKey as AnyKey,
    signingKey: rootKeys.privateKey as AnyKey,
    notBefore: new Date(now - 3650 * DAY),
    notAfter: new Date(now + 3650 * DAY),
    signingAlgorithm: alg,
    extensions: await caExtensions(intKeys),
  });
  return {
    root: { cert: rootCert, keys: rootKeys, pem: rootCert.toString("pem") + "\n" },
    intermediate: { cert: intCert, keys: intKeys, pem: intCert.toString("pem") + "\n" },
  };
}

/** A leaf for `names`, valid from notBefore to notAfter, issued by `issuer`; chainPem = leaf + issuer. */
export async function makeLeaf(
  issuer: TestIssuer,
  names: string[],
  notBefore: Date,
  notAfter: Date,
): Promise<TestLeaf> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${names[0]}`,
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey as AnyKey,
    signingKey: issuer.keys.privateKey as AnyKey,
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: "dns" as const, value: n }))),
    ],
  });
  const leafPem = cert.toString("pem") + "\n";
  return { chainPem: leafPem + issuer.pem, leafPem, keyPem: await pkcs8Pem(keys.privateKey), serialNumber: cert.serialNumber.toUpperCase() };
}

/** The same key, passphrase-protected (PKCS#8 encrypted), as Azure ML refuses it. */
export function encryptKey(keyPem: string): string {
  return createPrivateKey(keyPem).export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: "secret" }).toString();
}

/** The same key in SEC1 ("BEGIN EC PRIVATE KEY") form: not PKCS#8. */
export function sec1Key(keyPem: string): string {
  return createPrivateKey(keyPem).export({ format: "pem", type: "sec1" }).toString();
}

export const days = (n: number) => n * DAY;
