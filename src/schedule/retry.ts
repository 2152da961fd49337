/**
 * When to try again after a failed run: a pure function of the failure count, the certificate's remaining lifetime
 * and the clock. The daemon asks it after every failure; the answer's `reason` names the rule that decided, for the
 * log and the history.
 */
import { createHash } from "node:crypto";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/**
 * The retry table: consecutive failures → delay before the next attempt. It starts in minutes (most failures are
 * transient: a throttled ARM call, a DNS server slow to serve the TXT value, a pod rolling) and backs off so a
 * persistent problem (a revoked role, a CA rate limit) is not hammered. The last row repeats.
 *
 *   failures | delay  | why
 *   ---------+--------+----------------------------------------------------------------------------------
 *       1    |  5 min | a transient error usually clears within minutes
 *       2    | 15 min |
 *       3    | 30 min | Let's Encrypt allows 5 failed validations per account and hostname per hour:
 *       4    |  1 h   |   from here on we stay well inside it
 *       5    |  2 h   |
 *       6+   |  4 h   | below the default 6-hourly schedule, so a failing target is still tried more often
 *
 * Then, in this order:
 *   - jitter: × a factor in [0.9, 1.1) fixed by `seed` (the FQDN and the failure count), so a fleet that failed
 *     together (a CA outage) does not come back together, yet the same input gives the same answer;
 *   - lifetime cap: at most 1/10 of the time left until notAfter, so retries tighten as expiry nears. Against the
 *     4 h row this binds with less than 40 h left: a 90-day or 45-day certificate (renewed 30 or 15 days before
 *     expiry) meets it only after days of failures; a 6-day certificate (renewed with 2 days left: 4.8 h cap) meets
 *     it within a day, and with 6 h left it is retried every 36 min;
 *   - expired: once notAfter has passed there is no lifetime left to protect; the table applies, capped at 1 h, so
 *     a broken endpoint is retried at least hourly without spending the CA's failed-validation limit;
 *   - floor: never less than 1 min (however close expiry is);
 *   - not before: a time the other side asked us to wait for (an ACME or ARM Retry-After) wins over all of the above.
 */
export const RETRY_TABLE_MS: readonly number[] = [5 * MINUTE, 15 * MINUTE, 30 * MINUTE, 1 * HOUR, 2 * HOUR, 4 * HOUR];
/** the share of the remaining lifetime a single wait may take */
export const LIFETIME_CAP_FRACTION = 1 / 10;
/** the longest wait once the certificate has expired */
export const EXPIRED_CAP_MS = 1 * HOUR;
/** the shortest wait, whatever else says */
export const RETRY_FLOOR_MS = 1 * MINUTE;
/** jitter: the delay is multiplied by a factor in [1 - JITTER, 1 + JITTER) */
export const RETRY_JITTER = 0.1;

/** Which rule fixed the delay (the last one that changed it). */
export type RetryReason =
  /** the table row, jittered */
  | "Table"
  /** 1/10 of the remaining lifetime was shorter than the table row */
  | "LifetimeCap"
  /** the certificate has expired: the table row, at most hourly */
  | "Expired"
  /** the 1-minute floor */
  | "Floor"
  /** the caller's not-before time */
  | "NotBefore";

export interface RetryInput {
  /** failures in a row, counting the one just seen (1 after the first failure) */
  consecutiveFailures: number;
  /** expiry of the certificate in place, when one is known */
  notAfter?: Date;
  now: Date;
  /** do not retry before this instant (e.g. a persisted Retry-After) */
  notBefore?: Date;
  /** fixes the jitter: e.g. `${fqdn}#${consecutiveFailures}` */
  seed: string;
}

export interface RetryDecision {
  delayMs: number;
  reason: RetryReason;
}

/** The table row for `failures` (1-based; anything below 1 counts as the first failure). */
export function retryTableDelay(failures: number): number {
  const row = Math.min(Math.max(1, Math.floor(failures)), RETRY_TABLE_MS.length);
  return RETRY_TABLE_MS[row - 1]!;
}

/** The jitter factor for `seed`, in [1 - RETRY_JITTER, 1 + RETRY_JITTER): stable for a seed, spread across seeds. */
export function retryJitterFactor(seed: string): number {
  const u = createHash("sha256").update(seed).digest().readUIntBE(0, 6) / 2 ** 48;
  return 1 - RETRY_JITTER + 2 * RETRY_JITTER * u;
}

export function retryDelay(input: RetryInput): RetryDecision {
  const now = input.now.getTime();
  let delayMs = Math.round(retryTableDelay(input.consecutiveFailures) * retryJitterFactor(input.seed));
  let reason: RetryReason = "Table";

  if (input.notAfter) {
    const left = input.notAfter.getTime() - now;
    if (left <= 0) {
      if (delayMs > EXPIRED_CAP_MS) {
        delayMs = EXPIRED_CAP_MS;
        reason = "Expired";
      }
    } else {
      const cap = Math.floor(left * LIFETIME_CAP_FRACTION);
      if (delayMs > cap) {
        delayMs = cap;
        reason = "LifetimeCap";
      }
    }
  }
  if (delayMs < RETRY_FLOOR_MS) {
    delayMs = RETRY_FLOOR_MS;
    reason = "Floor";
  }
  if (input.notBefore && input.notBefore.getTime() - now > delayMs) {
    delayMs = input.notBefore.getTime() - now;
    reason = "NotBefore";
  }
  return { delayMs, reason };
}
