/** What one target's renewal is given: its ports (built by src/app/compose.ts, faked in unit tests) and its settings. */
import type { CertificateSource, Clock, DnsLookup, DnsZone, ExtensionClient, KubeCluster, TlsProbe } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import type { EventSink } from "./events.js";
import type { JournalTxt, TargetHistory } from "../history/history.js";
import type { HistoryChange } from "../history/journal.js";

/**
 * The target's durable history as the run's journal (C2, src/history/journal.ts): read once by reconcile, changed
 * in batches. Built by compose.ts over the history ConfigMap.
 */
export interface RunJournalPort {
  /** the target's history as the run finds it, its journal included (undefined: none yet, or unreadable) */
  read(): Promise<TargetHistory | undefined>;
  /** change the durable history; changes made while a write is in flight are written together. Rejects when the write failed. */
  change(change: HistoryChange): Promise<TargetHistory>;
  /** remove a TXT value a journal names, from its zone (logs, never throws; the journal entry is dropped once removed) */
  removeTxt(t: JournalTxt): Promise<void>;
  /** this process's Lease holder identity, recorded with what the run places */
  holder?: string;
}

/** Mutual exclusion between runs on one cluster (a Kubernetes Lease). */
export interface RunLock {
  /**
   * Once held: a signal for the rest of the run, aborted when `signal` aborts or the lock is lost to another run.
   * undefined when another live run holds it (after waiting, bounded, for a crashed holder's lease to lapse).
   */
  acquire(signal?: AbortSignal): Promise<AbortSignal | undefined>;
  release(): Promise<void>;
}

export interface RenewDeps {
  /** process-wide preconditions (the Azure sign-in), checked before the lock; a failure fails the run at preflight */
  ready?: () => Promise<void>;
  kube: KubeCluster;
  /** taken before anything is read, so the plan is made on the state no other run is changing */
  lock?: RunLock;
  extension: ExtensionClient;
  zone: DnsZone;
  lookup: DnsLookup;
  nameServersOf: (zone: DnsZone) => Promise<string[]>;
  source: CertificateSource;
  tlsProbe: TlsProbe;
  clock: Clock;
  logger: Logger;
  /** subscribers to the run's events (logger summary, Kubernetes Events, metrics, history) */
  events?: EventSink[];
  /** the run journal (crash recovery, rate-limit state): src/renewal/reconcile.ts */
  journal?: RunJournalPort;
}

export interface RenewSettings {
  fqdn: string;
  /** fqdn first, then extra SANs */
  names: string[];
  secretName: string;
  /** slots (default): two fixed secrets <secretName>-a/-b; versioned: a new secret per certificate; fixed: <secretName> */
  secretMode: "slots" | "versioned" | "fixed";
  keepPrevious: number;
  /** the configured certificate key type (acme.keyType): a stored certificate of another type is not reused */
  keyType?: string;
  renewBeforeMs?: number;
  force: boolean;
  /** renew --enable-tls: an extension with allowInsecureConnections=True gets the new certificate and TLS on in one update */
  enableTls?: boolean;
  expectedAddress?: string;
  /** TLS check target; host defaults to the expected address */
  probe: { host?: string; port: number };
  manageRecord: boolean;
  recordTtlSeconds: number;
  /** the "system resolver" check; undefined = the system's own */
  resolvers?: string[];
  verifyTimeoutMs: number;
  verifyIntervalMs: number;
  /** how long to wait for a busy extension (an operation Updating/Creating/Deleting) before skipping; default 10 min */
  extensionBusyTimeoutMs?: number;
  /** between reads of a busy extension; default 15 s */
  extensionBusyIntervalMs?: number;
}
