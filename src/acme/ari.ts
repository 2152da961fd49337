/**
 * ACME Renewal Information (RFC 9773), the pure parts: a certificate's certID, the answer's window, and the time
 * inside the window at which amlcert renews.
 *
 * certID (section 4.1): base64url(the Authority Key Identifier's keyIdentifier) "." base64url(the DER content
 * octets of the serial number), both without padding. Node's X509Certificate exposes neither the AKI nor the
 * serial's exact octets, so this reads them from the DER with a small TLV walker (certificates only; no library).
 */
import { createHash, X509Certificate } from "node:crypto";

interface Tlv {
  tag: number;
  /** offset of the value */
  start: number;
  /** offset after the value */
  end: number;
}

function tlv(der: Uint8Array, at: number): Tlv {
  const tag = der[at];
  let len = der[at + 1];
  if (tag === undefined || len === undefined) throw new Error("truncated DER");
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error("unsupported DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] ?? 0);
    start += n;
  }
  const end = start + len;
  if (end > der.length) throw new Error("truncated DER");
  return { tag, start, end };
}

function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const t = tlv(der, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

/** 2.5.29.35, id-ce-authorityKeyIdentifier, as DER OID content */
const AKI_OID = Buffer.from([0x55, 0x1d, 0x23]);

/** The certificate's certID, or undefined when it has no Authority Key Identifier with a keyIdentifier. */
export function certIdOf(certPem: string | X509Certificate): string | undefined {
  const der = new Uint8Array((typeof certPem === "string" ? new X509Certificate(certPem) : certPem).raw);
  const cert = tlv(der, 0);
  const [tbs] = children(der, cert);
  if (!tbs) return undefined;
  const fields = children(der, tbs);
  // version [0] is optional; the serial is the first INTEGER
  const serial = fields.find((f) => f.tag === 0x02);
  const extensionsWrapper = fields.find((f) => f.tag === 0xa3);
  if (!serial || !extensionsWrapper) return undefined;
  const [extensions] = children(der, extensionsWrapper);
  if (!extensions) return undefined;
  for (const ext of children(der, extensions)) {
    const [oid, ...rest] = children(der, ext);
    if (!oid || oid.tag !== 0x06 || !Buffer.from(der.subarray(oid.start, oid.end)).equals(AKI_OID)) continue;
    const value = rest.find((r) => r.tag === 0x04);
    if (!value) return undefined;
    const [aki] = children(der, value);
    const keyId = aki ? children(der, aki).find((c) => c.tag === 0x80) : undefined;
    if (!keyId) return undefined;
    const b64 = (a: number, b: number) => Buffer.from(der.subarray(a, b)).toString("base64url");
    return `${b64(keyId.start, keyId.end)}.${b64(serial.start, serial.end)}`;
  }
  return undefined;
}

/** The suggested window of a renewalInfo answer, checked (RFC 9773 section 4.2: end after start). */
export function parseSuggestedWindow(body: unknown): { start: Date; end: Date; explanationURL?: string } | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { suggestedWindow, explanationURL } = body as { suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown };
  if (typeof suggestedWindow?.start !== "string" || typeof suggestedWindow.end !== "string") return undefined;
  const start = new Date(suggestedWindow.start);
  const end = new Date(suggestedWindow.end);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end.getTime() < start.getTime()) return undefined;
  return { start, end, ...(typeof explanationURL === "string" ? { explanationURL } : {}) };
}

/**
 * When inside the window to renew: RFC 9773 asks for a random time in the window, so that many clients do not
 * arrive at once. The "random" fraction comes from a hash of the certID, so `plan`, `renew` and the daemon's
 * scheduler (separate processes, hours apart) all pick the same moment for the same certificate and window.
 */
export function ariRenewalTime(window: { start: Date; end: Date }, certId: string): Date {
  const span = window.end.getTime() - window.start.getTime();
  const fraction = createHash("sha256").update(certId).digest().readUInt32BE(0) / 0x1_0000_0000;
  return new Date(window.start.getTime() + Math.floor(span * fraction));
}
