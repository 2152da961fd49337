/**
 * Retry-After (RFC 9110 §10.2.3), read one way for every HTTP peer amlcert retries (ACME, ARM, Key Vault, the
 * Kubernetes API): delay-seconds (a decimal fraction tolerated, as Azure sends) or an HTTP-date, as milliseconds
 * from `nowMs`; undefined when absent or unreadable. A date in the past is 0.
 */
export function parseRetryAfter(value: unknown, nowMs: number): number | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  if (typeof first !== "string") return undefined;
  const text = first.trim();
  if (text === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : undefined;
}
