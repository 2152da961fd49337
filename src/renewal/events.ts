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
}

/** The facts of one run for one target: what the CLI prints, what the history and the metrics record. */
export interface TargetOutcome {
  fqdn: string;
  action: RunAction;
  /** a renewal reason (plan.ts), LockHeld, or the error code of a failure before planning */
  reason: string;
  /** the certificate in place after the run (the new one when renewed) */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  /** when the certificate in place is due for renewal */
  renewAt?: string;
  secret?: string;
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
}

export type RenewalEvent =
  | { type: "run-started"; fqdn: string; at: Date }
  | { type: "stage-started"; fqdn: string; stage: Stage; at: Date }
  | { type: "stage-finished"; fqdn: string; stage: Stage; at: Date; durationMs: number; ok: boolean }
  | { type: "planned"; fqdn: string; at: Date; renew: boolean; reason: string; message: string; current?: CertificateFacts }
  | { type: "stored"; fqdn: string; at: Date; secret: string; reused: boolean; certificate: CertificateFacts }
  | { type: "rolled-out"; fqdn: string; at: Date; secret: string; changed: boolean }
  | { type: "verified"; fqdn: string; at: Date; secret: string; dnsOk: boolean; servingOk: boolean; problem?: string }
  | { type: "run-finished"; fqdn: string; at: Date; outcome: TargetOutcome };

export type RenewalEventType = RenewalEvent["type"];
export type EventSink = (event: RenewalEvent) => void;

/** Fan one event out to every subscriber. A subscriber that throws never breaks the run (nor the others). */
export function fanOut(sinks: EventSink[], onError?: (err: unknown, event: RenewalEvent) => void): EventSink {
  return (event) => {
    for (const sink of sinks) {
      try {
        sink(event);
      } catch (err) {
        onError?.(err, event);
      }
    }
  };
}
