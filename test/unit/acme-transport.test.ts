import type { AxiosAdapter, AxiosResponse, InternalAxiosRequestConfig } from "axios";
import { describe, expect, it } from "vitest";
import { AcmeTransportError, backoffMs, boundedAdapter, retryAfterMs, type TransportCall, type TransportPolicy } from "../../src/acme/acme-transport.js";
import { VirtualClock } from "../support/virtual-clock.js";

const START = new Date("2030-05-01T10:00:00Z");
const POLICY: TransportPolicy = { requestTimeoutMs: 30_000, retryAfterMaxMs: 120_000, attempts: 4, backoffMinMs: 1_000, backoffMaxMs: 10_000 };

type Answer = { status: number; headers?: Record<string, string>; data?: unknown } | "hang" | "refused";

/** An inner adapter that answers from a script, as axios's http adapter does under acme-client (every answer rejects with it). */
function scripted(answers: Answer[]) {
  const seen: InternalAxiosRequestConfig[] = [];
  const adapter: AxiosAdapter = (config) => {
    seen.push(config);
    const a = answers.shift() ?? { status: 200 };
    if (a === "hang") {
      return new Promise((_, reject) => config.signal!.addEventListener!("abort", () => reject(Object.assign(new Error("canceled"), { code: "ERR_CANCELED" }))));
    }
    if (a === "refused") return Promise.reject(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }));
    // the raw body, as the http adapter hands it over (axios parses JSON only after the adapter)
    const response = { status: a.status, headers: a.headers ?? {}, data: a.data === undefined ? "" : JSON.stringify(a.data), config, statusText: "" } as AxiosResponse;
    return Promise.reject(Object.assign(new Error(`status ${a.status}`), { response, config }));
  };
  return { adapter, seen };
}

function setup(answers: Answer[], extra: Partial<TransportCall> = {}) {
  const clock = new VirtualClock(START);
  const inner = scripted(answers);
  const statuses: string[] = [];
  const retries: { status?: number; attempt: number; delayMs: number }[] = [];
  const call: TransportCall = {
    policy: POLICY,
    clock,
    random: () => 0.5,
    requests: (_s, status) => statuses.push(status),
    onRetry: (r) => retries.push({ ...(r.status === undefined ? {} : { status: r.status }), attempt: r.attempt, delayMs: r.delayMs }),
    ...extra,
  };
  const adapter = boundedAdapter(inner.adapter, () => call);
  const send = () => adapter({ method: "post", url: "https://ca.test/acme/new-order", headers: {} } as InternalAxiosRequestConfig);
  return { clock, inner, statuses, retries, call, send };
}

const responseOf = async (p: Promise<unknown>) => {
  try {
    return await p;
  } catch (err) {
    if ((err as { response?: unknown }).response) return (err as { response: AxiosResponse }).response;
    throw err;
  }
};

describe("the bounded ACME transport", () => {
  it("when the CA answers 429 with a Retry-After inside the cap, it waits that long (plus jitter) and tries again", async () => {
    const t = setup([{ status: 429, headers: { "retry-after": "5" } }, { status: 201 }]);
    const res = (await responseOf(t.send())) as AxiosResponse;
    expect(res.status).toBe(201);
    expect(t.statuses).toEqual(["429", "201"]);
    expect(t.retries).toEqual([{ status: 429, attempt: 1, delayMs: 5_250 }]);
    expect(t.clock.now().getTime() - START.getTime()).toBe(5_250);
  });

  it("when the CA answers 429 with a Retry-After longer than the cap, it gives up at once with rate-limited and the time to retry", async () => {
    const t = setup([{ status: 429, headers: { "retry-after": "3600" }, data: { type: "urn:ietf:params:acme:error:rateLimited", detail: "too many new orders" } }]);
    const err = (await t.send().catch((e: unknown) => e)) as AcmeTransportError;
    expect(err).toBeInstanceOf(AcmeTransportError);
    expect(err.kind).toBe("rate-limited");
    expect(err.facts.retryAt).toEqual(new Date(START.getTime() + 3_600_000));
    expect(err.message).toBe(
      "the CA answered 429 to POST /acme/new-order and asks to wait until 2030-05-01T11:00:00.000Z (Retry-After 3600 s, longer than the 120 s a run waits): rateLimited: too many new orders",
    );
    expect(t.retries).toEqual([]);
    expect(t.clock.now()).toEqual(START);
  });

  it("when a call was told to wait longer than the cap, its later requests fail the same way without reaching the CA", async () => {
    const t = setup([{ status: 429, headers: { "retry-after": "3600" } }]);
    const first = await t.send().catch((e: unknown) => e);
    const second = await t.send().catch((e: unknown) => e);
    expect(second).toBe(first);
    expect(t.inner.seen).toHaveLength(1);
  });

  it("when the Retry-After is an HTTP date, it is read as the time to wait", () => {
    expect(retryAfterMs("Wed, 01 May 2030 10:02:00 GMT", START)).toBe(120_000);
    expect(retryAfterMs("120", START)).toBe(120_000);
    expect(retryAfterMs(["7"], START)).toBe(7_000);
    expect(retryAfterMs("soon", START)).toBeUndefined();
    expect(retryAfterMs(undefined, START)).toBeUndefined();
  });

  it("when the CA keeps answering 503 without Retry-After, it backs off (jittered, growing, capped) and gives up after the attempts", async () => {
    const t = setup([{ status: 503 }, { status: 503 }, { status: 503 }, { status: 503, data: { type: "urn:ietf:params:acme:error:serverInternal", detail: "down" } }]);
    const err = (await t.send().catch((e: unknown) => e)) as AcmeTransportError;
    expect([err.kind, err.message, err.facts.attempts]).toEqual(["unavailable", "the CA answered 503 to POST /acme/new-order 4 times: serverInternal: down", 4]);
    // random 0.5: min + (ceiling - min) / 2 with ceilings 1 s, 2 s, 4 s
    expect(t.retries.map((r) => r.delayMs)).toEqual([1_000, 1_500, 2_500]);
    expect(t.statuses).toEqual(["503", "503", "503", "503"]);
  });

  it("when a request is never answered, each attempt is aborted after the request timeout, and the call fails with timeout", async () => {
    const t = setup(["hang", "hang", "hang", "hang"]);
    const err = (await t.send().catch((e: unknown) => e)) as AcmeTransportError;
    expect([err.kind, err.message]).toEqual(["timeout", "the CA did not answer POST /acme/new-order: no answer within 30 s, 4 attempts"]);
    expect(t.inner.seen).toHaveLength(4);
    expect(t.statuses).toEqual(["error", "error", "error", "error"]);
    expect(t.clock.now().getTime() - START.getTime()).toBe(4 * 30_000 + 1_000 + 1_500 + 2_500);
    expect(t.clock.pendingSleeps()).toBe(0);
  });

  it("when a request hangs once and is answered the second time, the call goes on", async () => {
    const t = setup(["hang", { status: 200 }]);
    expect(((await responseOf(t.send())) as AxiosResponse).status).toBe(200);
    expect(t.retries).toEqual([{ attempt: 1, delayMs: 1_000 }]);
  });

  it("when the connection is refused every time, the call fails with network and the reason", async () => {
    const t = setup(["refused", "refused", "refused", "refused"]);
    const err = (await t.send().catch((e: unknown) => e)) as AcmeTransportError;
    expect([err.kind, err.message]).toEqual(["network", "the CA did not answer POST /acme/new-order: connect ECONNREFUSED 127.0.0.1:1, 4 attempts"]);
  });

  it("when the CA answers 400 badNonce, the answer goes up unchanged (acme-client retries it) and the problem is seen", async () => {
    const problems: string[] = [];
    const t = setup([{ status: 400, data: { type: "urn:ietf:params:acme:error:badNonce", detail: "JWS has an invalid anti-replay nonce" } }], { onProblem: (p) => problems.push(p.type) });
    const res = (await responseOf(t.send())) as AxiosResponse;
    expect(res.status).toBe(400);
    expect(problems).toEqual(["badNonce"]);
    expect(t.inner.seen).toHaveLength(1);
  });

  it("when the call's signal aborts during a Retry-After wait, the call ends at once with the signal's reason", async () => {
    const stop = new AbortController();
    const t = setup([{ status: 429, headers: { "retry-after": "60" } }], { signal: stop.signal });
    t.call.onRetry = () => stop.abort(new Error("stopped by SIGTERM"));
    await expect(t.send()).rejects.toThrow("stopped by SIGTERM");
    expect(t.clock.now()).toEqual(START);
    expect(t.clock.abortListeners()).toBe(0);
  });

  it("when the call's signal aborts a request in flight, the request is abandoned and nothing is retried", async () => {
    const stop = new AbortController();
    const t = setup(["hang"], { signal: stop.signal });
    const pending = t.send();
    await Promise.resolve();
    stop.abort(new Error("run timed out"));
    await expect(pending).rejects.toThrow("run timed out");
    expect(t.inner.seen).toHaveLength(1);
  });

  it("backoff grows from the minimum and stops at the maximum", () => {
    const p = { backoffMinMs: 1_000, backoffMaxMs: 10_000 };
    expect([1, 2, 3, 4, 5, 9].map((a) => backoffMs(a, p, () => 1))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
    expect(backoffMs(5, p, () => 0)).toBe(1_000);
  });
});
