/**
 * Completing a chain that holds only the leaf: fetch the issuing intermediate from the leaf's Authority
 * Information Access caIssuers URL (DER or PEM, as CAs publish them), only when the target's source says so
 * (`fetchIntermediates`). Bounded: one certificate per URL, a size cap and a timeout; http(s) only.
 */
import { X509Certificate } from "node:crypto";
import { AmlcertError } from "../errors.js";
import { certificateToPem, type OrderedChain } from "../certs/convert.js";

export type IssuerFetcher = (url: string, signal?: AbortSignal) => Promise<Buffer>;

const MAX_BYTES = 64 * 1024;

/** GET `url` with the global fetch: at most 64 KiB, within `timeoutMs`. */
export function httpIssuerFetcher(timeoutMs = 10_000): IssuerFetcher {
  return async (url, signal) => {
    const timeout = AbortSignal.timeout(timeoutMs);
    const res = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout, redirect: "follow" });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_BYTES) throw new Error(`${url} served ${body.length} bytes, more than a certificate (${MAX_BYTES})`);
    return body;
  };
}

/**
 * The chain with the leaf's issuer appended when it was missing: the first caIssuers URL that serves a certificate
 * that really issued the leaf. `what` names the source in errors (CERT_INVALID, stage acme-order: nothing is written).
 */
export async function completeChain(ordered: OrderedChain, fetchIssuer: IssuerFetcher, what: string, signal?: AbortSignal): Promise<string[]> {
  const missing = ordered.missingIssuer;
  if (!missing) return ordered.chain;
  if (missing.caIssuersUrls.length === 0) {
    throw new AmlcertError("CERT_INVALID", "acme-order", `${what} holds only the leaf, and the leaf names no caIssuers URL to fetch its issuer (${missing.issuer}) from; store the certificate with its chain`);
  }
  const leaf = new X509Certificate(ordered.chain[0]!);
  const problems: string[] = [];
  for (const url of missing.caIssuersUrls.slice(0, 3)) {
    try {
      const pem = certificateToPem(await fetchIssuer(url, signal), `the certificate at ${url}`);
      const issuer = new X509Certificate(pem);
      if (leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey)) return [...ordered.chain, pem];
      problems.push(`${url} served ${issuer.subject.replace(/\n/g, ", ")}, which did not issue the leaf`);
    } catch (err) {
      signal?.throwIfAborted();
      problems.push(`${url}: ${(err as Error).message}`);
    }
  }
  throw new AmlcertError("CERT_INVALID", "acme-order", `${what} holds only the leaf, and its issuer (${missing.issuer}) could not be fetched: ${problems.join("; ")}`);
}
