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
  /** a CA said "not before this" (a 429 with a long Retry-After, or the duplicate-certificate limit): a run before it
   * orders nothing and is skipped (`RateLimited`) unless forced */
  retryNotBefore?: string;
  /** certificates ordered for this target within the duplicate-certificate window (./rate-limit.ts), newest last */
  issued?: Issuance[];
  /** what the last run placed and has not yet taken back (./journal.ts); absent when nothing is outstanding */
  journal?: RunJournal;
}

/** One certificate ordered (counted from just before the order: a run that crashed after finalizing counts too). */
export interface Issuance {
  /** ISO timestamp */
  at: string;
  /** the exact name set, canonical: lower case, sorted, comma-joined (Let's Encrypt counts per exact set) */
  names: string;
}

/** A TXT value a run placed: its record, the zone that holds it, the value. Only values a journal names are ever removed by a later run. */
export interface JournalTxt {
  record: string;
  zone: string;
  value: string;
}

/**
 * What a run placed before relying on it, written before it is placed and dropped once it is taken back or
 * referenced, so a run that is killed (SIGKILL, OOM, node loss) leaves the next run a list of exactly what to undo.
 */
export interface RunJournal {
  /** the Lease holder of the run that wrote it */
  holder?: string;
  /** TXT values added (or about to be) and not yet removed */
  txt: JournalTxt[];
  /** an order in flight: its names and when it started (the CA's order URL when the source reports one) */
  order?: { names: string; at: string; url?: string };
  /** a secret (slot or version) stored with a new certificate and not yet referenced by the extension */
  stored?: { secret: string; serial: string; at: string };
}

/** Where the history lives. One store per cluster; keyed by the target's FQDN. */
export interface HistoryStore {
  /** undefined when the target has no history yet (or its stored value is unreadable, which is logged as a warning) */
  read(fqdn: string): Promise<TargetHistory | undefined>;
  /** Read, apply `update`, write back with optimistic concurrency (retrying a conflict within a bound). `update` is
   * called again on fresh state after each conflict, so it must be a pure function of `previous` (nextHistory is). */
  update(fqdn: string, update: (previous: TargetHistory | undefined) => TargetHistory): Promise<TargetHistory>;
}
