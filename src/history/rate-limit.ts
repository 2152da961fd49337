/**
 * Rate-limit discipline, pure (C2):
 *   - a CA that said "not before T" (a 429 with a Retry-After longer than a run may wait: ACME_RATE_LIMITED with
 *     details.retryAt) is not asked again before T: the run is skipped with reason `RateLimited` (unless forced);
 *   - Let's Encrypt issues at most 5 certificates per exact set of names per 7 days (its "duplicate certificate"
 *     limit): amlcert counts what it ordered in the history and refuses a 6th (`DuplicateCertificateLimit`) unless
 *     forced, instead of spending the limit and then failing at the CA for a week.
 * See https://letsencrypt.org/docs/rate-limits/.
 */
import type { Issuance, TargetHistory } from "./history.js";

export const DUPLICATE_CERTIFICATE_LIMIT = 5;
export const DUPLICATE_CERTIFICATE_WINDOW_MS = 7 * 86_400_000;
/** the issuance list is pruned to the window and capped, so it cannot grow without bound */
const MAX_ISSUANCES = 2 * DUPLICATE_CERTIFICATE_LIMIT;

/** The exact name set as Let's Encrypt compares it: case-insensitive, order-insensitive, duplicates folded. */
export function canonicalNames(names: string[]): string {
  return [...new Set(names.map((n) => n.toLowerCase().replace(/\.$/, "")))].sort().join(",");
}

/** Certificates ordered for exactly `names` within the window before `now`, oldest first. */
export function recentIssuances(issued: Issuance[] | undefined, names: string[], now: Date): Issuance[] {
  const set = canonicalNames(names);
  const since = now.getTime() - DUPLICATE_CERTIFICATE_WINDOW_MS;
  return (issued ?? []).filter((i) => i.names === set && Date.parse(i.at) > since).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

export type DuplicateCheck =
  | { allowed: true; count: number }
  | { allowed: false; reason: "DuplicateCertificateLimit"; count: number; retryAt: Date; message: string };

/** May another certificate be ordered for exactly `names` now? */
export function checkDuplicateLimit(issued: Issuance[] | undefined, names: string[], now: Date): DuplicateCheck {
  const recent = recentIssuances(issued, names, now);
  if (recent.length < DUPLICATE_CERTIFICATE_LIMIT) return { allowed: true, count: recent.length };
  // the window admits one more once the oldest of the last LIMIT leaves it
  const oldest = recent[recent.length - DUPLICATE_CERTIFICATE_LIMIT]!;
  const retryAt = new Date(Date.parse(oldest.at) + DUPLICATE_CERTIFICATE_WINDOW_MS);
  return {
    allowed: false,
    reason: "DuplicateCertificateLimit",
    count: recent.length,
    retryAt,
    message:
      `DuplicateCertificateLimit: ${recent.length} certificates for exactly ${canonicalNames(names)} were ordered in the last 7 days ` +
      `(Let's Encrypt issues at most ${DUPLICATE_CERTIFICATE_LIMIT}); the next may be ordered after ${retryAt.toISOString()}; --force orders anyway`,
  };
}

/** The history with one more certificate ordered for `names` at `at` (entries outside the window dropped). */
export function withIssuance(h: TargetHistory, names: string[], at: Date): TargetHistory {
  const since = at.getTime() - DUPLICATE_CERTIFICATE_WINDOW_MS;
  const kept = (h.issued ?? []).filter((i) => Date.parse(i.at) > since);
  return { ...h, issued: [...kept, { at: at.toISOString(), names: canonicalNames(names) }].slice(-MAX_ISSUANCES) };
}

/** The history without the issuance recorded at `at` for `names` (its order failed before a certificate was issued). */
export function withoutIssuance(h: TargetHistory, names: string[], at: Date): TargetHistory {
  const set = canonicalNames(names);
  const iso = at.toISOString();
  const issued = (h.issued ?? []).filter((i) => !(i.at === iso && i.names === set));
  const { issued: _issued, ...rest } = h;
  return issued.length === 0 ? rest : { ...rest, issued };
}

/** A run before the CA's retryNotBefore orders nothing (unless forced). */
export function rateLimitedUntil(h: TargetHistory | undefined, now: Date, force: boolean): Date | undefined {
  if (force || !h?.retryNotBefore) return undefined;
  const until = new Date(h.retryNotBefore);
  return until.getTime() > now.getTime() ? until : undefined;
}
