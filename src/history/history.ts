/**
 * The durable renewal history of one target: what a CronJob pod that starts fresh must know to report the same
 * consecutive-failure count and last success as a daemon that has run for weeks. Kept in the cluster (see
 * src/kubernetes/history-store.ts); read by the metrics, the scheduler and `amlcert status`. Kubernetes Events are
 * not a history: the API server drops them after an hour.
 *
 * How one run's outcome changes it is one pure function, `nextHistory` in src/history/record.ts.
 */
import type { OutcomeError, RunAction } from "../renewal/events.js";

export interface TargetHistory {
  fqdn: string;
  /** ISO timestamps */
  lastAttempt?: string;
  /** the last attempt that ended without an error (renewed, or nothing to do and the certificate in place verified) */
  lastSuccess?: string;
  /** the last attempt that ended with an error; `lastError` is that attempt's error */
  lastFailure?: string;
  lastAction?: RunAction;
  lastReason?: string;
  /** failed attempts since the last success; a skipped attempt (another run held the lock) changes nothing */
  consecutiveFailures: number;
  /** the error of the most recent failed attempt, kept after a later success (compare `lastFailure` with `lastSuccess`) */
  lastError?: OutcomeError;
  /** when the scheduler (or the retry table) will try next; absent when the run that wrote this did not say */
  nextAttempt?: string;
  /** the certificate in place after the last run that saw one */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  renewAt?: string;
  secret?: string;
  /** the checks of the last attempt that ran them (a skipped attempt keeps the previous values) */
  dnsOk?: boolean;
  servingOk?: boolean;
}

/** Where the history lives. One store per cluster; keyed by the target's FQDN. */
export interface HistoryStore {
  /** undefined when the target has no history yet (or its stored value is unreadable, which is logged as a warning) */
  read(fqdn: string): Promise<TargetHistory | undefined>;
  /** Read, apply `update`, write back with optimistic concurrency (retrying a conflict within a bound). `update` is
   * called again on fresh state after each conflict, so it must be a pure function of `previous` (nextHistory is). */
  update(fqdn: string, update: (previous: TargetHistory | undefined) => TargetHistory): Promise<TargetHistory>;
}
