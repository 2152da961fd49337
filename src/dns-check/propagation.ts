/**
 * Wait until a TXT value is (or is no longer) served by every authoritative server of its zone. Asks each server
 * directly (no recursive resolver, no cache), checks at once and then again after a gap that grows with the time
 * waited (a tenth of it, at least `minIntervalMs`, at most `intervalMs`, on the injected clock), and gives up after
 * `timeoutMs` naming the servers that still disagree.
 *
 * Why the growing gap: a value usually reaches Azure DNS's servers within a second or two, so a fixed 5 s interval
 * made every renewal wait up to 5 s too long, while polling every 100 ms for ten minutes would hammer the servers
 * when a delegation is broken. With a tenth of the time waited, the answer comes at most ~10% after the value is
 * served (100 ms for the first second), and a zone that never serves it costs ~50 rounds in the first minute,
 * then one every `intervalMs`.
 *
 * `settleMs` (dns.propagationSettle, default 0) is an optional fixed wait after every server serves the value,
 * for CAs whose validation perspectives reach other anycast sites than ours (bench/README.md says why it is 0).
 */
import { AmlcertError } from "../errors.js";
import type { Clock, DnsLookup } from "../ports.js";
import type { LogSink } from "../observability/logger.js";
import { normalizeName } from "./names.js";

/** The part of a pino logger this module uses. */
export type PropagationLogger = Pick<LogSink, "debug" | "info">;

export interface WaitForTxtInput {
  lookup: DnsLookup;
  /** the record's absolute name, e.g. `_acme-challenge.www.example.com` */
  name: string;
  value: string;
  /** authoritative servers (`ip`, `ip:port`, `[v6]:port`), from `authoritativeServers` */
  servers: string[];
  timeoutMs: number;
  /** the longest gap between two rounds */
  intervalMs: number;
  /** the shortest gap (the first ones); default FIRST_GAP_MS, and never more than intervalMs */
  minIntervalMs?: number;
  /** waitForTxt only: wait this long more once every server serves the value (default 0) */
  settleMs?: number;
  clock: Clock;
  logger: PropagationLogger;
  /** stops the wait at once (SIGTERM, daemon stop) */
  signal?: AbortSignal;
}

export interface WaitResult {
  /** how many rounds of queries it took */
  attempts: number;
  elapsedMs: number;
}

type Goal = "present" | "absent";

/** a server's state in one round: done, or why not */
interface ServerState {
  server: string;
  done: boolean;
  /** when the query failed: the DnsLookupError's code or message */
  error?: string;
}

/** The first gaps between rounds: a value usually propagates within a second or two. */
export const FIRST_GAP_MS = 100;
/** The gap is this fraction of the time waited so far (between the first gap and intervalMs). */
const GAP_FRACTION = 0.1;

/** The gap after a round `elapsedMs` into the wait. */
export function nextGapMs(elapsedMs: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, Math.max(minMs, Math.round(elapsedMs * GAP_FRACTION)));
}

/** How many rounds the schedule makes within `timeoutMs` when every sleep lasts exactly its gap (the last one cut
 * to the deadline): the bound on rounds that does not depend on the clock advancing. */
export function roundsWithin(timeoutMs: number, minMs: number, maxMs: number): number {
  let rounds = 1;
  for (let t = 0; t < timeoutMs; rounds++) t += Math.min(nextGapMs(t, minMs, maxMs), timeoutMs - t);
  return rounds;
}

/** Short, log-safe form of a challenge value. */
const preview = (value: string) => (value.length > 8 ? `${value.slice(0, 8)}…` : value);

async function checkServer(lookup: DnsLookup, name: string, value: string, server: string, goal: Goal): Promise<ServerState> {
  try {
    const values = await lookup.txt(name, [server]);
    return { server, done: values.includes(value) === (goal === "present") };
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    return { server, done: false, error: typeof code === "string" ? code : err instanceof Error ? err.message : String(err) };
  }
}

async function waitFor(input: WaitForTxtInput, goal: Goal): Promise<WaitResult> {
  const { lookup, value, servers, timeoutMs, intervalMs, clock, logger } = input;
  const minIntervalMs = Math.min(input.minIntervalMs ?? FIRST_GAP_MS, intervalMs);
  const name = normalizeName(input.name);
  if (servers.length === 0) {
    throw new AmlcertError("INTERNAL", "propagation", `no authoritative servers given to check TXT ${name}`);
  }
  if (!(intervalMs > 0) || !(minIntervalMs > 0) || !(timeoutMs >= 0) || !((input.settleMs ?? 0) >= 0)) {
    throw new AmlcertError("INTERNAL", "propagation", `invalid propagation timing: timeoutMs=${timeoutMs}, intervalMs=${intervalMs}, minIntervalMs=${minIntervalMs}, settleMs=${input.settleMs}`);
  }
  const start = clock.now().getTime();
  const deadline = start + timeoutMs;
  // a second bound that does not depend on the clock advancing
  const maxAttempts = roundsWithin(timeoutMs, minIntervalMs, intervalMs);
  const what = `TXT ${name} value "${preview(value)}"`;
  for (let attempt = 1; ; attempt++) {
    const states = await Promise.all(servers.map((s) => checkServer(lookup, name, value, s, goal)));
    const pending = states.filter((s) => !s.done);
    const elapsedMs = clock.now().getTime() - start;
    if (pending.length === 0) {
      logger.info({ record: name, value: preview(value), servers, attempts: attempt, elapsedMs }, goal === "present" ? "TXT value served by every authoritative server" : "TXT value gone from every authoritative server");
      const settleMs = goal === "present" ? (input.settleMs ?? 0) : 0;
      if (settleMs > 0) {
        logger.info({ record: name, settleMs }, "waiting dns.propagationSettle before the CA is told to validate");
        await clock.sleep(settleMs, input.signal);
      }
      return { attempts: attempt, elapsedMs };
    }
    const remaining = deadline - clock.now().getTime();
    const lacking = pending.map((s) => (s.error ? `${s.server} (${s.error})` : s.server));
    if (remaining <= 0 || attempt >= maxAttempts) {
      const verb = goal === "present" ? "not yet served by" : "still served by";
      throw new AmlcertError(
        "DNS_PROPAGATION_TIMEOUT",
        "propagation",
        `${what} ${verb} ${pending.length} of ${servers.length} authoritative server(s) after ${timeoutMs} ms: ${lacking.join(", ")}`,
        { details: { record: name, value: preview(value), goal, servers, pending: lacking, attempts: attempt, timeoutMs } },
      );
    }
    logger.debug({ record: name, value: preview(value), goal, pending: lacking, attempt }, "waiting for authoritative servers");
    await clock.sleep(Math.min(nextGapMs(elapsedMs, minIntervalMs, intervalMs), remaining), input.signal);
  }
}

/** Resolve once every server in `servers` returns `value` among the TXT values at `name`; throws
 * AmlcertError(DNS_PROPAGATION_TIMEOUT, stage propagation) after `timeoutMs`, naming the servers that lack it. A server
 * that fails to answer counts as lacking the value (and is named with its error). */
export function waitForTxt(input: WaitForTxtInput): Promise<WaitResult> {
  return waitFor(input, "present");
}

/** Resolve once no server in `servers` returns `value` at `name` (other values may remain): the cleanup check.
 * Same bounds and error as `waitForTxt`. */
export function waitForTxtGone(input: WaitForTxtInput): Promise<WaitResult> {
  return waitFor(input, "absent");
}
