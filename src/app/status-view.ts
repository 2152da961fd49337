/**
 * `amlcert status`: what the cluster says about each target (StatusFacts, gathered read-only: no writes, no ACME
 * calls) joined with its durable history, judged into one health word and an exit code, and shown as an aligned
 * table on a terminal or one JSON object per line (the StatusLine itself) otherwise.
 *
 * Health, the first that applies:
 * - "error":    the facts could not be read (the cluster or the extension refused or failed)
 * - "failing":  the last attempts failed (consecutiveFailures > 0), or the DNS or serving check is not ok
 * - "expiring": past the renewal time, fewer than 7 days left, or no certificate in place at all
 * - "ok"
 * Exit code (README "Exit codes"), the worst that applies (3 outranks 4, as for `renew`):
 * - 0 ok;
 * - the last error's exit code while failures repeat (3 for a failed renewal, 4 for a failed check after rollout,
 *   2 for configuration, 1 for an internal error);
 * - 4 when DNS or serving is not ok;
 * - 3 when expiring (the renewal that should have happened did not);
 * - for "error", the read error's own exit code.
 */
import { ExitCode } from "../errors.js";
import type { TargetHistory } from "../history/history.js";
import { errorExitCode } from "../history/record.js";
import { worstExitCode } from "./run.js";

/**
 * Slots mode: which slot azureml-fe is served from (undefined when the extension names no slot, or its last rollout
 * failed and nothing earlier is known to be served) and which one holds the rollback certificate (the other slot,
 * when it holds a certificate that was rolled out before; undefined when it is free or holds one never rolled out).
 */
export interface StatusSlots<T = Date> {
  served?: string;
  rollback?: { secret: string; serial?: string; notAfter?: T };
}

export interface StatusFacts {
  fqdn: string;
  secret?: string;
  /** slots mode only */
  slots?: StatusSlots;
  serial?: string;
  notAfter?: Date;
  renewAt?: Date;
  /** where renewAt came from: ari (the CA's window), renewBefore, or lifetime (2/3) */
  renewAtSource?: string;
  /** the plan's reason (e.g. UpToDate, InRenewalWindow, SecretMissing) or the error code */
  reason: string;
  /** where the target's certificate comes from: acme, or the Key Vault certificate / TLS secret (the source's origin) */
  source?: string;
  /** undefined when not checked now (the history's last result is used then) */
  dnsOk?: boolean;
  servingOk?: boolean;
  problems: string[];
  /** set when the facts could not be read */
  error?: StatusError;
}

export type StatusHealth = "ok" | "expiring" | "failing" | "error";

export interface StatusLine {
  fqdn: string;
  secret?: string;
  /** slots mode only: the served slot and the rollback slot (notAfter an ISO timestamp) */
  slots?: StatusSlots<string>;
  serial?: string;
  /** ISO timestamps */
  notAfter?: string;
  /** whole days until notAfter, rounded down (negative once expired) */
  daysLeft?: number;
  renewAt?: string;
  /** where renewAt came from: ari (the CA's window), renewBefore, or lifetime (2/3) */
  renewAtSource?: string;
  reason: string;
  /** where the target's certificate comes from (see StatusFacts.source) */
  source?: string;
  problems: string[];
  /** the last attempt's action (renewed, none, skipped), or "failed" when it ended with an error */
  lastResult?: string;
  /** the stage the last attempt failed in, when it failed */
  lastStage?: string;
  /** the most recent failure's error, kept after a later success (see lastFailure) */
  lastError?: StatusError;
  consecutiveFailures: number;
  lastSuccess?: string;
  lastFailure?: string;
  lastAttempt?: string;
  nextAttempt?: string;
  /** a rate limit said not to order before this (runs before it are skipped RateLimited unless forced) */
  retryNotBefore?: string;
  /** certificates ordered for the target's names in Let's Encrypt's 7-day duplicate-certificate window (at most 5) */
  ordersLast7Days?: number;
  dnsOk?: boolean;
  servingOk?: boolean;
  health: StatusHealth;
  exitCode: number;
  /** set when the facts could not be read */
  error?: StatusError;
}

const DAY_MS = 86_400_000;
/** fewer days left than this is "expiring", whatever the renewal time says */
export const EXPIRING_DAYS = 7;

/** An error as status shows it; exitCode is derived from code and stage when the reporter did not give it. */
export interface StatusError {
  code: string;
  stage: string;
  message: string;
  exitCode?: number;
}

const exitCodeOf = (e: StatusError): number => e.exitCode ?? errorExitCode(e.code, e.stage);

function slotsLine(s: StatusSlots): StatusSlots<string> {
  const r = s.rollback;
  return {
    ...(s.served ? { served: s.served } : {}),
    ...(r ? { rollback: { secret: r.secret, ...(r.serial ? { serial: r.serial } : {}), ...(r.notAfter ? { notAfter: r.notAfter.toISOString() } : {}) } } : {}),
  };
}

export function statusLine(facts: StatusFacts, history: TargetHistory | undefined, now: Date): StatusLine {
  // When the cluster could not be read, the history's record of the certificate is the best there is.
  const fallback = facts.error ? history : undefined;
  const notAfter = facts.notAfter?.toISOString() ?? fallback?.notAfter;
  const renewAt = facts.renewAt?.toISOString() ?? fallback?.renewAt;
  const failedLast = history?.lastFailure !== undefined && history.lastFailure === history.lastAttempt;
  const line: StatusLine = {
    fqdn: facts.fqdn,
    secret: facts.secret ?? fallback?.secret,
    ...(facts.slots ? { slots: slotsLine(facts.slots) } : {}),
    serial: facts.serial ?? fallback?.serial,
    notAfter,
    daysLeft: notAfter === undefined ? undefined : Math.floor((Date.parse(notAfter) - now.getTime()) / DAY_MS),
    renewAt,
    ...(facts.renewAtSource && facts.renewAt ? { renewAtSource: facts.renewAtSource } : {}),
    reason: facts.reason,
    ...(facts.source ? { source: facts.source } : {}),
    problems: [...facts.problems],
    lastResult: failedLast ? "failed" : history?.lastAction,
    lastStage: failedLast ? history?.lastError?.stage : undefined,
    lastError: history?.lastError,
    consecutiveFailures: history?.consecutiveFailures ?? 0,
    lastSuccess: history?.lastSuccess,
    lastFailure: history?.lastFailure,
    lastAttempt: history?.lastAttempt,
    nextAttempt: history?.nextAttempt,
    retryNotBefore: history?.retryNotBefore && Date.parse(history.retryNotBefore) > now.getTime() ? history.retryNotBefore : undefined,
    ordersLast7Days: history?.issued ? history.issued.filter((i) => Date.parse(i.at) > now.getTime() - 7 * DAY_MS).length : undefined,
    dnsOk: facts.dnsOk ?? history?.dnsOk,
    servingOk: facts.servingOk ?? history?.servingOk,
    health: "ok",
    exitCode: ExitCode.Ok,
    error: facts.error,
  };
  if (facts.error) return { ...line, health: "error", exitCode: exitCodeOf(facts.error) };

  const codes: number[] = [];
  const repeating = line.consecutiveFailures > 0;
  if (repeating) codes.push(history?.lastError ? exitCodeOf(history.lastError) : ExitCode.RenewalFailed);
  const checksFailed = line.dnsOk === false || line.servingOk === false;
  if (checksFailed) codes.push(ExitCode.VerificationFailed);
  const expiring =
    notAfter === undefined ||
    (renewAt !== undefined && now.getTime() >= Date.parse(renewAt)) ||
    Date.parse(notAfter) - now.getTime() < EXPIRING_DAYS * DAY_MS;
  if (expiring) codes.push(ExitCode.RenewalFailed);
  const health: StatusHealth = repeating || checksFailed ? "failing" : expiring ? "expiring" : "ok";
  return { ...line, health, exitCode: worstExitCode(codes) };
}

/** The exit code of `amlcert status` over all its targets. */
export function statusExitCode(lines: StatusLine[]): number {
  return worstExitCode(lines.map((l) => l.exitCode));
}

/** One JSON object per line, for scripts (stdout not a terminal, or --json). */
export function formatStatusJson(line: StatusLine): string {
  return JSON.stringify(line);
}

/** 2026-03-01T12:00Z: minutes are enough on a terminal, and the Z says it is UTC. */
const shortTime = (iso: string | undefined) => (iso === undefined ? "-" : `${iso.slice(0, 16)}Z`);
const check = (ok: boolean | undefined) => (ok === undefined ? "-" : ok ? "ok" : "FAILED");

/** kubectl-style: 45s, 12m, 3h, 2d; "in 3h" for the future, "3h ago" for the past. */
function relative(iso: string, now: Date): string {
  const ms = Date.parse(iso) - now.getTime();
  const s = Math.floor(Math.abs(ms) / 1000);
  const span = s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172_800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86_400)}d`;
  return ms > 0 ? `in ${span}` : `${span} ago`;
}

function lastResultCell(l: StatusLine): string {
  if (l.lastResult === undefined) return "-";
  if (l.lastResult === "failed") return l.lastStage ? `failed at ${l.lastStage}` : "failed";
  return l.lastResult;
}

const HEADERS = ["FQDN", "SECRET", "ROLLBACK", "SERIAL", "NOT AFTER", "DAYS", "RENEW AT", "LAST RESULT", "FAILURES", "DNS", "SERVING", "HEALTH"];

function cells(l: StatusLine): string[] {
  return [
    l.fqdn,
    l.secret ?? "-",
    l.slots?.rollback?.secret ?? "-",
    l.serial ?? "-",
    shortTime(l.notAfter),
    l.daysLeft === undefined ? "-" : String(l.daysLeft),
    shortTime(l.renewAt),
    lastResultCell(l),
    String(l.consecutiveFailures),
    check(l.dnsOk),
    check(l.servingOk),
    l.health,
  ];
}

/** What is wrong with a target that is not ok, and what comes next, in a sentence or two. */
function details(l: StatusLine, now: Date): string[] {
  if (l.health === "ok") return [];
  const out: string[] = [];
  const when = (label: string, iso: string | undefined) => (iso ? `${label} ${shortTime(iso)} (${relative(iso, now)})` : undefined);
  if (l.error) out.push(`cannot read the current state, ${l.error.stage} (${l.error.code}): ${l.error.message}`);
  if (l.consecutiveFailures > 0) {
    const e = l.lastError;
    out.push(
      `${l.consecutiveFailures === 1 ? "the last attempt failed" : `${l.consecutiveFailures} attempts in a row failed, the last`}${e ? ` at ${e.stage} (${e.code}): ${e.message}` : ""}`,
    );
  }
  if (!l.error) {
    if (l.notAfter === undefined) out.push(`no usable certificate in place (${l.reason})`);
    else if (l.daysLeft !== undefined && l.daysLeft < 0) out.push(`the certificate expired ${shortTime(l.notAfter)} (${relative(l.notAfter, now)})`);
    else if (l.renewAt !== undefined && now.getTime() >= Date.parse(l.renewAt)) out.push(`due for renewal since ${shortTime(l.renewAt)} (${relative(l.renewAt, now)})`);
    else if (Date.parse(l.notAfter) - now.getTime() < EXPIRING_DAYS * DAY_MS) out.push(`expires ${shortTime(l.notAfter)} (${relative(l.notAfter, now)})`);
    if (l.dnsOk === false) out.push("DNS check failed");
    if (l.servingOk === false) out.push("azureml-fe does not serve the certificate in place");
  }
  const rollback = l.slots?.rollback;
  if (rollback) out.push(`rollback certificate in slot ${rollback.secret}${rollback.serial ? `: serial ${rollback.serial}` : ""}${rollback.notAfter ? `, not after ${shortTime(rollback.notAfter)}` : ""}`);
  if (l.retryNotBefore) out.push(`rate limited: no order before ${shortTime(l.retryNotBefore)} (${relative(l.retryNotBefore, now)}); --force orders anyway`);
  if (l.ordersLast7Days !== undefined && l.ordersLast7Days >= 5) out.push(`${l.ordersLast7Days} certificates ordered for these names in the last 7 days (Let's Encrypt's duplicate-certificate limit is 5)`);
  const last = l.lastAttempt === undefined ? "no attempt recorded yet" : (when("last success", l.lastSuccess) ?? "no success recorded");
  const times = [last, when("next attempt", l.nextAttempt)].filter((t): t is string => t !== undefined);
  out.push(times.join("; "));
  return [...out, ...l.problems.map((p) => `problem: ${p}`)];
}

/** An aligned table, one row per target, then a few indented lines under each target that is not ok. */
export function formatStatusTable(lines: StatusLine[], now: Date): string {
  const rows = [HEADERS, ...lines.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const table = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
  const notes = lines.filter((l) => l.health !== "ok").map((l) => [`${l.fqdn}: ${l.health}`, ...details(l, now).map((d) => `  ${d}`)].join("\n"));
  return [table.join("\n"), ...notes].join("\n\n");
}
