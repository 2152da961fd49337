import { describe, expect, it } from "vitest";
import { createRunLock, deadOnThisHost, LEASE_DURATION_SECONDS } from "../../src/app/run-lock.js";
import type { LeaseAttempt, LeaseLock } from "../../src/kubernetes/lease-lock.js";
import { silentLogger } from "../support/fakes.js";
import { VirtualClock } from "../support/virtual-clock.js";

const T0 = new Date("2026-05-01T12:00:00Z");

/** A Lease in memory with client-go's rules: another holder may take it once renewTime + duration has passed. */
class MemoryLease implements LeaseLock {
  readonly name = "amlcert";
  holder: string | undefined;
  renewedAt = 0;
  duration = 0;
  readonly attempts: { holder: string; at: number; acquired: boolean }[] = [];
  releases = 0;
  constructor(private readonly clock: VirtualClock) {}
  async tryAcquire(holder: string, ttlSeconds: number, opts: { takeOverFrom?: string } = {}): Promise<LeaseAttempt> {
    const now = this.clock.now().getTime();
    const expiresAt = this.renewedAt + this.duration * 1000;
    if (this.holder && this.holder !== holder && expiresAt > now && this.holder !== opts.takeOverFrom) {
      this.attempts.push({ holder, at: now, acquired: false });
      return { acquired: false, holder: this.holder, expiresAt };
    }
    Object.assign(this, { holder, renewedAt: now, duration: ttlSeconds });
    this.attempts.push({ holder, at: now, acquired: true });
    return { acquired: true };
  }
  async acquire(holder: string, ttlSeconds: number) {
    return (await this.tryAcquire(holder, ttlSeconds)).acquired;
  }
  async release() {
    this.releases++;
    this.holder = undefined;
  }
}

function setup() {
  const clock = new VirtualClock(T0);
  const lease = new MemoryLease(clock);
  const lock = createRunLock({ lease, holder: "pod-a/1", clock, logger: silentLogger() });
  return { clock, lease, lock };
}

describe("run lock over the cluster Lease", () => {
  it("takes a free lease for 90 s under this process's identity", async () => {
    const { lease, lock } = setup();
    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);
    expect({ holder: lease.holder, duration: lease.duration }).toEqual({ holder: "pod-a/1", duration: LEASE_DURATION_SECONDS });
    await lock.release();
    expect(lease.releases).toBe(1);
  });

  it("when a crashed run's lease lapses within the wait, waits for it and takes it over (a retry pod renews, not skips)", async () => {
    const { clock, lease, lock } = setup();
    Object.assign(lease, { holder: "pod-crashed/7", renewedAt: T0.getTime() - 30_000, duration: 90 });

    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);

    expect(lease.holder).toBe("pod-a/1");
    // it lapsed at T0 + 60 s; the lock looked again just after that, not an hour later
    const took = lease.attempts.find((a) => a.acquired)!;
    expect(took.at - T0.getTime()).toBeGreaterThanOrEqual(60_000);
    expect(took.at - T0.getTime()).toBeLessThanOrEqual(60_250);
    expect(clock.now().getTime() - T0.getTime()).toBe(took.at - T0.getTime());
  });

  it("when a live run holds a long lease, skips at once without waiting", async () => {
    const { clock, lease, lock } = setup();
    Object.assign(lease, { holder: "other-pod/1", renewedAt: T0.getTime(), duration: 3600 });

    expect(await lock.acquire()).toBeUndefined();

    expect(clock.now()).toEqual(T0);
    expect(clock.pendingSleeps()).toBe(0);
    expect(lease.attempts).toHaveLength(1);
  });

  it("when the holder keeps renewing its short lease, gives up after one lease duration and a little, and skips", async () => {
    const { clock, lease, lock } = setup();
    Object.assign(lease, { holder: "other-pod/1", renewedAt: T0.getTime(), duration: 90 });
    // the other holder renews every 30 s, as a live run does
    const other = new AbortController();
    void (async () => {
      for (;;) {
        await clock.sleep(30_000, other.signal);
        lease.renewedAt = clock.now().getTime();
      }
    })().catch(() => undefined);

    expect(await lock.acquire()).toBeUndefined();

    expect(clock.now().getTime() - T0.getTime()).toBeLessThanOrEqual((LEASE_DURATION_SECONDS + 15) * 1000 + 5_000);
    expect(lease.holder).toBe("other-pod/1");
    other.abort();
  });

  it("renews the lease every 30 s while held, and stops renewing once released", async () => {
    const { clock, lease, lock } = setup();
    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);
    // let the renewal loop run a few rounds on the fake clock
    await clock.sleep(61_000);
    const renewals = lease.attempts.filter((a) => a.acquired).map((a) => a.at - T0.getTime());
    expect(renewals).toEqual([0, 30_000, 60_000]);
    await lock.release();
    expect(clock.pendingSleeps()).toBe(0);
    await clock.sleep(120_000);
    expect(lease.attempts).toHaveLength(3);
  });

  it("when another run takes the lease over while held, the run's signal aborts naming the new holder", async () => {
    const { clock, lease, lock } = setup();
    const signal = (await lock.acquire())!;
    Object.assign(lease, { holder: "usurper/1", renewedAt: T0.getTime() + 3_600_000, duration: 90 });
    await clock.sleep(31_000);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe("lost the Lease amlcert to usurper/1");
    expect(clock.pendingSleeps()).toBe(0);
    await lock.release();
  });

  it("two runs of one process on one cluster take turns: the second acquires only after the first released", async () => {
    const { lease, lock } = setup();
    const order: string[] = [];
    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);
    const second = lock.acquire().then((held) => order.push(`second:${held !== undefined}`));
    await new Promise((r) => setImmediate(r));
    order.push("first-release");
    await lock.release();
    await second;
    expect(order).toEqual(["first-release", "second:true"]);
    expect(lease.holder).toBe("pod-a/1");
    await lock.release();
  });

  it("when the lease is held by a process of this same host that no longer exists (a crashed run), takes it over at once without waiting", async () => {
    const clock = new VirtualClock(T0);
    const lease = new MemoryLease(clock);
    Object.assign(lease, { holder: "pod-a/7", renewedAt: T0.getTime() - 1_000, duration: 90 });
    const lock = createRunLock({ lease, holder: "pod-a/1", clock, logger: silentLogger(), abandonedBy: deadOnThisHost("pod-a/1", (pid) => pid !== 7) });

    expect(await lock.acquire()).toBeInstanceOf(AbortSignal);

    expect(lease.holder).toBe("pod-a/1");
    expect(clock.now()).toEqual(T0);
    await lock.release();
  });

  it("judges only holders of this host with another pid: another pod's, its own pid's, a live pid's or an unparsable holder's lease must lapse", () => {
    const dead = deadOnThisHost("pod-a/1", (pid) => pid === 9);
    expect(dead("pod-a/7")).toBe(true);
    expect(dead("pod-a/9")).toBe(false);
    expect(dead("pod-b/7")).toBe(false);
    expect(dead("pod-a/1")).toBe(false);
    expect(dead("pod-a/x")).toBe(false);
    expect(dead("pod-a")).toBe(false);
    expect(deadOnThisHost("no-pid", () => false)("no-pid/3")).toBe(false);
  });
});
