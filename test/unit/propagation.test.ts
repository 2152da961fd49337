import { describe, expect, it } from "vitest";
import { FIRST_GAP_MS, nextGapMs, roundsWithin, waitForTxt, waitForTxtGone, type WaitForTxtInput } from "../../src/dns-check/propagation.js";
import { AmlcertError } from "../../src/errors.js";
import type { Clock, DnsLookup } from "../../src/ports.js";

/** A clock whose sleep advances time at once and records each sleep. */
function fakeClock(startMs = 1_700_000_000_000): Clock & { sleeps: number[]; nowMs: () => number } {
  let now = startMs;
  const sleeps: number[] = [];
  return {
    sleeps,
    nowMs: () => now,
    now: () => new Date(now),
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

/**
 * A DnsLookup whose per-server TXT answers follow a script keyed by the clock: `serve(server, fromMs, values)`.
 * A server with an `error` entry throws like a DnsLookupError would.
 */
function fakeLookup(clock: { nowMs: () => number }, start: number) {
  const schedule = new Map<string, Array<{ from: number; values?: string[]; error?: string }>>();
  const calls: Array<{ name: string; servers: string[]; at: number }> = [];
  const lookup: DnsLookup = {
    async txt(name, servers) {
      calls.push({ name, servers, at: clock.nowMs() - start });
      expect(servers).toHaveLength(1); // the check must ask servers one at a time to name the laggards
      const steps = (schedule.get(servers[0]!) ?? []).filter((s) => s.from <= clock.nowMs() - start);
      const step = steps[steps.length - 1];
      if (step?.error) throw Object.assign(new Error(`query to ${servers[0]} failed`), { code: step.error });
      return step?.values ?? [];
    },
    resolve: () => Promise.reject(new Error("unused")),
    hostAddresses: () => Promise.reject(new Error("unused")),
    ns: () => Promise.reject(new Error("unused")),
  };
  return {
    lookup,
    calls,
    serve(server: string, fromMs: number, values: string[]) {
      schedule.set(server, [...(schedule.get(server) ?? []), { from: fromMs, values }]);
    },
    fail(server: string, fromMs: number, code: string) {
      schedule.set(server, [...(schedule.get(server) ?? []), { from: fromMs, error: code }]);
    },
  };
}

const S1 = "10.0.0.1:53";
const S2 = "10.0.0.2:53";
const VALUE = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

function setup() {
  const clock = fakeClock();
  const start = clock.nowMs();
  const dns = fakeLookup(clock, start);
  const logs: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const logger = {
    debug: (obj: Record<string, unknown>, msg: string) => logs.push({ level: "debug", obj, msg }),
    info: (obj: Record<string, unknown>, msg: string) => logs.push({ level: "info", obj, msg }),
  };
  const input = (over: Partial<WaitForTxtInput> = {}): WaitForTxtInput => ({
    lookup: dns.lookup,
    name: "_acme-challenge.www.example.com.",
    value: VALUE,
    servers: [S1, S2],
    timeoutMs: 60_000,
    intervalMs: 2_000,
    // a fixed 2 s interval (first gap = longest gap); the growing gap has its own tests below
    minIntervalMs: 2_000,
    clock,
    logger,
    ...over,
  });
  return { clock, dns, logs, input };
}

describe("waitForTxt", () => {
  it("when every server already serves the value, returns after one round without sleeping", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, ["other", VALUE]);
    dns.serve(S2, 0, [VALUE]);
    expect(await waitForTxt(input())).toEqual({ attempts: 1, elapsedMs: 0 });
    expect(clock.sleeps).toEqual([]);
    expect(dns.calls.map((c) => c.servers[0]).sort()).toEqual([S1, S2]);
    expect(dns.calls.every((c) => c.name === "_acme-challenge.www.example.com")).toBe(true);
  });

  it("when a server lags, polls every intervalMs until it serves the value", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 5_000, [VALUE]);
    const result = await waitForTxt(input());
    expect(result).toEqual({ attempts: 4, elapsedMs: 6_000 });
    expect(clock.sleeps).toEqual([2_000, 2_000, 2_000]);
  });

  it("when a server never serves the value, throws DNS_PROPAGATION_TIMEOUT at the deadline naming only that server", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 0, ["stale"]);
    const err = await waitForTxt(input({ timeoutMs: 7_000 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmlcertError);
    const e = err as AmlcertError;
    expect(e.code).toBe("DNS_PROPAGATION_TIMEOUT");
    expect(e.stage).toBe("propagation");
    expect(e.message).toContain("_acme-challenge.www.example.com");
    expect(e.message).toContain('"abcdefgh…"');
    expect(e.message).not.toContain(VALUE);
    expect(e.message).toContain(S2);
    expect(e.message).not.toContain(S1);
    expect(e.details).toMatchObject({ pending: [S2], attempts: 5 });
    // bounded by the deadline: the last sleep is cut to what remains
    expect(clock.sleeps).toEqual([2_000, 2_000, 2_000, 1_000]);
  });

  it("when a server's query fails, it counts as lacking the value and its error is named", async () => {
    const { dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.fail(S2, 0, "ETIMEOUT");
    const err = await waitForTxt(input({ timeoutMs: 4_000 })).catch((e: unknown) => e);
    expect((err as Error).message).toContain(`${S2} (ETIMEOUT)`);
  });

  it("when a server recovers from failing queries, the wait succeeds", async () => {
    const { dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.fail(S2, 0, "ESERVFAIL");
    dns.serve(S2, 3_000, [VALUE]);
    expect((await waitForTxt(input())).attempts).toBe(3);
  });

  it("when the clock does not advance, still stops after timeoutMs/intervalMs + 1 rounds", async () => {
    const { dns, input } = setup();
    const frozen: Clock = { now: () => new Date(0), sleep: async () => {} };
    dns.serve(S1, 0, []);
    const err = await waitForTxt(input({ clock: frozen, timeoutMs: 10_000, intervalMs: 2_000, servers: [S1] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", details: { attempts: 6 } });
  });

  it("when timeoutMs is 0, checks exactly once", async () => {
    const { clock, dns, input } = setup();
    const err = await waitForTxt(input({ timeoutMs: 0 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT" });
    expect(dns.calls).toHaveLength(2);
    expect(clock.sleeps).toEqual([]);
  });

  it("when no servers are given, refuses at once instead of reporting success", async () => {
    const { input } = setup();
    await expect(waitForTxt(input({ servers: [] }))).rejects.toMatchObject({ code: "INTERNAL", stage: "propagation" });
  });

  it("logs progress with a shortened value only", async () => {
    const { dns, logs, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 2_000, [VALUE]);
    await waitForTxt(input());
    expect(logs.map((l) => l.level)).toEqual(["debug", "info"]);
    expect(logs[0]!.obj).toMatchObject({ pending: [S2], attempt: 1 });
    expect(JSON.stringify(logs)).not.toContain(VALUE);
  });
});

describe("waitForTxtGone", () => {
  it("when the value is still served by one server, waits until it is gone (other values may stay)", async () => {
    const { dns, input } = setup();
    dns.serve(S1, 0, ["keep-me"]);
    dns.serve(S2, 0, ["keep-me", VALUE]);
    dns.serve(S2, 4_000, ["keep-me"]);
    expect(await waitForTxtGone(input())).toEqual({ attempts: 3, elapsedMs: 4_000 });
  });

  it("when the value never goes away, throws DNS_PROPAGATION_TIMEOUT naming the server still serving it", async () => {
    const { dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 0, []);
    const err = await waitForTxtGone(input({ timeoutMs: 5_000 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
    expect((err as Error).message).toContain(`still served by 1 of 2 authoritative server(s) after 5000 ms: ${S1}`);
  });

  it("when a server cannot be asked, the value does not count as gone", async () => {
    const { dns, input } = setup();
    dns.serve(S1, 0, []);
    dns.fail(S2, 0, "EREFUSED");
    await expect(waitForTxtGone(input({ timeoutMs: 2_000 }))).rejects.toThrow(`${S2} (EREFUSED)`);
  });
});

describe("the growing gap between rounds", () => {
  it("starts at 100 ms, is a tenth of the time waited after the first second, and never exceeds intervalMs", () => {
    expect(FIRST_GAP_MS).toBe(100);
    expect([0, 999, 1_000, 2_000, 12_340, 50_000, 60_000, 600_000].map((e) => nextGapMs(e, 100, 5_000))).toEqual([100, 100, 100, 200, 1_234, 5_000, 5_000, 5_000]);
  });

  it("when the first gap is longer than intervalMs, intervalMs wins", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 1_000, [VALUE]);
    await waitForTxt(input({ minIntervalMs: 5_000, intervalMs: 400 }));
    expect(clock.sleeps).toEqual([400, 400, 400]);
  });

  it("when a server serves the value 2 s in, the wait ends at most a tenth later, after 100 ms gaps first", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 2_000, [VALUE]);
    const result = await waitForTxt(input({ minIntervalMs: undefined, intervalMs: 5_000 }));
    expect(clock.sleeps.slice(0, 10)).toEqual(Array(10).fill(100));
    expect(result.elapsedMs).toBe(2_143);
    expect(result.attempts).toBe(19);
  });

  it("when a server lags for a minute, the gaps reach intervalMs and stay there", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 60_000, [VALUE]);
    const result = await waitForTxt(input({ minIntervalMs: undefined, intervalMs: 5_000, timeoutMs: 600_000 }));
    expect(clock.sleeps.slice(-2)).toEqual([5_000, 5_000]);
    expect(clock.sleeps.filter((g) => g === 100)).toHaveLength(11);
    expect(Math.max(...clock.sleeps)).toBe(5_000);
    expect(result.elapsedMs).toBe(64_755);
    expect(result.attempts).toBe(55);
  });

  it("when the clock does not advance, stops after the rounds the schedule makes within timeoutMs", async () => {
    const { dns, input } = setup();
    const frozen: Clock = { now: () => new Date(0), sleep: async () => {} };
    dns.serve(S1, 0, []);
    expect(roundsWithin(1_000, 100, 5_000)).toBe(11);
    const err = await waitForTxt(input({ clock: frozen, timeoutMs: 1_000, minIntervalMs: undefined, intervalMs: 5_000, servers: [S1] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", details: { attempts: 11 } });
  });
});

describe("dns.propagationSettle", () => {
  it("when settleMs is set, waits it once after every server serves the value, before returning", async () => {
    const { clock, dns, logs, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 2_000, [VALUE]);
    const result = await waitForTxt(input({ settleMs: 1_500 }));
    expect(clock.sleeps).toEqual([2_000, 1_500]);
    expect(result).toEqual({ attempts: 2, elapsedMs: 2_000 });
    expect(logs.at(-1)).toMatchObject({ level: "info", obj: { settleMs: 1_500 } });
  });

  it("when settleMs is 0 or unset, does not sleep after the last round", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, [VALUE]);
    dns.serve(S2, 0, [VALUE]);
    await waitForTxt(input({ settleMs: 0 }));
    expect(clock.sleeps).toEqual([]);
  });

  it("waitForTxtGone does not settle", async () => {
    const { clock, dns, input } = setup();
    dns.serve(S1, 0, []);
    dns.serve(S2, 0, []);
    await waitForTxtGone(input({ settleMs: 3_000 }));
    expect(clock.sleeps).toEqual([]);
  });

  it("when settleMs is negative, refuses as invalid timing", async () => {
    const { input } = setup();
    await expect(waitForTxt(input({ settleMs: -1 }))).rejects.toMatchObject({ code: "INTERNAL", stage: "propagation" });
  });
});
