/**
 * The ARM retry policy's pure parts and its decisions, with an in-process `next` (the integration tests in
 * test/integration/azure-dns-zone.test.ts run it through the real SDK against the ARM stand-in).
 */
import { describe, expect, it } from "vitest";
import { ArmThrottledError, ArmTimeoutError, armRetryPolicy, backoffMs, retryAfterMs } from "../../src/azure/request-policy.js";

const headers = (h: Record<string, string>) => ({ get: (name: string) => h[name.toLowerCase()] });

describe("retryAfterMs", () => {
  it("reads retry-after-ms and x-ms-retry-after-ms first, then Retry-After in seconds or as an HTTP date", () => {
    const now = () => Date.parse("2030-01-01T00:00:00Z");
    expect(retryAfterMs(headers({ "retry-after-ms": "250", "retry-after": "9" }), now)).toBe(250);
    expect(retryAfterMs(headers({ "x-ms-retry-after-ms": "1500" }), now)).toBe(1500);
    expect(retryAfterMs(headers({ "retry-after": "7" }), now)).toBe(7000);
    expect(retryAfterMs(headers({ "retry-after": "0.5" }), now)).toBe(500);
    expect(retryAfterMs(headers({ "retry-after": "Tue, 01 Jan 2030 00:00:30 GMT" }), now)).toBe(30_000);
    expect(retryAfterMs(headers({ "retry-after": "Mon, 31 Dec 2029 23:00:00 GMT" }), now)).toBe(0);
    expect(retryAfterMs(headers({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(retryAfterMs(headers({}), now)).toBeUndefined();
  });
});

describe("backoffMs (full jitter)", () => {
  it("draws up to min(max, base × 2^(retry-1))", () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, 100, 1000, () => 0.999))).toEqual([99, 199, 399, 799, 999]);
    expect(backoffMs(3, 100, 1000, () => 0)).toBe(0);
  });
});

describe("armRetryPolicy with an in-process next", () => {
  const request = () => ({ method: "GET", url: "https://arm.test/subscriptions/s/x?api-version=1", abortSignal: undefined as AbortSignal | undefined });
  const answer = (status: number, h: Record<string, string> = {}, body = "") => ({ status, headers: headers(h), bodyAsText: body });
  const run = (o: Parameters<typeof armRetryPolicy>[0], answers: Array<ReturnType<typeof answer> | Error | "hang">) => {
    const waits: number[] = [];
    const tries: number[] = [];
    const p = armRetryPolicy(o, { sleep: async (ms) => void waits.push(ms), random: () => 0.5 }).policy;
    const req = request();
    const next = (r: typeof req) => {
      tries.push(tries.length + 1);
      const a = answers.shift();
      if (a === "hang") {
        return new Promise<never>((_, reject) => r.abortSignal?.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" }))));
      }
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a!);
    };
    return { result: p.sendRequest(req, next as never), waits, tries, req };
  };

  it("when an answer is not worth a retry (400, 404, 409, 412), it is returned at once", async () => {
    for (const status of [400, 404, 409, 412]) {
      const r = run({ maxRetries: 3 }, [answer(status)]);
      expect((await r.result).status).toBe(status);
      expect(r.tries).toEqual([1]);
    }
  });

  it("when every try answers 5xx, the last answer is returned after maxRetries retries", async () => {
    const r = run({ maxRetries: 2, retryDelayMs: 100, maxRetryDelayMs: 1000 }, [answer(502), answer(504), answer(500)]);
    expect((await r.result).status).toBe(500);
    expect(r.waits).toEqual([50, 100]);
  });

  it("when ARM asks for more than the cap, ArmThrottledError carries the wait, the cap and ARM's code", async () => {
    const r = run({ maxRetries: 3, maxRetryAfterMs: 10_000 }, [answer(503, { "retry-after": "30", "x-ms-request-id": "rid" }, JSON.stringify({ error: { code: "ServerBusy", message: "busy" } }))]);
    const err = await r.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArmThrottledError);
    expect((err as ArmThrottledError).facts).toEqual({ status: 503, armCode: "ServerBusy", retryAfterMs: 30_000, maxRetryAfterMs: 10_000, attempts: 1, why: "retry-after-too-long", method: "GET", url: "/subscriptions/s/x", requestId: "rid" });
    expect(r.waits).toEqual([]);
  });

  it("when a connection error is transient it is retried; any other error is thrown at once", async () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const r = run({ maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 10 }, [refused, answer(200)]);
    expect((await r.result).status).toBe(200);
    expect(r.tries).toEqual([1, 2]);
    const bug = new TypeError("x is not a function");
    const b = run({ maxRetries: 2 }, [bug]);
    await expect(b.result).rejects.toBe(bug);
    expect(b.tries).toEqual([1]);
  });

  it("when every try runs past the timeout, ArmTimeoutError names the request, the bound and the tries; the request's own signal is put back", async () => {
    const r = run({ maxRetries: 1, timeoutMs: 20, retryDelayMs: 1, maxRetryDelayMs: 1 }, ["hang", "hang"]);
    const err = await r.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArmTimeoutError);
    expect((err as Error).message).toBe("ARM did not answer GET /subscriptions/s/x within 20 ms (azure.requestTimeout), 2 tries");
    expect((err as ArmTimeoutError).facts).toEqual({ timeoutMs: 20, attempts: 2, method: "GET", url: "/subscriptions/s/x" });
    expect(r.req.abortSignal).toBeUndefined();
  });
});
