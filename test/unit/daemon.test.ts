import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import {
  DAEMON_DEFAULTS,
  DaemonStoppingError,
  HISTORY_TIMEOUT_MS,
  RunTimeoutError,
  TICK_SLACK_MS,
  startDaemon,
  type Daemon,
  type DaemonSettings,
} from "../../src/app/daemon.js";
import type { TargetHistory } from "../../src/history/history.js";
import type { RunAction, TargetOutcome } from "../../src/renewal/events.js";
import { retryDelay } from "../../src/schedule/retry.js";
import { VirtualClock } from "../support/virtual-clock.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

// Two targets and their offsets within the default 30-minute jitter (pinned in offset.test.ts for ML)
const ML = "ml.contoso.test"; // + 10 min 39 s
const API = "api.contoso.test"; // + 7 min 3.869 s
const T0 = "2026-05-01T12:03:00.000Z";
const iso = (ms: number) => new Date(ms).toISOString();
const at = (s: string) => new Date(s).getTime();

const defaults: DaemonSettings = { schedule: "0 */6 * * *", jitterMs: 30 * MIN, runAtStart: true };

type Behaviour =
  /** an outcome with this action (reason defaults to a plausible one), after the run's virtual duration */
  | RunAction
  | { action: RunAction; notAfter?: string; reason?: string }
  /** never settles by itself; rejects with the signal's reason when aborted */
  | "until-aborted"
  /** never settles at all, not even when aborted */
  | "hang";

interface Options {
  targets?: string[];
  settings?: Partial<DaemonSettings>;
  start?: string;
  /** what call n (1-based) of a target does; default "none" */
  behave?: (fqdn: string, n: number) => Behaviour;
  /** how long a run takes on the clock; default 2 minutes */
  runMs?: (fqdn: string, n: number) => number;
  history?: (fqdn: string) => Promise<TargetHistory | undefined>;
  /** called at the start of every run, before it does anything */
  onCall?: (call: Call, h: Harness) => void;
  onScheduledThrows?: boolean;
  /** called whenever the daemon tells of a decision (after the run that led to it has ended) */
  onDecision?: (count: number, h: Harness) => void;
}

interface Call {
  fqdn: string;
  n: number;
  at: string;
  signal: AbortSignal;
}

interface Harness {
  clock: VirtualClock;
  daemon: Daemon;
  calls: Call[];
  scheduled: { fqdn: string; at: string; why: string }[];
  logs: { level: string; msg: string; obj: Record<string, unknown> }[];
  maxConcurrent: () => number;
  untilCalls(n: number): Promise<void>;
}

function outcome(fqdn: string, action: RunAction, extra: { notAfter?: string; reason?: string } = {}): TargetOutcome {
  const reason = extra.reason ?? { renewed: "InRenewalWindow", none: "UpToDate", skipped: "LockHeld", failed: "ACME_ERROR" }[action];
  return {
    fqdn,
    action,
    reason,
    extensionUpdated: action === "renewed",
    dnsOk: action !== "failed",
    servingOk: action !== "failed",
    durationMs: 0,
    ...(extra.notAfter ? { notAfter: extra.notAfter } : {}),
    ...(action === "failed" ? { error: { code: "ACME_ERROR", stage: "acme-order", message: "the CA said no" } as TargetOutcome["error"] } : {}),
  };
}

function start(opts: Options = {}): Harness {
  const clock = new VirtualClock(new Date(opts.start ?? T0));
  const calls: Call[] = [];
  const scheduled: Harness["scheduled"] = [];
  const logs: Harness["logs"] = [];
  const counts = new Map<string, number>();
  const waiters: { n: number; resolve: () => void }[] = [];
  let active = 0;
  let maxActive = 0;
  const log = (level: string) => (obj: Record<string, unknown>, msg: string) => void logs.push({ level, msg, obj });
  const h = { clock, calls, scheduled, logs, maxConcurrent: () => maxActive } as Harness;

  const runTarget = async (fqdn: string, signal: AbortSignal): Promise<TargetOutcome> => {
    const n = (counts.get(fqdn) ?? 0) + 1;
    counts.set(fqdn, n);
    const call = { fqdn, n, at: clock.now().toISOString(), signal };
    calls.push(call);
    active++;
    maxActive = Math.max(maxActive, active);
    try {
      opts.onCall?.(call, h);
      for (const w of waiters.filter((w) => calls.length >= w.n)) w.resolve();
      const b = opts.behave?.(fqdn, n) ?? "none";
      if (b === "hang") return await new Promise<never>(() => undefined);
      if (b === "until-aborted") {
        return await new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
      }
      await clock.sleep(opts.runMs?.(fqdn, n) ?? 2 * MIN, signal);
      return typeof b === "string" ? outcome(fqdn, b) : outcome(fqdn, b.action, b);
    } finally {
      active--;
    }
  };

  h.daemon = startDaemon(
    (opts.targets ?? [ML]).map((fqdn) => ({ fqdn })),
    {
      clock,
      logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
      runTarget,
      ...(opts.history ? { history: opts.history } : {}),
      onScheduled: (fqdn, when, why) => {
        scheduled.push({ fqdn, at: when.toISOString(), why });
        opts.onDecision?.(scheduled.length, h);
        if (opts.onScheduledThrows) throw new Error("the metrics broke");
      },
    },
    { ...defaults, ...opts.settings },
  );
  h.untilCalls = (n) =>
    new Promise<void>((resolve, reject) => {
      if (calls.length >= n) return resolve();
      waiters.push({ n, resolve });
      h.daemon.done.then(() => reject(new Error(`the daemon stopped after ${calls.length} calls, before call ${n}`)), reject);
    });
  return h;
}

/** Run until call `n` has started, then stop the daemon; the calls before it are what the test looks at. */
async function runUntil(h: Harness, n: number): Promise<void> {
  await h.untilCalls(n);
  await h.daemon.stop();
  await h.daemon.done;
}

const callTimes = (h: Harness) => h.calls.map((c) => `${c.fqdn} ${c.at}`);

describe("daemon: schedule and offsets", { timeout: 10_000 }, () => {
  it("when started, checks every target at once in config order, then runs each at the next slot plus its own offset", async () => {
    const h = start({ targets: [ML, API] });
    await runUntil(h, 7);
    expect(callTimes(h)).toEqual([
      `${ML} 2026-05-01T12:03:00.000Z`, // the check at start
      `${API} 2026-05-01T12:05:00.000Z`, // waited for ML's 2-minute run
      `${API} 2026-05-01T18:07:03.869Z`, // 18:00 + 7 min 3.869 s
      `${ML} 2026-05-01T18:10:39.000Z`, // 18:00 + 10 min 39 s
      `${API} 2026-05-02T00:07:03.869Z`,
      `${ML} 2026-05-02T00:10:39.000Z`,
      `${API} 2026-05-02T06:07:03.869Z`,
    ]);
    expect(h.scheduled.slice(0, 4)).toEqual([
      { fqdn: ML, at: T0, why: "start" },
      { fqdn: API, at: T0, why: "start" },
      { fqdn: ML, at: "2026-05-01T18:10:39.000Z", why: "schedule" },
      { fqdn: API, at: "2026-05-01T18:07:03.869Z", why: "schedule" },
    ]);
  });

  it("when runAtStart is off, the first run is the current slot's offset time if it is still ahead", async () => {
    // at 12:03 the 12:00 slot is still ahead for both: 12:07:03.869 and 12:10:39
    const h = start({ targets: [ML, API], settings: { runAtStart: false } });
    await runUntil(h, 3);
    expect(callTimes(h)).toEqual([`${API} 2026-05-01T12:07:03.869Z`, `${ML} 2026-05-01T12:10:39.000Z`, `${API} 2026-05-01T18:07:03.869Z`]);
    expect(h.scheduled.slice(0, 2)).toEqual([
      { fqdn: ML, at: "2026-05-01T12:10:39.000Z", why: "schedule" },
      { fqdn: API, at: "2026-05-01T12:07:03.869Z", why: "schedule" },
    ]);
  });

  it("when the schedule has a time zone and a six-field expression, follows them", async () => {
    // every day at 03:00:30 in Berlin (CEST, UTC+2 in May) = 01:00:30Z, plus ML's offset
    const h = start({ settings: { schedule: "30 0 3 * * *", timezone: "Europe/Berlin", runAtStart: false } });
    await runUntil(h, 2);
    expect(callTimes(h)).toEqual([`${ML} 2026-05-02T01:11:09.000Z`, `${ML} 2026-05-03T01:11:09.000Z`]);
  });

  it("when the jitter is 0, every target runs on the slot itself", async () => {
    const h = start({ targets: [ML, API], settings: { jitterMs: 0, runAtStart: false } });
    await runUntil(h, 3);
    expect(callTimes(h)).toEqual([`${ML} 2026-05-01T18:00:00.000Z`, `${API} 2026-05-01T18:02:00.000Z`, `${ML} 2026-05-02T00:00:00.000Z`]);
  });

  it("when the schedule matches nothing within a year, startDaemon throws CONFIG_INVALID before running anything", () => {
    const clock = new VirtualClock(new Date(T0));
    const noop = () => undefined;
    expect(() =>
      startDaemon([{ fqdn: ML }], { clock, logger: { debug: noop, info: noop, warn: noop, error: noop }, runTarget: () => Promise.reject(new Error("never")) }, {
        ...defaults,
        schedule: "0 0 29 2 *",
      }),
    ).toThrow('the cron expression "0 0 29 2 *" matches nothing in the 366 days after');
    expect(clock.pendingSleeps()).toBe(0);
  });
});

describe("daemon: no overlap", { timeout: 10_000 }, () => {
  it("when a run for one target is slow, the other target due meanwhile waits for it, and two runs never overlap", async () => {
    // API is due at 12:07:03.869 and takes 50 minutes; ML, due at 12:10:39, starts when API is done
    const h = start({ targets: [ML, API], settings: { runAtStart: false }, runMs: (fqdn, n) => (fqdn === API && n === 1 ? 50 * MIN : 2 * MIN) });
    await runUntil(h, 4);
    expect(callTimes(h)).toEqual([
      `${API} 2026-05-01T12:07:03.869Z`,
      `${ML} 2026-05-01T12:57:03.869Z`,
      `${API} 2026-05-01T18:07:03.869Z`,
      `${ML} 2026-05-01T18:10:39.000Z`,
    ]);
    expect(h.maxConcurrent()).toBe(1);
  });

  it("when a run takes longer than the schedule's period, the slots it covered are not made up afterwards", async () => {
    // ML's start check runs 13 hours: 18:10:39 and 00:10:39 pass during it; the next run is 06:10:39
    const h = start({ runMs: (_, n) => (n === 1 ? 13 * HOUR : 2 * MIN), settings: { runTimeoutMs: 14 * HOUR } });
    await runUntil(h, 3);
    expect(callTimes(h)).toEqual([`${ML} ${T0}`, `${ML} 2026-05-02T06:10:39.000Z`, `${ML} 2026-05-02T12:10:39.000Z`]);
    expect(h.maxConcurrent()).toBe(1);
  });
});

describe("daemon: failures and the retry table", { timeout: 10_000 }, () => {
  const notAfter = "2026-06-30T00:00:00.000Z"; // 60 days away: the lifetime cap does not bind

  it("when runs fail, retries after the table's delays, then returns to the schedule after a success", async () => {
    const h = start({ behave: (_, n) => (n <= 3 ? { action: "failed", notAfter } : { action: "none", notAfter }) });
    await runUntil(h, 6);
    // each run takes 2 minutes; the retry is counted from the end of the failed run
    const retry = (failures: number, endedAt: number) =>
      endedAt + retryDelay({ consecutiveFailures: failures, now: new Date(endedAt), notAfter: new Date(notAfter), seed: `${ML}#${failures}` }).delayMs;
    const t1 = at(T0);
    const t2 = retry(1, t1 + 2 * MIN);
    const t3 = retry(2, t2 + 2 * MIN);
    const t4 = retry(3, t3 + 2 * MIN);
    expect(callTimes(h)).toEqual([
      `${ML} ${T0}`,
      `${ML} ${iso(t2)}`,
      `${ML} ${iso(t3)}`,
      `${ML} ${iso(t4)}`,
      `${ML} 2026-05-01T18:10:39.000Z`,
      `${ML} 2026-05-02T00:10:39.000Z`,
    ]);
    // the table's rows, jittered within ±10%: 5, 15 and 30 minutes
    for (const [d, row] of [
      [t2 - t1 - 2 * MIN, 5 * MIN],
      [t3 - t2 - 2 * MIN, 15 * MIN],
      [t4 - t3 - 2 * MIN, 30 * MIN],
    ] as const) {
      expect(d).toBeGreaterThanOrEqual(row * 0.9);
      expect(d).toBeLessThan(row * 1.1);
    }
    expect(h.scheduled.map((s) => s.why).slice(0, 5)).toEqual(["start", "retry", "retry", "retry", "schedule"]);
    const retryLog = h.logs.find((l) => l.msg === "next attempt scheduled" && l.obj.why === "retry");
    expect(retryLog?.obj).toMatchObject({ fqdn: ML, consecutiveFailures: 1, action: "failed", reason: "ACME_ERROR", retryReason: "Table" });
  });

  it("when the retry would come after the next scheduled time, the scheduled time is used", async () => {
    // the 6th failure in a row (the 5 before are in the history) asks for ~4 h; at 15:02 that is after 18:10:39
    const h = start({
      start: "2026-05-01T15:00:00.000Z",
      history: async (fqdn) => ({ fqdn, consecutiveFailures: 5, nextAttempt: "2026-05-01T14:00:00.000Z", notAfter }),
      behave: () => ({ action: "failed", notAfter }),
    });
    await runUntil(h, 2);
    expect(callTimes(h)).toEqual([`${ML} 2026-05-01T15:00:00.000Z`, `${ML} 2026-05-01T18:10:39.000Z`]);
    expect(h.scheduled.slice(0, 2)).toEqual([
      { fqdn: ML, at: "2026-05-01T15:00:00.000Z", why: "retry" },
      { fqdn: ML, at: "2026-05-01T18:10:39.000Z", why: "schedule" },
    ]);
  });

  it("when a 6-day certificate is one hour from expiry, retries come minutes apart", async () => {
    const soon = "2026-05-01T13:05:00.000Z";
    const h = start({ history: async (fqdn) => ({ fqdn, consecutiveFailures: 20, notAfter: soon }), behave: () => ({ action: "failed", notAfter: soon }) });
    await runUntil(h, 4);
    const gaps = h.calls.slice(1).map((c, i) => at(c.at) - at(h.calls[i]!.at) - 2 * MIN);
    // 1/10 of the time left: about 6 minutes after the first run (1 h left), then less
    expect(gaps.map((g) => g <= (at(soon) - at(T0)) / 10)).toEqual([true, true, true]);
    expect(gaps[0]).toBe(Math.floor((at(soon) - (at(T0) + 2 * MIN)) / 10));
  });

  it("when the run is skipped because another process holds the Lease, it is tried again at the next scheduled time", async () => {
    const h = start({ behave: (_, n) => (n === 1 ? "skipped" : n === 2 ? "failed" : "none") });
    await runUntil(h, 3);
    expect(h.calls[1]!.at).toBe("2026-05-01T18:10:39.000Z");
    expect(h.scheduled[1]).toEqual({ fqdn: ML, at: "2026-05-01T18:10:39.000Z", why: "schedule" });
    // the skip did not count as a failure: the failure after it is the first (the 5-minute row)
    const ended = at("2026-05-01T18:12:39.000Z");
    expect(h.calls[2]!.at).toBe(iso(ended + retryDelay({ consecutiveFailures: 1, now: new Date(ended), seed: `${ML}#1` }).delayMs));
  });

  it("when restarted with failures in the history, continues the retry table from there instead of checking at start", async () => {
    const h = start({
      history: async (fqdn) => ({ fqdn, consecutiveFailures: 3, nextAttempt: "2026-05-01T12:08:00.000Z", notAfter, lastAction: "failed" }),
      behave: () => ({ action: "failed", notAfter }),
    });
    await runUntil(h, 2);
    const ended = at("2026-05-01T12:10:00.000Z");
    const fourth = retryDelay({ consecutiveFailures: 4, now: new Date(ended), notAfter: new Date(notAfter), seed: `${ML}#4` }).delayMs;
    expect(callTimes(h)).toEqual([`${ML} 2026-05-01T12:08:00.000Z`, `${ML} ${iso(ended + fourth)}`]);
    expect(h.scheduled[0]).toEqual({ fqdn: ML, at: "2026-05-01T12:08:00.000Z", why: "retry" });
    expect(Math.round(fourth / MIN)).toBeGreaterThanOrEqual(54); // the 1-hour row
    expect(fourth).toBeLessThan(66 * MIN);
  });

  it("when the history has no failures, the check at start happens as usual", async () => {
    const h = start({ history: async (fqdn) => ({ fqdn, consecutiveFailures: 0, nextAttempt: "2026-05-01T18:10:39.000Z" }) });
    await runUntil(h, 1);
    expect(callTimes(h)).toEqual([`${ML} ${T0}`]);
    expect(h.scheduled[0]).toEqual({ fqdn: ML, at: T0, why: "start" });
  });

  it("when reading the history hangs, starts after HISTORY_TIMEOUT_MS as if there were none", async () => {
    const h = start({ history: () => new Promise<never>(() => undefined) });
    await runUntil(h, 1);
    expect(callTimes(h)).toEqual([`${ML} ${iso(at(T0) + HISTORY_TIMEOUT_MS)}`]);
    expect(h.logs.some((l) => l.level === "warn" && l.msg.startsWith("reading the history took too long"))).toBe(true);
  });

  it("when reading the history fails, logs a warning and checks at start", async () => {
    const h = start({ history: () => Promise.reject(new Error("403 configmaps")) });
    await runUntil(h, 1);
    expect(callTimes(h)).toEqual([`${ML} ${T0}`]);
    expect(h.logs.filter((l) => l.level === "warn").map((l) => l.msg)).toEqual(["could not read the target's history; its retry count starts at 0"]);
  });

  it("when a run outlasts its bound, its signal is aborted with RunTimeoutError and it counts as a failure", async () => {
    const h = start({ behave: (_, n) => (n === 1 ? "until-aborted" : "none") });
    await runUntil(h, 2);
    const first = h.calls[0]!;
    expect(first.signal.aborted).toBe(true);
    expect(first.signal.reason).toBeInstanceOf(RunTimeoutError);
    const ended = at(T0) + DAEMON_DEFAULTS.runTimeoutMs;
    expect(h.calls[1]!.at).toBe(iso(ended + retryDelay({ consecutiveFailures: 1, now: new Date(ended), seed: `${ML}#1` }).delayMs));
    expect(h.logs.find((l) => l.level === "error")?.msg).toBe("the run did not return an outcome; counted as a failure");
  });

  it("when onScheduled throws, the loop goes on", async () => {
    const h = start({ onScheduledThrows: true });
    await runUntil(h, 2);
    expect(callTimes(h)).toEqual([`${ML} ${T0}`, `${ML} 2026-05-01T18:10:39.000Z`]);
    expect(h.logs.filter((l) => l.level === "error").map((l) => l.msg)).toContain("onScheduled failed (ignored)");
  });
});

describe("daemon: stop and health", { timeout: 10_000 }, () => {
  it("when stopped during a run, aborts the run's signal, awaits it, starts nothing more and resolves done", async () => {
    let stopped: Promise<void> | undefined;
    const h = start({
      runMs: () => 10 * MIN,
      onCall: (call, hh) => {
        if (call.n === 2) queueMicrotask(() => (stopped = hh.daemon.stop()));
      },
    });
    await h.untilCalls(2);
    await h.daemon.done;
    await stopped;
    const second = h.calls[1]!;
    expect(second.at).toBe("2026-05-01T18:10:39.000Z");
    expect(second.signal.aborted).toBe(true);
    expect(second.signal.reason).toBeInstanceOf(DaemonStoppingError);
    // stopped at once: the 10-minute run did not play out
    expect(h.clock.now().toISOString()).toBe("2026-05-01T18:10:39.000Z");
    expect(h.calls).toHaveLength(2);
    expect(h.clock.pendingSleeps()).toBe(0);
    expect(h.clock.abortListeners()).toBe(0);
    expect(h.daemon.health().ok).toBe(false);
    expect(h.logs.find((l) => l.msg === "run ended while stopping; not rescheduled")?.obj).toEqual({ fqdn: ML, aborted: true });
  });

  it("when stopped while waiting for the next run, cancels the wait and resolves done at once", async () => {
    const h = start();
    await h.untilCalls(1);
    // let the start check finish: the daemon then sleeps towards 18:10:39
    await h.clock.sleep(5 * MIN);
    expect(h.daemon.health()).toMatchObject({ ok: true, next: [{ fqdn: ML, at: new Date("2026-05-01T18:10:39.000Z") }] });
    expect(h.daemon.health().running).toBeUndefined();
    await h.daemon.stop();
    await h.daemon.done;
    expect(h.clock.now().toISOString()).toBe("2026-05-01T12:08:00.000Z");
    expect(h.clock.pendingSleeps()).toBe(0);
    expect(h.clock.abortListeners()).toBe(0);
    expect(h.calls).toHaveLength(1);
    // stop() twice is the same stop
    await h.daemon.stop();
  });

  it("when a run ignores its abort, health turns false once it outlasts its bound plus the grace, and stop() gives up after the grace", async () => {
    const h = start({ behave: () => "hang" });
    await h.untilCalls(1);
    const bound = DAEMON_DEFAULTS.runTimeoutMs + DAEMON_DEFAULTS.stopGraceMs;
    await h.clock.sleep(30 * MIN);
    expect(h.daemon.health()).toMatchObject({ ok: true, running: ML, lastTick: new Date(T0) });
    await h.clock.sleep(bound - 30 * MIN);
    expect(h.daemon.health().ok).toBe(true);
    await h.clock.sleep(1);
    expect(h.daemon.health()).toMatchObject({ ok: false, running: ML });
    expect(h.calls[0]!.signal.reason).toBeInstanceOf(RunTimeoutError);
    const stopAt = h.clock.now().getTime();
    await h.daemon.stop();
    await h.daemon.done;
    expect(h.clock.now().getTime()).toBe(stopAt + DAEMON_DEFAULTS.stopGraceMs);
    expect(h.logs.filter((l) => l.level === "error").map((l) => l.msg)).toContain("the aborted run did not end within the grace period; stopping without it");
    expect(h.clock.pendingSleeps()).toBe(0);
    expect(h.calls).toHaveLength(1);
  });

  it("when idle, health is ok and lists the next attempts earliest first", async () => {
    const h = start({ targets: [ML, API], settings: { runAtStart: false } });
    await h.clock.sleep(1);
    expect(h.daemon.health()).toEqual({
      ok: true,
      lastTick: new Date(T0),
      next: [
        { fqdn: API, at: new Date("2026-05-01T12:07:03.869Z") },
        { fqdn: ML, at: new Date("2026-05-01T12:10:39.000Z") },
      ],
    });
    await h.daemon.stop();
    await h.daemon.done;
  });

  it("when the loop has not woken for longer than its longest sleep plus a minute, health is not ok; once it wakes it is again", async () => {
    const h = start({ settings: { runAtStart: false } });
    await h.clock.sleep(1);
    // the event loop is blocked (or the host suspended): time moves, nothing wakes
    h.clock.hold();
    h.clock.jump(DAEMON_DEFAULTS.maxSleepMs + TICK_SLACK_MS - 1);
    expect(h.daemon.health().ok).toBe(true);
    h.clock.jump(1);
    expect(h.daemon.health().ok).toBe(false);
    h.clock.release();
    await h.clock.sleep(1);
    expect(h.daemon.health()).toMatchObject({ ok: true, lastTick: new Date(at(T0) + DAEMON_DEFAULTS.maxSleepMs + TICK_SLACK_MS + 1) });
    await h.daemon.stop();
    await h.daemon.done;
  });

  it("when the host was suspended past a target's time, the run starts as soon as the loop wakes, not a full sleep later", async () => {
    const h = start({ settings: { runAtStart: false } });
    await h.clock.sleep(1);
    h.clock.hold();
    h.clock.jump(3 * HOUR); // 15:03: ML was due at 12:10:39
    h.clock.release();
    await runUntil(h, 2);
    expect(callTimes(h)).toEqual([`${ML} 2026-05-01T15:03:00.001Z`, `${ML} 2026-05-01T18:10:39.000Z`]);
  });
});

describe("daemon: 1000 cycles", { timeout: 20_000 }, () => {
  it("after 1000 scheduled cycles holds no more sleeps, timers, abort listeners or active handles than after the first", async () => {
    type Snapshot = { sleeps: number; clockListeners: number; signalListeners: number; runSignalListeners: number; resources: Record<string, number> };
    const snapshots = new Map<number, Snapshot>();
    const resources = () => {
      const counts: Record<string, number> = {};
      for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
      return counts;
    };
    const before = resources();
    // right after a run has ended and its next attempt is decided, before the loop sleeps again
    const between = new Map<number, { sleeps: number; clockListeners: number; signalListeners: number }>();
    const h = start({
      onDecision: (count, hh) => {
        if (count === 2 || count === 1001) {
          between.set(count, { sleeps: hh.clock.pendingSleeps(), clockListeners: hh.clock.abortListeners(), signalListeners: hh.clock.signalListeners() });
        }
      },
      onCall: (call, hh) => {
        if (call.n === 2 || call.n === 1001) {
          snapshots.set(call.n, {
            sleeps: hh.clock.pendingSleeps(),
            clockListeners: hh.clock.abortListeners(),
            signalListeners: hh.clock.signalListeners(),
            runSignalListeners: getEventListeners(call.signal, "abort").length,
            resources: resources(),
          });
        }
      },
    });
    await runUntil(h, 1001);
    const first = snapshots.get(2)!;
    const last = snapshots.get(1001)!;
    // call 1 is the check at start, 2 the first scheduled cycle, 1001 the thousandth after it
    expect(h.calls[1]!.at).toBe("2026-05-01T18:10:39.000Z");
    expect(h.calls[1000]!.at).toBe(iso(at("2026-05-01T18:10:39.000Z") + 999 * 6 * HOUR));
    const { resources: lastResources, ...lastCounts } = last;
    const { resources: firstResources, ...firstCounts } = first;
    expect(lastCounts).toEqual(firstCounts);
    // the run's bound is the one pending sleep while a run is in flight, with its one abort listener; the daemon
    // adds none of its own (not to its stop signal, not to the run's signal)
    expect(firstCounts).toEqual({ sleeps: 1, clockListeners: 1, signalListeners: 1, runSignalListeners: 0 });
    // and once a run has ended, its bound is gone with it: nothing is pending between runs
    expect(between.get(2)).toEqual({ sleeps: 0, clockListeners: 0, signalListeners: 0 });
    expect(between.get(1001)).toEqual({ sleeps: 0, clockListeners: 0, signalListeners: 0 });
    // timers, immediates, handles: per kind, no more than after the first cycle (vitest's own come and go)
    expect(notAbove(lastResources, firstResources)).toEqual([]);
    // after stop: nothing left behind
    expect(h.clock.pendingSleeps()).toBe(0);
    expect(h.clock.abortListeners()).toBe(0);
    expect(h.clock.signalListeners()).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(notAbove(resources(), before)).toEqual([]);
  });
});

/** the kinds of which `now` holds more than `then`, as "kind: then -> now" */
function notAbove(now: Record<string, number>, then: Record<string, number>): string[] {
  return Object.entries(now)
    .filter(([kind, n]) => n > (then[kind] ?? 0))
    .map(([kind, n]) => `${kind}: ${then[kind] ?? 0} -> ${n}`);
}
