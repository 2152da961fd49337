/**
 * The durable renewal history of one target: what a CronJob pod that starts fresh must know to report the same
 * consecutive-failure count and last success as a daemon that has run for weeks. Kept in the cluster (see
 * src/kubernetes/history-store.ts); read by the metrics, the scheduler and `amlcert status`.
 */
import type { OutcomeError, RunAction, TargetOutcome } from "../renewal/events.js";

export interface TargetHistory {
  fqdn: string;
  /** ISO timestamps */
  lastAttempt?: string;
  lastSuccess?: string;
  lastAction?: RunAction;
  lastReason?: string;
  consecutiveFailures: number;
  lastError?: OutcomeError;
  /** when the scheduler (or the retry table) will try next */
  nextAttempt?: string;
  /** the certificate in place after the last run that saw one */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  renewAt?: string;
  secret?: string;
  dnsOk?: boolean;
  servingOk?: boolean;
}

/** Where the history lives. One store per cluster; keyed by the target's FQDN. */
export interface HistoryStore {
  read(fqdn: string): Promise<TargetHistory | undefined>;
  /** Read, apply `update`, write back with optimistic concurrency (retrying a conflict within a bound). */
  update(fqdn: string, update: (previous: TargetHistory | undefined) => TargetHistory): Promise<TargetHistory>;
}
