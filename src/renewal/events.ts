/**
 * What one renewal run tells the world while it goes. The use case emits these typed events and returns a typed
 * outcome; the logger, the Kubernetes Events, the metrics and the durable history are subscribers. No metric or
 * event call is sprinkled through the flow.
 */
import type { ErrorCode, Stage } from "../errors.js";

/** How a run for one target ended. */
export type RunAction = "renewed" | "none" | "skipped" | "failed";

export interface OutcomeError {
  code: ErrorCode | string;
  stage: Stage;
  message: string;
  /** the documented exit code this failure maps to (src/errors.ts ExitCode): 1 for an internal error */
  exitCode: number;
  /** a rate limit said "not before this" (ISO; from the error's details.retryAt): the next run waits for it */
  retryAt?: string;
}

/** The facts of one run for one target: what the CLI prints, what the history and the metrics record. */
export interface TargetOutcome {
  fqdn: string;
  action: RunAction;
  /** a renewal reason (plan.ts), LockHeld, or the error code of a failure before planning */
  reason: string;
  /** the certificate in place after the run: the one rolled out by this run, else the one planned on */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  /** when the certificate in place is due for renewal */
  renewAt?: string;
  /** where renewAt came from: the CA's ARI window, renewBefore, or 2/3 of the lifetime */
  renewAtSource?: string;
  secret?: string;
  /** the version this run stored or reused, when it got that far (rolled out or not) */
  storedSecret?: string;
  extensionUpdated: boolean;
  dnsOk: boolean;
  servingOk: boolean;
  durationMs: number;
  error?: OutcomeError;
}

export interface CertificateFacts {
  serial: string;
  notBefore: string;
  notAfter: string;
  renewAt?: string;
  /** "ari" | "lifetime" | "renewBefore" (plan.ts RenewAtSource) */
  renewAtSource?: string;
}

export type RenewalEvent =
  | { type: "run-started"; fqdn: string; at: Date }
  | { type: "stage-started"; fqdn: string; stage: Stage; at: Date }
  | { type: "stage-finished"; fqdn: string; stage: Stage; at: Date; durationMs: number; ok: boolean }
  | { type: "planned"; fqdn: string; at: Date; renew: boolean; reason: string; message: string; secret?: string; current?: CertificateFacts }
  | { type: "dns-checked"; fqdn: string; at: Date; ok: boolean; problems: string[] }
  | { type: "stored"; fqdn: string; at: Date; secret: string; reused: boolean; certificate: CertificateFacts }
  | { type: "rolled-out"; fqdn: string; at: Date; secret: string; changed: boolean }
  /** after a rollout (newCertificate) or, with nothing to renew, of the certificate in place */
  | { type: "verified"; fqdn: string; at: Date; secret: string; newCertificate: boolean; dnsOk: boolean; servingOk: boolean; problem?: string }
  | { type: "run-finished"; fqdn: string; at: Date; outcome: TargetOutcome };

export type RenewalEventType = RenewalEvent["type"];
/** A subscriber. One that returns a promise (a Kubernetes Event, a history write) is awaited by `flush`. */
export type EventSink = (event: RenewalEvent) => void | Promise<void>;

export interface EventBus {
  emit: (event: RenewalEvent) => void;
  /** Wait for every asynchronous subscriber's work on the events emitted so far. */
  flush(): Promise<void>;
}

/** Fan each event out to every subscriber. A subscriber that throws or rejects never breaks the run (nor the others). */
export function createEventBus(sinks: EventSink[], onError: (err: unknown, event: RenewalEvent) => void): EventBus {
  const pending = new Set<Promise<void>>();
  const emit = (event: RenewalEvent) => {
    for (const sink of sinks) {
      try {
        const p = sink(event);
        if (p) {
          const tracked: Promise<void> = p.catch((err: unknown) => onError(err, event)).finally(() => pending.delete(tracked));
          pending.add(tracked);
        }
      } catch (err) {
        onError(err, event);
      }
    }
  };
  const flush = async () => {
    while (pending.size > 0) await Promise.all([...pending]);
  };
  return { emit, flush };
}
