/**
 * Turning a certificate someone else made into the azureml layout: a PEM bundle in any order, or a PKCS#12 file
 * (as Key Vault exports it: no password), becomes an unencrypted PKCS#8 key and a chain ordered leaf first.
 * Pure apart from the lazy load of node-forge (Node's crypto cannot read PKCS#12): only a PKCS#12 source pays for
 * it, so `amlcert` starts as fast as before for every other target.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { pemBlocks } from "./certificate.js";

export type ConversionProblem =
  | "no-certificate"
  | "unparsable-certificate"
  | "no-key"
  | "several-keys"
  | "encrypted-key"
  | "unparsable-key"
  | "key-matches-no-certificate"
  | "pkcs12-unreadable"
  | "pkcs12-password";

/** Why source material could not be converted; `problem` is a stable identifier, the message says it to a person. */
export class ConversionError extends Error {
  override readonly name = "ConversionError";
  constructor(
    readonly problem: ConversionProblem,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a source holds, before ordering: certificates (PEM, one each) in the order found, and the key if any. */
export interface SourceMaterial {
  certificates: string[];
  /** PKCS#8 PEM, unencrypted */
  keyPem?: string;
}

const KEY_LABELS = new Set(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]);

/** An unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), PKCS#1 ("BEGIN RSA PRIVATE KEY") or SEC1 ("BEGIN EC PRIVATE KEY") key as PKCS#8 PEM. */
export function toPkcs8Pem(keyPem: string, what = "the key"): string {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(keyPem) || /Proc-Type:\s*4,ENCRYPTED/.test(keyPem)) {
    throw new ConversionError("encrypted-key", `${what} is passphrase-protected; Azure ML needs an unencrypted key, so export it without a passphrase`);
  }
  try {
    return createPrivateKey({ key: keyPem, format: "pem" }).export({ format: "pem", type: "pkcs8" }).toString();
  } catch (err) {
    throw new ConversionError("unparsable-key", `${what} is not a parsable PEM private key (PKCS#1, SEC1 or PKCS#8)`, { cause: err });
  }
}

/** The certificates and the (one) private key of a PEM bundle, whatever their order. */
export function readPemBundle(text: string, what = "the PEM bundle"): SourceMaterial {
  const blocks = pemBlocks(text);
  if (blocks.some((b) => b.label === "ENCRYPTED PRIVATE KEY") || /Proc-Type:\s*4,ENCRYPTED/.test(text)) {
    throw new ConversionError("encrypted-key", `${what}: the key is passphrase-protected; Azure ML needs an unencrypted key, so export it without a passphrase`);
  }
  const keys = blocks.filter((b) => KEY_LABELS.has(b.label));
  if (keys.length > 1) throw new ConversionError("several-keys", `${what} holds ${keys.length} private keys; it must hold exactly one`);
  const certificates = blocks.filter((b) => b.label === "CERTIFICATE").map((b, i) => normalizeCertificate(b.pem, `${what}: certificate #${i + 1}`));
  return { certificates, ...(keys[0] ? { keyPem: toPkcs8Pem(keys[0].pem, `${what}: the key`) } : {}) };
}

function normalizeCertificate(pemOrDer: string | Buffer, what: string): string {
  try {
    return new X509Certificate(pemOrDer).toString().replace(/\r\n/g, "\n").trimEnd() + "\n";
  } catch (err) {
    throw new ConversionError("unparsable-certificate", `${what} is not a valid X.509 certificate`, { cause: err });
  }
}

/** A DER or PEM certificate (what an AIA caIssuers URL serves) as PEM. */
export function certificateToPem(data: Buffer, what: string): string {
  const text = data.toString("latin1");
  return normalizeCertificate(text.includes("-----BEGIN CERTIFICATE-----") ? text : data, what);
}

/**
 * The certificates and key of a PKCS#12 (PFX) file. Key Vault exports them with an empty password; `password`
 * is tried as given and, when it is empty, also as "no password" (the two are different in PKCS#12).
 */
export async function readPkcs12(der: Buffer, what = "the PKCS#12 file", password = ""): Promise<SourceMaterial> {
  const { default: forge } = await import("node-forge");
  let p12: ReturnType<typeof forge.pkcs12.pkcs12FromAsn1>;
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString("binary")));
    p12 = openPkcs12(forge, asn1, password);
  } catch (err) {
    if (err instanceof ConversionError) throw err;
    throw new ConversionError("pkcs12-unreadable", `${what} is not a readable PKCS#12 file (${(err as Error).message})`, { cause: err });
  }
  const certificates: string[] = [];
  let keyPem: string | undefined;
  let keys = 0;
  for (const safe of p12.safeContents) {
    for (const bag of safe.safeBags) {
      if (bag.type === forge.pki.oids.certBag) {
        const certDer = bag.cert ? forge.asn1.toDer(forge.pki.certificateToAsn1(bag.cert)).getBytes() : bag.asn1 ? forge.asn1.toDer(bag.asn1).getBytes() : undefined;
        if (certDer) certificates.push(normalizeCertificate(Buffer.from(certDer, "binary"), `${what}: certificate #${certificates.length + 1}`));
      } else if (bag.type === forge.pki.oids.keyBag || bag.type === forge.pki.oids.pkcs8ShroudedKeyBag) {
        keys += 1;
        // forge parses RSA keys only; for EC it keeps the PrivateKeyInfo's ASN.1, which is PKCS#8 either way
        const info = bag.key ? forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(bag.key)) : bag.asn1;
        if (!info) continue;
        const keyDer = Buffer.from(forge.asn1.toDer(info).getBytes(), "binary");
        try {
          keyPem = createPrivateKey({ key: keyDer, format: "der", type: "pkcs8" }).export({ format: "pem", type: "pkcs8" }).toString();
        } catch (err) {
          throw new ConversionError("unparsable-key", `${what}: the private key is not a parsable PKCS#8 key`, { cause: err });
        }
      }
    }
  }
  if (keys > 1) throw new ConversionError("several-keys", `${what} holds ${keys} private keys; it must hold exactly one`);
  return { certificates, ...(keyPem ? { keyPem } : {}) };
}

type Forge = typeof import("node-forge");

function openPkcs12(forge: Forge, asn1: import("node-forge").asn1.Asn1, password: string) {
  const attempts: (string | null)[] = password === "" ? ["", null] : [password];
  let last: unknown;
  for (const p of attempts) {
    try {
      // strict=false: Key Vault and openssl write PFX files forge's strict DER check rejects for no good reason
      return forge.pkcs12.pkcs12FromAsn1(asn1, false, p as string);
    } catch (err) {
      last = err;
    }
  }
  const message = (last as Error)?.message ?? String(last);
  if (/password|MAC|decrypt/i.test(message)) {
    throw new ConversionError("pkcs12-password", "the PKCS#12 file is protected with a password; amlcert reads PKCS#12 without a password, as Key Vault exports it", { cause: last });
  }
  throw last;
}

export interface OrderedChain {
  /** the leaf (the certificate the key belongs to), then each issuer, as far as the material reaches */
  chain: string[];
  /** set when the chain is only a leaf that is not self-signed: its issuer (an intermediate) was not in the material.
   * A chain that reaches an intermediate is complete for a server: the root is the client's to have. */
  missingIssuer?: { subject: string; issuer: string; caIssuersUrls: string[] };
  /** certificates in the material that are not on the leaf's path (dropped) */
  unrelated: number;
}

const oneLine = (dn: string) => dn.replace(/\n/g, ", ");
const issued = (child: X509Certificate, parent: X509Certificate) => child.checkIssued(parent) && child.verify(parent.publicKey);
const selfSigned = (c: X509Certificate) => issued(c, c);

/** The caIssuers URLs of a certificate's Authority Information Access extension (http and https only). */
export function caIssuersUrls(cert: X509Certificate): string[] {
  const info = cert.infoAccess ?? "";
  return [...info.matchAll(/CA Issuers - URI:(\S+)/g)].map((m) => m[1]!).filter((u) => /^https?:\/\//i.test(u));
}

/**
 * Order `material` leaf first: the leaf is the certificate `keyPem` belongs to, then the certificate that issued it
 * (name and signature), and so on until a self-signed one or none is found. Certificates off that path are dropped.
 */
export function orderChain(material: SourceMaterial, what = "the source"): OrderedChain {
  if (material.certificates.length === 0) throw new ConversionError("no-certificate", `${what} holds no certificate`);
  if (!material.keyPem) throw new ConversionError("no-key", `${what} holds no private key`);
  const key = createPrivateKey(material.keyPem);
  const certs = material.certificates.map((pem) => ({ pem, x509: new X509Certificate(pem) }));
  const leafIndex = certs.findIndex((c) => c.x509.checkPrivateKey(key));
  if (leafIndex < 0) {
    throw new ConversionError("key-matches-no-certificate", `${what}: the private key belongs to none of its ${certs.length} certificate(s)`);
  }
  const path = [certs[leafIndex]!];
  const rest = certs.filter((_, i) => i !== leafIndex);
  // bounded by the number of certificates: each step moves one from `rest` to `path`
  while (!selfSigned(path[path.length - 1]!.x509)) {
    const last = path[path.length - 1]!.x509;
    const next = rest.findIndex((c) => issued(last, c.x509));
    if (next < 0) break;
    path.push(rest.splice(next, 1)[0]!);
  }
  const last = path[path.length - 1]!.x509;
  return {
    chain: path.map((c) => c.pem),
    ...(path.length > 1 || selfSigned(last) ? {} : { missingIssuer: { subject: oneLine(last.subject), issuer: oneLine(last.issuer), caIssuersUrls: caIssuersUrls(last) } }),
    unrelated: rest.length,
  };
}
