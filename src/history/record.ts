/**
 * How one run changes a target's durable history, and how a history is written to and read from its stored text.
 * Pure: no clock, no I/O. The store (src/kubernetes/history-store.ts) calls `nextHistory` inside its
 * read-modify-write, so it may run more than once on fresh state after a conflict.
 */
import { AmlcertError, ExitCode, Stages, type ErrorCode, type Stage } from "../errors.js";
import type { OutcomeError, RunAction, TargetOutcome } from "../renewal/events.js";
import { scrub } from "../observability/logger.js";
import type { TargetHistory } from "./history.js";

/** Error messages are capped so that one verbose failure cannot grow the history object without bound. */
export const MAX_ERROR_MESSAGE = 1024;

const ACTIONS: readonly RunAction[] = ["renewed", "none", "skipped", "failed"];
const CERTIFICATE_FIELDS = ["serial", "notBefore", "notAfter", "renewAt"] as const;

/** A run counts as failed when it says so, or when it reports an error (e.g. the certificate in place is not served). */
export function isFailure(outcome: Pick<TargetOutcome, "action" | "error">): boolean {
  return outcome.action === "failed" || (outcome.action !== "skipped" && outcome.error !== undefined);
}

/** The exit code amlcert gives an error of this code and stage (the registry in src/errors.ts); 1 for INTERNAL or an unknown stage. */
export function errorExitCode(code: string, stage: string): number {
  if (code === "INTERNAL" || !(Stages as readonly string[]).includes(stage)) return ExitCode.Internal;
  return new AmlcertError(code as ErrorCode, stage as Stage, "").exitCode;
}

function recordedError(e: OutcomeError): OutcomeError {
  const message = scrub(e.message);
  return {
    code: e.code,
    stage: e.stage,
    message: message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE - 1)}…` : message,
    exitCode: e.exitCode,
  };
}

/**
 * The history after `outcome`, attempted at `now`:
 * - success ("renewed" or "none" without an error): consecutiveFailures 0, lastSuccess now;
 * - failure ("failed", or any non-skipped outcome with an error): consecutiveFailures + 1, lastFailure now, lastError
 *   the outcome's; lastSuccess kept;
 * - "skipped" (another run held the lock): neither counter nor the checks change (a skipped run checked nothing),
 *   only lastAttempt, lastAction and lastReason.
 * The certificate facts are the outcome's when it carries them and kept otherwise; when the outcome names another
 * serial than the history, the facts of the previous certificate (renewAt, notBefore, ...) are dropped, not mixed in.
 * nextAttempt is `nextAttempt`, or absent: a time planned by an earlier run is stale once this one ran.
 */
export function nextHistory(previous: TargetHistory | undefined, outcome: TargetOutcome, now: Date, nextAttempt?: Date): TargetHistory {
  const at = now.toISOString();
  const next: TargetHistory = { ...(previous ?? { consecutiveFailures: 0 }), fqdn: outcome.fqdn };
  next.lastAttempt = at;
  next.lastAction = outcome.action;
  if (outcome.reason) next.lastReason = outcome.reason;
  else delete next.lastReason;
  if (nextAttempt) next.nextAttempt = nextAttempt.toISOString();
  else delete next.nextAttempt;
  if (outcome.action === "skipped") return next;

  if (isFailure(outcome)) {
    next.consecutiveFailures = (previous?.consecutiveFailures ?? 0) + 1;
    next.lastFailure = at;
    if (outcome.error) next.lastError = recordedError(outcome.error);
    else delete next.lastError;
  } else {
    next.consecutiveFailures = 0;
    next.lastSuccess = at;
  }

  if (outcome.serial !== undefined && outcome.serial !== previous?.serial) {
    for (const k of CERTIFICATE_FIELDS) {
      if (outcome[k] !== undefined) next[k] = outcome[k];
      else delete next[k];
    }
  } else {
    for (const k of CERTIFICATE_FIELDS) if (outcome[k] !== undefined) next[k] = outcome[k];
  }
  if (outcome.secret !== undefined) next.secret = outcome.secret;
  next.dnsOk = outcome.dnsOk;
  next.servingOk = outcome.servingOk;
  return next;
}

/** The stored text of a history (one ConfigMap value). Field order is fixed, so equal histories are equal text. */
export function encodeHistory(h: TargetHistory): string {
  return JSON.stringify({
    fqdn: h.fqdn,
    lastAttempt: h.lastAttempt,
    lastSuccess: h.lastSuccess,
    lastFailure: h.lastFailure,
    lastAction: h.lastAction,
    lastReason: h.lastReason,
    consecutiveFailures: h.consecutiveFailures,
    lastError: h.lastError && { code: h.lastError.code, stage: h.lastError.stage, message: h.lastError.message, exitCode: h.lastError.exitCode },
    nextAttempt: h.nextAttempt,
    serial: h.serial,
    notBefore: h.notBefore,
    notAfter: h.notAfter,
    renewAt: h.renewAt,
    secret: h.secret,
    dnsOk: h.dnsOk,
    servingOk: h.servingOk,
  });
}

export type DecodedHistory = { history: TargetHistory } | { problem: string };

const TIME_FIELDS = ["lastAttempt", "lastSuccess", "lastFailure", "nextAttempt", "notBefore", "notAfter", "renewAt"] as const;
const TEXT_FIELDS = ["lastReason", "serial", "secret"] as const;
const FLAG_FIELDS = ["dnsOk", "servingOk"] as const;

/**
 * Read the stored text of `fqdn`'s history. Anything that is not a history amlcert wrote (bad JSON, a wrong type, a
 * record of another FQDN) is a `problem`, never an exception: the caller treats it as no history. Unknown fields are
 * dropped, so a newer amlcert's additions do not break an older one.
 */
export function decodeHistory(fqdn: string, text: string): DecodedHistory {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { problem: `not JSON (${(err as Error).message})` };
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return { problem: "not a JSON object" };
  const o = raw as Record<string, unknown>;
  if (o.fqdn !== undefined && o.fqdn !== fqdn) return { problem: `it is the history of ${JSON.stringify(o.fqdn)}` };
  const failures = o.consecutiveFailures;
  if (typeof failures !== "number" || !Number.isSafeInteger(failures) || failures < 0) return { problem: "consecutiveFailures is not a non-negative integer" };
  const h: TargetHistory = { fqdn, consecutiveFailures: failures };
  for (const k of TIME_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== "string" || Number.isNaN(Date.parse(v))) return { problem: `${k} is not a timestamp` };
    h[k] = v;
  }
  for (const k of TEXT_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== "string") return { problem: `${k} is not a string` };
    h[k] = v;
  }
  for (const k of FLAG_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== "boolean") return { problem: `${k} is not a boolean` };
    h[k] = v;
  }
  if (o.lastAction !== undefined) {
    if (!ACTIONS.includes(o.lastAction as RunAction)) return { problem: "lastAction is not one of renewed, none, skipped, failed" };
    h.lastAction = o.lastAction as RunAction;
  }
  if (o.lastError !== undefined) {
    const e = o.lastError as Record<string, unknown> | null;
    if (!e || typeof e !== "object" || typeof e.code !== "string" || typeof e.stage !== "string" || typeof e.message !== "string") {
      return { problem: "lastError is not an object with code, stage and message" };
    }
    // an unknown stage is kept as written (a newer amlcert may have more); a missing exit code is derived from the registry
    const exitCode = typeof e.exitCode === "number" && Number.isSafeInteger(e.exitCode) ? e.exitCode : errorExitCode(e.code, e.stage);
    h.lastError = { code: e.code, stage: e.stage as OutcomeError["stage"], message: e.message, exitCode };
  }
  return { history: h };
}
