import { describe, expect, it } from "vitest";
import { waitForTxt, waitForTxtGone, type WaitForTxtInput } from "../../src/dns-check/propagation.js";
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
