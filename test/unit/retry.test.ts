import { describe, expect, it } from "vitest";
import {
  EXPIRED_CAP_MS,
  RETRY_FLOOR_MS,
  RETRY_TABLE_MS,
  retryDelay,
  retryJitterFactor,
  retryTableDelay,
} from "../../src/schedule/retry.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const now = new Date("2026-05-01T12:00:00Z");
const left = (ms: number) => new Date(now.getTime() + ms);
const seed = "ml.contoso.test";
const f = retryJitterFactor(seed);
const jittered = (ms: number) => Math.round(ms * f);

describe("retry table", () => {
  it("has the documented rows: 5 min, 15 min, 30 min, 1 h, 2 h, then 4 h", () => {
    expect(RETRY_TABLE_MS).toEqual([5 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR]);
    expect([1, 2, 3, 4, 5, 6, 7, 50].map(retryTableDelay)).toEqual([5 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR]);
  });

  it("when no expiry is known, each failure count gets its row, jittered by the seed's factor", () => {
    const rows = [1, 2, 3, 4, 5, 6, 7, 12].map((n) => retryDelay({ consecutiveFailures: n, now, seed }));
    expect(rows).toEqual(
      [5 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR].map((ms) => ({ delayMs: jittered(ms), reason: "Table" })),
    );
  });

  it("when the failure count is below 1, it counts as the first failure", () => {
    expect(retryDelay({ consecutiveFailures: 0, now, seed })).toEqual({ delayMs: jittered(5 * MIN), reason: "Table" });
  });
});

describe("jitter", () => {
  it("is the same for the same seed and fixed across versions", () => {
    expect(retryJitterFactor("b")).toBe(0.9485470782034504);
    expect(retryJitterFactor("a")).toBe(1.0582748541044757);
    expect(retryJitterFactor(seed)).toBe(f);
  });

  it("stays within ±10% and spreads across seeds", () => {
    const factors = Array.from({ length: 1000 }, (_, i) => retryJitterFactor(`target-${i}.contoso.test#3`));
    expect(Math.min(...factors)).toBeGreaterThanOrEqual(0.9);
    expect(Math.max(...factors)).toBeLessThan(1.1);
    // ten equal bands between 0.9 and 1.1: each holds 100 ± 40 of the 1000
    const bands = Array.from({ length: 10 }, () => 0);
    for (const x of factors) bands[Math.floor((x - 0.9) / 0.02)]!++;
    for (const n of bands) {
      expect(n).toBeGreaterThan(60);
      expect(n).toBeLessThan(140);
    }
  });
});

describe("lifetime cap", () => {
  it("for a 90-day certificate renewed 30 days before expiry, the table applies until the last day", () => {
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(30 * DAY) })).toEqual({ delayMs: jittered(4 * HOUR), reason: "Table" });
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(2 * DAY) })).toEqual({ delayMs: jittered(4 * HOUR), reason: "Table" });
    // one day left: 1/10 is 2.4 h
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(DAY) })).toEqual({ delayMs: 2.4 * HOUR, reason: "LifetimeCap" });
  });

  it("for a 45-day certificate renewed 15 days before expiry, the table applies; with 30 h left the 4 h row becomes 3 h", () => {
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(15 * DAY) })).toEqual({ delayMs: jittered(4 * HOUR), reason: "Table" });
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(30 * HOUR) })).toEqual({ delayMs: 3 * HOUR, reason: "LifetimeCap" });
    expect(retryDelay({ consecutiveFailures: 5, now, seed, notAfter: left(30 * HOUR) })).toEqual({ delayMs: jittered(2 * HOUR), reason: "Table" });
  });

  it("for a 6-day certificate renewed 2 days before expiry, retries tighten with the time left", () => {
    const at = (failures: number, msLeft: number) => retryDelay({ consecutiveFailures: failures, now, seed, notAfter: left(msLeft) });
    // 48 h left: 1/10 is 4.8 h, more than any row
    expect(at(6, 48 * HOUR)).toEqual({ delayMs: jittered(4 * HOUR), reason: "Table" });
    // 24 h left: 2.4 h
    expect(at(5, 24 * HOUR)).toEqual({ delayMs: jittered(2 * HOUR), reason: "Table" });
    expect(at(6, 24 * HOUR)).toEqual({ delayMs: 2.4 * HOUR, reason: "LifetimeCap" });
    // 6 h left: 36 min
    expect(at(3, 6 * HOUR)).toEqual({ delayMs: jittered(30 * MIN), reason: "Table" });
    expect(at(4, 6 * HOUR)).toEqual({ delayMs: 36 * MIN, reason: "LifetimeCap" });
    // 20 min left: 2 min, even after the first failure
    expect(at(1, 20 * MIN)).toEqual({ delayMs: 2 * MIN, reason: "LifetimeCap" });
  });

  it("for a 6-day certificate failing from 2 days before expiry, no wait is longer than 1/10 of the time left, and it is tried 68 times before it expires", () => {
    const notAfter = left(2 * DAY);
    let t = now.getTime();
    let failures = 0;
    const waits: { leftMs: number; delayMs: number; reason: string }[] = [];
    while (t < notAfter.getTime() && waits.length < 10_000) {
      failures++;
      const d = retryDelay({ consecutiveFailures: failures, now: new Date(t), notAfter, seed: `${seed}#${failures}` });
      waits.push({ leftMs: notAfter.getTime() - t, ...d });
      t += d.delayMs;
    }
    for (const w of waits) expect(w.delayMs).toBeLessThanOrEqual(Math.max(w.leftMs / 10, RETRY_FLOOR_MS));
    expect(waits.length).toBe(68);
    // the table for the first 7 failures (the 4 h row first meets the cap with under 36 h left), then the cap, then the
    // 1-minute floor for the last 10 minutes
    const reasons = waits.map((w) => w.reason);
    expect(reasons).toEqual([...Array(7).fill("Table"), ...Array(51).fill("LifetimeCap"), ...Array(10).fill("Floor")]);
  });
});

describe("floor, expiry and not-before", () => {
  it("when expiry is minutes away, never waits less than 1 minute", () => {
    expect(retryDelay({ consecutiveFailures: 1, now, seed, notAfter: left(5 * MIN) })).toEqual({ delayMs: RETRY_FLOOR_MS, reason: "Floor" });
    expect(retryDelay({ consecutiveFailures: 1, now, seed, notAfter: left(1000) })).toEqual({ delayMs: RETRY_FLOOR_MS, reason: "Floor" });
  });

  it("when the certificate has expired, uses the table but waits at most 1 hour", () => {
    expect(retryDelay({ consecutiveFailures: 1, now, seed, notAfter: left(-DAY) })).toEqual({ delayMs: jittered(5 * MIN), reason: "Table" });
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(-DAY) })).toEqual({ delayMs: EXPIRED_CAP_MS, reason: "Expired" });
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: now })).toEqual({ delayMs: EXPIRED_CAP_MS, reason: "Expired" });
  });

  it("when a not-before time is later than the delay, waits until then; when earlier, it changes nothing", () => {
    expect(retryDelay({ consecutiveFailures: 1, now, seed, notBefore: left(2 * HOUR) })).toEqual({ delayMs: 2 * HOUR, reason: "NotBefore" });
    // it wins over the lifetime cap too: the other side would refuse an earlier attempt
    expect(retryDelay({ consecutiveFailures: 6, now, seed, notAfter: left(10 * HOUR), notBefore: left(2 * HOUR) })).toEqual({
      delayMs: 2 * HOUR,
      reason: "NotBefore",
    });
    expect(retryDelay({ consecutiveFailures: 1, now, seed, notBefore: left(MIN) })).toEqual({ delayMs: jittered(5 * MIN), reason: "Table" });
  });
});
