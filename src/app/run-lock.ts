/**
 * The run lock over a cluster's Lease, in client-go's leader-election manner:
 *   - one holder identity per process (pod name or host, and pid);
 *   - a short lease (LEASE_DURATION_SECONDS), renewed every third of it while a run holds it, so a crashed holder
 *     blocks the next run for at most that long, not an hour;
 *   - a run that finds the lease held waits for it, polling, for at most a lease duration and a little: it takes the
 *     lease once the holder releases it or stops renewing it (a crashed run: its CronJob retry pod must renew, not
 *     report "skipped"); a holder still renewing after that, or one holding a longer lease, means the run is skipped;
 *   - within one process, runs on the same cluster take turns (the Lease alone would let the same holder in twice);
 *   - a lease lost while held (another run took it over) aborts the run through the signal `acquire` returns;
 *   - a lease held by a process of this same host (pod) that no longer exists (a run killed by SIGKILL or OOM, then
 *     run again on the same machine) is taken over at once, without waiting for it to lapse (`abandonedBy`).
 */
import type { Clock } from "../ports.js";
import type { LeaseAttempt, LeaseLock } from "../kubernetes/lease-lock.js";
import type { LogSink } from "../observability/logger.js";
import type { RunLock } from "../renewal/deps.js";

/** client-go's defaults are 15 s lease / 10 s renew deadline for controllers; a renewal run is slower and rarer. */
export const LEASE_DURATION_SECONDS = 90;
/** Waiting longer than a lease duration plus this for a lapsing lease means its holder is alive and renewing. */
const WAIT_SLACK_MS = 15_000;
/** How often a waiting run looks at the lease again. */
const POLL_MS = 5_000;

export interface RunLockOptions {
  lease: LeaseLock;
  holder: string;
  clock: Clock;
  logger: LogSink;
  durationSeconds?: number;
  /** is `holder` a process known to be dead (see `deadOnThisHost`)? Its lease is then taken over unexpired. */
  abandonedBy?: (holder: string) => boolean;
}

/**
 * Holder identities are `<pod or host>/<pid>`. Another holder is dead when it names this same pod or host, another
 * pid, and `alive(pid)` says no such process exists. A holder from another pod (a CronJob's retry pod) is never
 * judged: its lease must lapse.
 */
export function deadOnThisHost(self: string, alive: (pid: number) => boolean): (holder: string) => boolean {
  const split = (h: string) => {
    const i = h.lastIndexOf("/");
    return i < 0 ? undefined : { host: h.slice(0, i), pid: Number(h.slice(i + 1)) };
  };
  const me = split(self);
  return (holder) => {
    const other = split(holder);
    if (!me || !other || other.host !== me.host || !Number.isSafeInteger(other.pid) || other.pid <= 0 || other.pid === me.pid) return false;
    return !alive(other.pid);
  };
}

/** A process-wide turn per cluster, and the Lease across processes. */
export function createRunLock(opts: RunLockOptions): RunLock {
  const { lease, holder, clock, logger } = opts;
  const duration = opts.durationSeconds ?? LEASE_DURATION_SECONDS;
  let turn: Promise<void> = Promise.resolve();
  let endTurn: (() => void) | undefined;
  let renewal: { stop: AbortController; done: Promise<void> } | undefined;

  const keepRenewing = (stop: AbortController, lost: AbortController): Promise<void> =>
    (async () => {
      const every = (duration * 1000) / 3;
      for (;;) {
        await clock.sleep(every, stop.signal);
        const attempt = await lease.tryAcquire(holder, duration).catch((err: unknown) => {
          logger.warn({ lease: lease.name, error: (err as Error).message }, "could not renew the lease; trying again");
          return { acquired: true } as LeaseAttempt;
        });
        if (!attempt.acquired) {
          logger.warn({ lease: lease.name, holder: attempt.holder }, "lost the lease to another run; stopping this run");
          lost.abort(new Error(`lost the Lease ${lease.name} to ${attempt.holder ?? "another run"}`));
          return;
        }
      }
    })().catch(() => undefined);

  const acquire = async (signal?: AbortSignal): Promise<AbortSignal | undefined> => {
    // take turns within the process
    const previous = turn;
    let release!: () => void;
    turn = new Promise<void>((r) => (release = r));
    await previous;
    endTurn = release;
    try {
      const deadline = clock.now().getTime() + duration * 1000 + WAIT_SLACK_MS;
      for (let polls = 0; ; polls++) {
        signal?.throwIfAborted();
        let attempt = await lease.tryAcquire(holder, duration);
        if (!attempt.acquired && attempt.holder && opts.abandonedBy?.(attempt.holder)) {
          logger.warn({ lease: lease.name, holder: attempt.holder }, "the lease is held by a process of this host that no longer exists (a crashed run); taking it over");
          attempt = await lease.tryAcquire(holder, duration, { takeOverFrom: attempt.holder });
        }
        if (attempt.acquired) {
          const stop = new AbortController();
          const lost = new AbortController();
          renewal = { stop, done: keepRenewing(stop, lost) };
          return signal ? AbortSignal.any([signal, lost.signal]) : lost.signal;
        }
        const now = clock.now().getTime();
        const lapses = attempt.expiresAt ?? Number.POSITIVE_INFINITY;
        // a live holder (lease not lapsing within our wait), or waited long enough: skip
        if (lapses > deadline || now >= deadline || polls > Math.ceil((duration * 1000 + WAIT_SLACK_MS) / POLL_MS)) break;
        if (polls === 0) logger.info({ lease: lease.name, holder: attempt.holder, lapsesAt: new Date(lapses).toISOString() }, "the lease is held by another run; waiting for it to be released or to lapse");
        await clock.sleep(Math.max(250, Math.min(POLL_MS, lapses - now + 250)), signal);
      }
    } catch (err) {
      endTurn = undefined;
      release();
      throw err;
    }
    endTurn = undefined;
    release();
    return undefined;
  };

  const release = async (): Promise<void> => {
    const r = renewal;
    renewal = undefined;
    r?.stop.abort();
    await r?.done;
    await lease.release();
    const end = endTurn;
    endTurn = undefined;
    end?.();
  };

  return { acquire, release };
}
