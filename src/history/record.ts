/**
 * How one run changes a target's durable history, and how a history is written to and read from its stored text.
 * Pure: no clock, no I/O. The store (src/kubernetes/history-store.ts) calls `nextHistory` inside its
 * read-modify-write, so it may run more than once on fresh state after a conflict.
 */
import { AmlcertError, ExitCode, Stages, type ErrorCode, type Stage } from "../errors.js";
import type { OutcomeError, RunAction, TargetOutcome } from "../renewal/events.js";
import { scrub } from "../observability/logger.js";
import type { Issuance, JournalTxt, RunJournal, TargetHistory } from "./history.js";
import { MAX_JOURNAL_TXT } from "./journal.js";

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
    ...(e.retryAt ? { retryAt: e.retryAt } : {}),
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
 * retryNotBefore is the failure's retryAt (a rate limit), dropped by a success or a failure without one, kept by a skip.
 * The journal: a finished run has no order in flight; its stored secret is settled once it is the secret in place;
 * TXT values it could not remove stay for the next run to remove.
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

  if (outcome.error?.retryAt) next.retryNotBefore = outcome.error.retryAt;
  else delete next.retryNotBefore;
  if (next.journal) {
    const { order: _order, stored, ...rest } = next.journal;
    const settled = stored !== undefined && outcome.secret === stored.secret;
    const journal: RunJournal = { ...rest, ...(stored && !settled ? { stored } : {}) };
    if (journal.txt.length === 0 && !journal.stored) delete next.journal;
    else next.journal = journal;
  }

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
    lastError: h.lastError && { code: h.lastError.code, stage: h.lastError.stage, message: h.lastError.message, exitCode: h.lastError.exitCode, retryAt: h.lastError.retryAt },
    nextAttempt: h.nextAttempt,
    serial: h.serial,
    notBefore: h.notBefore,
    notAfter: h.notAfter,
    renewAt: h.renewAt,
    secret: h.secret,
    dnsOk: h.dnsOk,
    servingOk: h.servingOk,
    retryNotBefore: h.retryNotBefore,
    issued: h.issued?.map((i) => ({ at: i.at, names: i.names })),
    journal: h.journal && {
      holder: h.journal.holder,
      txt: h.journal.txt.map((t) => ({ record: t.record, zone: t.zone, value: t.value })),
      order: h.journal.order && { names: h.journal.order.names, at: h.journal.order.at, url: h.journal.order.url },
      stored: h.journal.stored && { secret: h.journal.stored.secret, serial: h.journal.stored.serial, at: h.journal.stored.at },
    },
  });
}

export type DecodedHistory = { history: TargetHistory } | { problem: string };

const TIME_FIELDS = ["lastAttempt", "lastSuccess", "lastFailure", "nextAttempt", "notBefore", "notAfter", "renewAt", "retryNotBefore"] as const;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isTime = (v: unknown): v is string => typeof v === "string" && !Number.isNaN(Date.parse(v));
const isText = (v: unknown): v is string => typeof v === "string" && v.length > 0;

function decodeIssued(v: unknown): Issuance[] | string {
  if (!Array.isArray(v)) return "issued is not a list";
  const out: Issuance[] = [];
  for (const i of v) {
    if (!isObj(i) || !isTime(i.at) || !isText(i.names)) return "issued has an entry without a timestamp `at` and `names`";
    out.push({ at: i.at, names: i.names });
  }
  return out;
}

function decodeJournal(v: unknown): RunJournal | string {
  if (!isObj(v)) return "journal is not an object";
  if (!Array.isArray(v.txt) || v.txt.length > MAX_JOURNAL_TXT) return `journal.txt is not a list of at most ${MAX_JOURNAL_TXT} values`;
  const txt: JournalTxt[] = [];
  for (const t of v.txt) {
    if (!isObj(t) || !isText(t.record) || !isText(t.zone) || !isText(t.value)) return "journal.txt has an entry without record, zone and value";
    txt.push({ record: t.record, zone: t.zone, value: t.value });
  }
  const j: RunJournal = { txt };
  if (v.holder !== undefined) {
    if (typeof v.holder !== "string") return "journal.holder is not a string";
    j.holder = v.holder;
  }
  if (v.order !== undefined) {
    const o = v.order;
    if (!isObj(o) || !isText(o.names) || !isTime(o.at) || (o.url !== undefined && typeof o.url !== "string")) return "journal.order is not an object with names and at";
    j.order = { names: o.names, at: o.at, ...(typeof o.url === "string" ? { url: o.url } : {}) };
  }
  if (v.stored !== undefined) {
    const st = v.stored;
    if (!isObj(st) || !isText(st.secret) || typeof st.serial !== "string" || !isTime(st.at)) return "journal.stored is not an object with secret, serial and at";
    j.stored = { secret: st.secret, serial: st.serial, at: st.at };
  }
  return j;
}
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
    h.lastError = { code: e.code, stage: e.stage as OutcomeError["stage"], message: e.message, exitCode, ...(isTime(e.retryAt) ? { retryAt: e.retryAt } : {}) };
  }
  if (o.issued !== undefined) {
    const issued = decodeIssued(o.issued);
    if (typeof issued === "string") return { problem: issued };
    h.issued = issued;
  }
  if (o.journal !== undefined) {
    const journal = decodeJournal(o.journal);
    if (typeof journal === "string") return { problem: journal };
    h.journal = journal;
  }
  return { history: h };
}
