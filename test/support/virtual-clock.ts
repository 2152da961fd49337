/**
 * A discrete-event clock for tests of long-running loops (the daemon): time never moves on its own and never waits
 * for real. When the program has nothing left to do but wait (every microtask drained, one turn of the event loop
 * gone by), the earliest pending `sleep` is due: the clock jumps to its time and wakes it, then lets the woken code
 * run before it looks again. A thousand six-hourly cycles therefore take milliseconds.
 *
 * "Nothing left to do" is seen through `setImmediate`: only code that is driven by promises and this clock (the
 * unit under test and its fakes) is simulated faithfully. Real I/O would see time jump past it.
 *
 * It counts what a leak test needs: pending sleeps, the abort listeners it added and has not removed yet, and the
 * event-loop turns it has queued. It also stops a runaway simulation: after `maxAdvances` wake-ups every pending
 * sleep rejects, so a loop that never ends fails the test instead of spinning.
 */
import { getEventListeners } from "node:events";
import type { Clock } from "../../src/ports.js";
import { abortReason } from "../../src/ports.js";

interface PendingSleep {
  due: number;
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class VirtualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly pending: PendingSleep[] = [];
  private turnQueued = false;
  private held = 0;
  private listeners = 0;
  private advanced = 0;
  private readonly maxAdvances: number;
  /** every signal a sleep was given (weakly: a signal the program dropped is not kept alive by the count) */
  private readonly signals = new Set<WeakRef<AbortSignal>>();
  private readonly seen = new WeakSet<AbortSignal>();

  constructor(start: Date, opts: { maxAdvances?: number } = {}) {
    this.t = start.getTime();
    this.maxAdvances = opts.maxAdvances ?? 1_000_000;
  }

  now(): Date {
    return new Date(this.t);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const entry: PendingSleep = { due: this.t + Math.max(0, ms), seq: this.seq++, resolve, reject };
      if (signal) {
        if (!this.seen.has(signal)) {
          this.seen.add(signal);
          this.signals.add(new WeakRef(signal));
        }
        entry.signal = signal;
        entry.onAbort = () => {
          this.remove(entry);
          reject(abortReason(signal));
        };
        signal.addEventListener("abort", entry.onAbort, { once: true });
        this.listeners++;
      }
      this.pending.push(entry);
      this.queueTurn();
    });
  }

  /** sleeps that have neither woken nor been aborted */
  pendingSleeps(): number {
    return this.pending.length;
  }

  /** abort listeners this clock added to callers' signals and has not removed yet */
  abortListeners(): number {
    return this.listeners;
  }

  /** abort listeners held, by anyone, on every signal a sleep was ever given that is still alive: a listener the
   * program added to its own signal and forgot to remove shows up here */
  signalListeners(): number {
    let n = 0;
    for (const ref of [...this.signals]) {
      const signal = ref.deref();
      if (!signal) this.signals.delete(ref);
      else n += getEventListeners(signal, "abort").length;
    }
    return n;
  }

  /** how many sleeps the clock has woken so far (one per jump of time, or per sleep due at the same time) */
  advances(): number {
    return this.advanced;
  }

  /** the due times of the pending sleeps, earliest first */
  pendingDue(): Date[] {
    return [...this.pending].sort(byDue).map((p) => new Date(p.due));
  }

  /** Move time forward by `ms` without waking anything: what a suspended host or a blocked event loop looks like
   * to the program. Sleeps that became due wake at the next turns, late, in order. */
  jump(ms: number): void {
    this.t += Math.max(0, ms);
  }

  /** Keep time still until `release()` (e.g. while a test inspects a state it has reached). Nestable. */
  hold(): void {
    this.held++;
  }

  release(): void {
    if (this.held > 0) this.held--;
    this.queueTurn();
  }

  private queueTurn(): void {
    if (this.turnQueued || this.held > 0 || this.pending.length === 0) return;
    this.turnQueued = true;
    setImmediate(() => {
      this.turnQueued = false;
      this.wakeEarliest();
    });
  }

  private wakeEarliest(): void {
    if (this.held > 0 || this.pending.length === 0) return;
    if (this.advanced >= this.maxAdvances) {
      const err = new Error(`virtual clock: more than ${this.maxAdvances} wake-ups; a loop that never ends?`);
      for (const p of [...this.pending]) {
        this.remove(p);
        p.reject(err);
      }
      return;
    }
    let next = this.pending[0]!;
    for (const p of this.pending) if (byDue(p, next) < 0) next = p;
    this.remove(next);
    this.t = Math.max(this.t, next.due);
    this.advanced++;
    next.resolve();
    this.queueTurn();
  }

  private remove(entry: PendingSleep): void {
    const i = this.pending.indexOf(entry);
    if (i >= 0) this.pending.splice(i, 1);
    if (entry.signal && entry.onAbort) {
      entry.signal.removeEventListener("abort", entry.onAbort);
      entry.onAbort = undefined;
      this.listeners--;
    }
  }
}

const byDue = (a: PendingSleep, b: PendingSleep) => a.due - b.due || a.seq - b.seq;
