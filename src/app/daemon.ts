/**
 * `amlcert daemon`'s scheduling core: one loop over the targets, on an injected clock.
 *
 * - Each target is due at the next cron time plus its own offset (src/schedule/offset.ts), so a fleet on the
 *   default schedule spreads over `daemon.jitter` instead of arriving at the same second.
 * - At start every target is checked at once (`runAtStart`), unless the history says a retry is pending: a restart
 *   does not reset the retry table (a crash-looping pod must not hammer the CA).
 * - Runs never overlap: one loop, one run at a time, the earliest due first (config order breaks ties). A target
 *   that falls due while another runs waits for it.
 * - After a failure the next attempt follows the retry table (src/schedule/retry.ts), never later than the next
 *   scheduled time; after a success, or a skip (another process holds the Lease), the next scheduled time.
 * - Every wait is bounded: sleeps are at most `maxSleepMs` (the loop re-reads the clock, so a suspended host or a
 *   clock step is caught up with), a run's signal is aborted after `runTimeoutMs`, reading the history at start
 *   takes at most HISTORY_TIMEOUT_MS, and stop() waits at most `stopGraceMs` for the aborted run.
 * - stop(): nothing new starts, every pending sleep is cancelled, the run in flight is aborted through its signal
 *   and awaited (bounded), then `done` resolves.
 *
 * Nothing here reads the real clock or sets a timer of its own: every wait is a `clock.sleep` with a signal this
 * module owns and aborts, so after any number of cycles it holds no more timers or listeners than after one.
 */
import type { TargetHistory } from "../history/history.js";
import type { LogSink } from "../observability/logger.js";
import type { Clock } from "../ports.js";
import type { TargetOutcome } from "../renewal/events.js";
import { nextCronTime } from "../schedule/cron.js";
import { targetOffsetMs } from "../schedule/offset.js";
import { retryDelay, type RetryReason } from "../schedule/retry.js";

export interface DaemonTarget {
  fqdn: string;
}

export interface DaemonDeps {
  clock: Clock;
  logger: LogSink & { error(obj: Record<string, unknown>, msg: string): void };
  /** run one target once; resolves with its outcome (never rejects for a renewal failure; rejects only on abort) */
  runTarget(fqdn: string, signal: AbortSignal): Promise<TargetOutcome>;
  /** the durable history of a target, read at start so the retry table continues after a restart */
  history?(fqdn: string): Promise<TargetHistory | undefined>;
  /** told whenever a target's next attempt is decided (the integrator feeds the history and the metrics) */
  onScheduled?(fqdn: string, at: Date, why: ScheduleWhy): void;
}

export type ScheduleWhy = "schedule" | "retry" | "start";

export interface DaemonSettings {
  /** cron expression (5 fields, or 6 with seconds first) */
  schedule: string;
  /** the per-target offsets spread over [0, jitterMs) */
  jitterMs: number;
  /** check every target once at start */
  runAtStart: boolean;
  /** IANA time zone of the schedule (default UTC) */
  timezone?: string;
  /** a run's signal is aborted after this long (default DAEMON_DEFAULTS.runTimeoutMs) */
  runTimeoutMs?: number;
  /** how long stop() waits for the aborted run to end (default DAEMON_DEFAULTS.stopGraceMs) */
  stopGraceMs?: number;
  /** the longest single sleep (default DAEMON_DEFAULTS.maxSleepMs) */
  maxSleepMs?: number;
}

export const DAEMON_DEFAULTS = {
  /** the Kubernetes Lease a run holds lasts 1 h at most: a run must not outlive it */
  runTimeoutMs: 60 * 60_000,
  /** an aborted run removes its TXT values and releases the Lease (the CLI bounds that to 20 s); within the 30 s
   * Kubernetes gives a pod between SIGTERM and SIGKILL */
  stopGraceMs: 25_000,
  /** the loop wakes at least this often while idle */
  maxSleepMs: 5 * 60_000,
} as const;

/** Reading every target's history at start takes at most this long; targets not read by then start afresh. */
export const HISTORY_TIMEOUT_MS = 30_000;
/** How late an idle loop may be before health() says it is stuck (on top of maxSleepMs). */
export const TICK_SLACK_MS = 60_000;

export interface DaemonHealth {
  /**
   * false when the loop is overdue: idle and not woken for longer than maxSleepMs + TICK_SLACK_MS (the event loop is
   * blocked or the loop died), or a run has lasted longer than runTimeoutMs + stopGraceMs (it ignored its abort);
   * also false once stop() was called or the loop failed.
   */
  ok: boolean;
  /** when the loop last made progress (woke, or started or finished a run) */
  lastTick?: Date;
  /** the target being run now */
  running?: string;
  /** each target's next attempt, earliest first */
  next: { fqdn: string; at: Date }[];
}

export interface Daemon {
  stop(): Promise<void>;
  /** resolves once stopped (rejects only if the loop itself broke: a bug) */
  readonly done: Promise<void>;
  health(): DaemonHealth;
}

interface Slot {
  fqdn: string;
  offsetMs: number;
  /** epoch ms of the next attempt */
  nextAt: number;
  why: ScheduleWhy;
  consecutiveFailures: number;
  /** the certificate's expiry, as last seen (for the retry table's lifetime cap) */
  notAfter?: Date;
  /** a retry decided by an earlier process (history.nextAttempt while failing) */
  pendingRetry?: Date;
}

/** The reason a run's signal is aborted with when it outlasts runTimeoutMs. */
export class RunTimeoutError extends Error {
  override readonly name = "TimeoutError";
  constructor(fqdn: string, ms: number) {
    super(`the run for ${fqdn} took longer than ${ms} ms and was aborted`);
  }
}

/** The reason a run's signal is aborted with when the daemon stops. */
export class DaemonStoppingError extends Error {
  override readonly name = "AbortError";
  constructor() {
    super("amlcert daemon is stopping");
  }
}

export function startDaemon(targets: DaemonTarget[], deps: DaemonDeps, settings: DaemonSettings): Daemon {
  const { clock, logger } = deps;
  const timezone = settings.timezone ?? "UTC";
  const runTimeoutMs = settings.runTimeoutMs ?? DAEMON_DEFAULTS.runTimeoutMs;
  const stopGraceMs = settings.stopGraceMs ?? DAEMON_DEFAULTS.stopGraceMs;
  const maxSleepMs = Math.max(1000, settings.maxSleepMs ?? DAEMON_DEFAULTS.maxSleepMs);
  // fails here (CONFIG_INVALID), before anything runs, when the schedule matches nothing within a year
  nextCronTime(settings.schedule, clock.now(), timezone);

  const slots: Slot[] = targets.map((t) => ({
    fqdn: t.fqdn,
    offsetMs: targetOffsetMs(t.fqdn, settings.jitterMs),
    nextAt: Number.POSITIVE_INFINITY,
    why: "schedule",
    consecutiveFailures: 0,
  }));
  /** aborted by stop(): cancels the loop's sleep (the clock adds its listener per sleep and removes it on waking) */
  const stopController = new AbortController();
  /** the controllers of the other bounded waits in progress (history, a run's bound): stop() aborts them too */
  const waits = new Set<AbortController>();
  let stopping = false;
  let broken = false;
  let lastTick = clock.now().getTime();
  let current: { fqdn: string; startedAt: number; controller: AbortController } | undefined;

  /**
   * The target's next scheduled time: a cron slot plus the target's offset, after `now`. After a run, the slot must
   * also come after the run's start: a run covers the slot it started in, so the check at 12:03 is not followed by
   * the 12:00 slot's run at 12:10 (offset 10 min), and slots that passed while a long run ran are not made up.
   */
  const nextScheduled = (slot: Slot, now: number, ranAt?: number): number =>
    nextCronTime(settings.schedule, new Date(Math.max(now - slot.offsetMs, ranAt ?? Number.NEGATIVE_INFINITY)), timezone).getTime() +
    slot.offsetMs;

  /** Sleep up to `ms`; resolves early (never rejects) when stop() cancels it. */
  async function pause(ms: number): Promise<void> {
    try {
      await clock.sleep(ms, stopController.signal);
    } catch (err) {
      if (!stopController.signal.aborted) throw err;
    }
  }

  /** `promise`, or "timeout" when it has not settled within `ms` (or stop() came first: "stopped"). */
  async function bounded<T>(promise: Promise<T>, ms: number): Promise<{ value: T } | "timeout" | "stopped"> {
    const controller = new AbortController();
    waits.add(controller);
    try {
      return await Promise.race([
        promise.then((value) => ({ value })),
        clock.sleep(ms, controller.signal).then(
          () => "timeout" as const,
          () => "stopped" as const,
        ),
      ]);
    } finally {
      controller.abort();
      waits.delete(controller);
    }
  }

  function announce(slot: Slot, why: ScheduleWhy, facts: Record<string, unknown> = {}): void {
    slot.why = why;
    const at = new Date(slot.nextAt);
    logger.info({ fqdn: slot.fqdn, at: at.toISOString(), why, consecutiveFailures: slot.consecutiveFailures, ...facts }, "next attempt scheduled");
    try {
      deps.onScheduled?.(slot.fqdn, at, why);
    } catch (err) {
      logger.error({ fqdn: slot.fqdn, err }, "onScheduled failed (ignored)");
    }
  }

  async function readHistories(): Promise<void> {
    const read = deps.history;
    if (!read || slots.length === 0) return;
    let open = true;
    const all = Promise.all(
      slots.map(async (slot) => {
        try {
          const h = await read(slot.fqdn);
          if (open && h) applyHistory(slot, h);
        } catch (err) {
          logger.warn({ fqdn: slot.fqdn, err }, "could not read the target's history; its retry count starts at 0");
        }
      }),
    );
    const r = await bounded(all, HISTORY_TIMEOUT_MS);
    open = false;
    if (r === "timeout") logger.warn({ timeoutMs: HISTORY_TIMEOUT_MS }, "reading the history took too long; targets not read start afresh");
  }

  function applyHistory(slot: Slot, h: TargetHistory): void {
    slot.consecutiveFailures = Math.max(0, Math.floor(h.consecutiveFailures || 0));
    const notAfter = parseDate(h.notAfter);
    if (notAfter) slot.notAfter = notAfter;
    const nextAttempt = parseDate(h.nextAttempt);
    if (slot.consecutiveFailures > 0 && nextAttempt) slot.pendingRetry = nextAttempt;
  }

  function planStart(slot: Slot, now: number): void {
    const scheduled = nextScheduled(slot, now);
    if (slot.pendingRetry) {
      // an earlier process was retrying: keep its time (no earlier than now, no later than the schedule)
      slot.nextAt = Math.min(Math.max(slot.pendingRetry.getTime(), now), scheduled);
      announce(slot, slot.nextAt < scheduled ? "retry" : "schedule", { from: "history" });
    } else if (settings.runAtStart) {
      slot.nextAt = now;
      announce(slot, "start");
    } else {
      slot.nextAt = scheduled;
      announce(slot, "schedule");
    }
  }

  function earliest(): Slot {
    let best = slots[0]!;
    for (const s of slots) if (s.nextAt < best.nextAt) best = s;
    return best;
  }

  async function runOnce(slot: Slot): Promise<void> {
    const controller = new AbortController();
    const startedAt = clock.now().getTime();
    current = { fqdn: slot.fqdn, startedAt, controller };
    lastTick = startedAt;
    logger.info({ fqdn: slot.fqdn, why: slot.why, consecutiveFailures: slot.consecutiveFailures }, "run started");
    // the run's bound: aborts its signal after runTimeoutMs; cancelled as soon as the run ends
    const timeout = new AbortController();
    waits.add(timeout);
    clock.sleep(runTimeoutMs, timeout.signal).then(
      () => controller.abort(new RunTimeoutError(slot.fqdn, runTimeoutMs)),
      () => undefined,
    );
    let outcome: TargetOutcome | undefined;
    let failure: unknown;
    try {
      outcome = await deps.runTarget(slot.fqdn, controller.signal);
    } catch (err) {
      failure = err;
    } finally {
      timeout.abort();
      waits.delete(timeout);
      current = undefined;
      lastTick = clock.now().getTime();
    }
    if (stopping) {
      logger.info({ fqdn: slot.fqdn, aborted: outcome === undefined }, "run ended while stopping; not rescheduled");
      return;
    }
    decide(slot, startedAt, outcome, failure);
  }

  function decide(slot: Slot, startedAt: number, outcome: TargetOutcome | undefined, failure: unknown): void {
    const now = clock.now().getTime();
    slot.pendingRetry = undefined;
    const notAfter = parseDate(outcome?.notAfter);
    if (notAfter) slot.notAfter = notAfter;
    const scheduled = nextScheduled(slot, now, startedAt);
    if (outcome && outcome.action !== "failed") {
      // renewed or nothing to do: the failure count starts again. skipped: another process ran it; ours is unchanged
      if (outcome.action !== "skipped") slot.consecutiveFailures = 0;
      slot.nextAt = scheduled;
      announce(slot, "schedule", { action: outcome.action, reason: outcome.reason });
      return;
    }
    if (!outcome) {
      // runTarget rejected without stop(): its bound fired, or it broke a promise it made. Either way, a failure.
      logger.error({ fqdn: slot.fqdn, err: failure }, "the run did not return an outcome; counted as a failure");
    }
    slot.consecutiveFailures++;
    const retry: { delayMs: number; reason: RetryReason } = retryDelay({
      consecutiveFailures: slot.consecutiveFailures,
      now: new Date(now),
      seed: `${slot.fqdn}#${slot.consecutiveFailures}`,
      ...(slot.notAfter ? { notAfter: slot.notAfter } : {}),
      // a rate limit's "not before" (C2): the retry waits for it (a run before it would be skipped RateLimited)
      ...(parseDate(outcome?.error?.retryAt) ? { notBefore: parseDate(outcome?.error?.retryAt)! } : {}),
    });
    const retryAt = now + retry.delayMs;
    slot.nextAt = Math.min(retryAt, scheduled);
    announce(slot, retryAt < scheduled ? "retry" : "schedule", {
      action: "failed",
      reason: outcome?.reason ?? "NoOutcome",
      retryReason: retry.reason,
      retryDelayMs: retry.delayMs,
    });
  }

  async function loop(): Promise<void> {
    await readHistories();
    if (stopping) return;
    const start = clock.now().getTime();
    for (const slot of slots) planStart(slot, start);
    while (!stopping) {
      const now = clock.now().getTime();
      lastTick = now;
      // no targets: nothing to run, but the daemon stays up (and healthy) until stopped
      const wait = slots.length === 0 ? maxSleepMs : earliest().nextAt - now;
      if (wait > 0) await pause(Math.min(wait, maxSleepMs));
      else await runOnce(earliest());
    }
  }

  const loopDone = loop().catch((err: unknown) => {
    broken = true;
    logger.error({ err }, "the daemon's scheduling loop failed");
    throw err;
  });

  let stopped: Promise<void> | undefined;
  let resolveDone!: () => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  loopDone.then(
    () => {
      if (stopping) resolveDone();
    },
    rejectDone,
  );
  // a broken loop is reported through `done` to whoever awaits it, never as an unhandled rejection
  done.catch(() => undefined);

  function stop(): Promise<void> {
    if (stopped) return stopped;
    stopping = true;
    const inFlight = current?.fqdn;
    logger.info({ running: inFlight }, "stopping: no new runs; aborting the run in flight");
    stopController.abort(new DaemonStoppingError());
    for (const w of [...waits]) w.abort();
    current?.controller.abort(new DaemonStoppingError());
    stopped = (async () => {
      const r = await bounded(
        loopDone.then(
          () => undefined,
          () => undefined,
        ),
        stopGraceMs,
      );
      if (r === "timeout") {
        logger.error({ fqdn: inFlight, graceMs: stopGraceMs }, "the aborted run did not end within the grace period; stopping without it");
      }
      resolveDone();
    })();
    return stopped;
  }

  function health(): DaemonHealth {
    const now = clock.now().getTime();
    let ok: boolean;
    if (stopping || broken) ok = false;
    else if (current) ok = now - current.startedAt <= runTimeoutMs + stopGraceMs;
    else ok = now - lastTick <= maxSleepMs + TICK_SLACK_MS;
    return {
      ok,
      lastTick: new Date(lastTick),
      ...(current ? { running: current.fqdn } : {}),
      next: slots
        .filter((s) => Number.isFinite(s.nextAt))
        .sort((a, b) => a.nextAt - b.nextAt)
        .map((s) => ({ fqdn: s.fqdn, at: new Date(s.nextAt) })),
    };
  }

  return { stop, done, health };
}

function parseDate(iso: string | undefined): Date | undefined {
  if (!iso) return undefined;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d;
}
