/**
 * Pure certificate inspection on node:crypto's X509Certificate: parse a full-chain PEM, describe the leaf, and
 * validate a certificate/key pair before anything is written. No I/O, no SDKs.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";

export interface CertificateInfo {
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** DNS names from subjectAltName, lower case */
  dnsNames: string[];
  subject: string;
  issuer: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex (as openssl prints it) */
  fingerprint256: string;
  /** the public key in amlcert's key-type words: rsa2048 ... rsa4096, ecdsa-p256, ecdsa-p384 (or e.g. "rsa1024", "ed25519") */
  keyType: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;

/** The PEM blocks of `text` with their labels, in order. */
export function pemBlocks(text: string): { label: string; pem: string }[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1]!, pem: `${m[0]}\n` }));
}

/** Parse every CERTIFICATE block. Throws an Error naming the block on garbage; an empty list is an error. */
export function parseChain(chainPem: string): X509Certificate[] {
  const blocks = pemBlocks(chainPem).filter((b) => b.label === "CERTIFICATE");
  if (blocks.length === 0) throw new Error("no PEM CERTIFICATE block found");
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b.pem);
    } catch (err) {
      throw new Error(`certificate #${i + 1} in the chain is not a valid X.509 certificate`, { cause: err });
    }
  });
}

/** Why a PEM trust bundle trusts nothing (no certificate, or one that does not parse); undefined when it is usable. */
export function trustBundleProblem(pem: string): string | undefined {
  try {
    parseChain(pem);
    return undefined;
  } catch (err) {
    return (err as Error).message === "no PEM CERTIFICATE block found" ? "holds no PEM certificate (BEGIN CERTIFICATE)" : (err as Error).message.replace(" in the chain", " in the bundle");
  }
}

export function dnsNamesOf(cert: X509Certificate): string[] {
  const san = cert.subjectAltName ?? "";
  return san
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase());
}

export function describe(cert: X509Certificate): CertificateInfo {
  return {
    serialNumber: cert.serialNumber.toUpperCase(),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    dnsNames: dnsNamesOf(cert),
    subject: cert.subject.replace(/\n/g, ", "),
    issuer: cert.issuer.replace(/\n/g, ", "),
    fingerprint256: cert.fingerprint256,
    keyType: keyTypeOf(cert),
  };
}

const CURVES: Record<string, string> = { prime256v1: "p256", "P-256": "p256", secp384r1: "p384", "P-384": "p384", secp521r1: "p521" };

export function keyTypeOf(cert: X509Certificate): string {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa") return `rsa${details.modulusLength ?? ""}`;
  if (key.asymmetricKeyType === "ec") return `ecdsa-${CURVES[details.namedCurve ?? ""] ?? details.namedCurve ?? "unknown"}`;
  return key.asymmetricKeyType ?? "unknown";
}

/** Does the SAN `pattern` (possibly `*.zone`) cover host `name`? RFC 6125: the wildcard is one whole left label. */
export function sanCovers(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const n = name.toLowerCase();
  if (p === n) return true;
  if (!p.startsWith("*.")) return false;
  const rest = p.slice(1); // ".zone"
  return n.endsWith(rest) && !n.slice(0, -rest.length).includes(".") && n.length > rest.length;
}

/** Names in `wanted` that no SAN of the certificate covers. */
export function uncoveredNames(dnsNames: string[], wanted: string[]): string[] {
  return wanted.filter((w) => !dnsNames.some((san) => (w.startsWith("*.") ? san === w.toLowerCase() : sanCovers(san, w))));
}

export type KeyProblem = "missing" | "encrypted" | "not-pkcs8" | "unparsable";

/**
 * Parse an unencrypted PEM private key. PKCS#8 ("BEGIN PRIVATE KEY") is what amlcert writes; an unencrypted PKCS#1
 * or SEC1 key ("BEGIN RSA/EC PRIVATE KEY") still parses, with `pkcs8: false`, so a pair someone else put in place
 * can be judged on its merits. The problem says why a key is unusable.
 */
export function parsePrivateKey(keyPem: string): { key: KeyObject; pkcs8: boolean } | { problem: KeyProblem } {
  const blocks = pemBlocks(keyPem);
  if (blocks.length === 0) return { problem: keyPem.trim() === "" ? "missing" : "unparsable" };
  if (blocks.some((b) => b.label === "ENCRYPTED PRIVATE KEY") || /Proc-Type:\s*4,ENCRYPTED/.test(keyPem)) {
    return { problem: "encrypted" };
  }
  const keyBlocks = blocks.filter((b) => b.label.endsWith("PRIVATE KEY"));
  if (keyBlocks.length !== 1) return { problem: "unparsable" };
  try {
    return { key: createPrivateKey({ key: keyBlocks[0]!.pem, format: "pem" }), pkcs8: keyBlocks[0]!.label === "PRIVATE KEY" };
  } catch {
    return { problem: "unparsable" };
  }
}

export type ChainProblem = "order" | "incomplete";

/**
 * Leaf first, each certificate issued and signed by the next. A lone leaf that is not self-signed is an
 * incomplete chain (Azure ML wants the full chain: leaf, then intermediates).
 */
export function chainProblem(chain: X509Certificate[]): { problem: ChainProblem; detail: string } | undefined {
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const parent = chain[i + 1]!;
    if (!signedBy(child, parent)) {
      const order = chainOrder(chain);
      if (order !== undefined) {
        const leaf = order[0]!;
        return {
          problem: "order",
          detail: `the certificates are out of order: the leaf (${subjectOf(chain[leaf]!)}) is certificate #${leaf + 1} and must come first; the right order is ${order.map((j) => `#${j + 1}`).join(", ")} (the leaf, then each certificate's issuer)`,
        };
      }
      return { problem: "order", detail: `certificate #${i + 1} (${subjectOf(child)}) is not signed by certificate #${i + 2}` };
    }
  }
  const last = chain[chain.length - 1]!;
  const selfSigned = last.checkIssued(last) && last.verify(last.publicKey);
  if (chain.length === 1 && !selfSigned) {
    return { problem: "incomplete", detail: `the chain holds only the leaf; its issuer (${last.issuer.replace(/\n/g, ", ")}) is missing` };
  }
  return undefined;
}

const subjectOf = (cert: X509Certificate) => cert.subject.replace(/\n/g, ", ");
const signedBy = (child: X509Certificate, parent: X509Certificate) => child.checkIssued(parent) && child.verify(parent.publicKey);

/**
 * The positions of `chain` in the right order (leaf first, each certificate followed by its issuer), when the same
 * certificates make one sound chain in another order; undefined when they do not (a foreign or missing link).
 */
export function chainOrder(chain: X509Certificate[]): number[] | undefined {
  const issuesAnother = (i: number) => chain.some((c, j) => j !== i && signedBy(c, chain[i]!));
  const leaves = chain.map((_, i) => i).filter((i) => !issuesAnother(i));
  if (leaves.length !== 1) return undefined;
  const order = [leaves[0]!];
  while (order.length < chain.length) {
    const cur = chain[order[order.length - 1]!]!;
    const next = chain.findIndex((c, j) => !order.includes(j) && signedBy(cur, c));
    if (next < 0) return undefined;
    order.push(next);
  }
  return order;
}

export type PairProblem =
  | { kind: "cert-unparsable"; detail: string }
  | { kind: "key"; problem: KeyProblem }
  | { kind: "key-mismatch" }
  | { kind: "chain"; problem: ChainProblem; detail: string }
  | { kind: "names"; missing: string[] }
  | { kind: "not-newer"; current: Date; candidate: Date }
  | { kind: "expired"; notAfter: Date };

export function describeProblem(p: PairProblem): string {
  switch (p.kind) {
    case "cert-unparsable":
      return `cert.pem: ${p.detail}`;
    case "key":
      return {
        missing: "key.pem: missing or empty",
        encrypted: "key.pem: the key is passphrase-protected; Azure ML needs an unencrypted key",
        "not-pkcs8": "key.pem: the key is not PKCS#8 ('BEGIN PRIVATE KEY')",
        unparsable: "key.pem: not a parsable PEM private key",
      }[p.problem];
    case "key-mismatch":
      return "key.pem does not match the leaf certificate in cert.pem";
    case "chain":
      return `cert.pem: ${p.detail}`;
    case "names":
      return `cert.pem does not cover ${p.missing.join(", ")}`;
    case "not-newer":
      return `the new certificate expires ${p.candidate.toISOString()}, not later than the one in place (${p.current.toISOString()})`;
    case "expired":
      return `the certificate expired at ${p.notAfter.toISOString()}`;
  }
}

export interface PairInspection {
  leaf?: CertificateInfo;
  problems: PairProblem[];
}

/**
 * Everything that can be said about a cert.pem/key.pem pair, without judging freshness. Used both to decide whether
 * the stored pair needs renewing and to validate a new pair before it is written.
 */
export function inspectPair(certPem: string | undefined, keyPem: string | undefined, names: string[]): PairInspection {
  const problems: PairProblem[] = [];
  let chain: X509Certificate[] | undefined;
  try {
    chain = parseChain(certPem ?? "");
  } catch (err) {
    problems.push({ kind: "cert-unparsable", detail: (err as Error).message });
  }
  const key = parsePrivateKey(keyPem ?? "");
  if ("problem" in key) problems.push({ kind: "key", problem: key.problem });
  else if (!key.pkcs8) problems.push({ kind: "key", problem: "not-pkcs8" });
  if (!chain) return { problems };
  const cp = chainProblem(chain);
  // Out of order but sound once reordered: judge the real leaf (its key, its names), so that the one thing reported
  // is the order, not a key mismatch with an intermediate.
  const order = cp?.problem === "order" ? chainOrder(chain) : undefined;
  const leaf = chain[order?.[0] ?? 0]!;
  if ("key" in key && !leaf.checkPrivateKey(key.key)) problems.push({ kind: "key-mismatch" });
  if (cp) problems.push({ kind: "chain", ...cp });
  const info = describe(leaf);
  const missing = uncoveredNames(info.dnsNames, names);
  if (missing.length > 0) problems.push({ kind: "names", missing });
  return { leaf: info, problems };
}

/**
 * Validate a newly issued pair before any write: key matches, chain ordered and complete, names covered,
 * unencrypted PKCS#8, not expired, and expiring later than the certificate in place.
 */
export function validateNewPair(
  certPem: string,
  keyPem: string,
  names: string[],
  now: Date,
  currentNotAfter?: Date,
): PairInspection {
  const result = inspectPair(certPem, keyPem, names);
  if (result.leaf) {
    if (result.leaf.notAfter.getTime() <= now.getTime()) result.problems.push({ kind: "expired", notAfter: result.leaf.notAfter });
    if (currentNotAfter && result.leaf.notAfter.getTime() <= currentNotAfter.getTime()) {
      result.problems.push({ kind: "not-newer", current: currentNotAfter, candidate: result.leaf.notAfter });
    }
  }
  return result;
}
