/**
 * Azure core pipeline policies for the ARM clients (Azure DNS, the extension) and the Entra token clients:
 *
 * - `requestObservingPolicy` tells a RequestObserver about every HTTP exchange: the status of each response (a 429
 *   that is then retried counts, and so does the retry) or "error" when no response came (connection refused, TLS
 *   failure, timeout, abort).
 * - `armRetryPolicy` replaces the SDK's retry policy for ARM (whose throttling strategy waits as long as any
 *   Retry-After says, and whose requests have no time limit: ARM answering after 150 s once held a run's Lease until
 *   the pod was killed). Every try has a timeout; 408, 429 and 5xx, and tries that timed out or found no server, are
 *   retried a bounded number of times; Retry-After (and retry-after-ms / x-ms-retry-after-ms) is honoured up to a cap,
 *   and a longer one fails at once with ArmThrottledError; without one, the wait is exponential with full jitter.
 *
 * Added through the clients' `additionalPolicies` at position "perRetry": core-client places such policies after
 * the Sign phase, below the redirect and bearer-token policies; the SDK's own retry is turned off (maxRetries 0), so
 * this retry is the only one and the observer below it sees each try exactly once.
 * The types are structural so that this module needs no Azure package of its own.
 */
import { abortableSleep, type RequestObserver, type RequestSystem, type RetryNotice } from "../ports.js";
export type { RetryNotice } from "../ports.js";
import { parseRetryAfter } from "../retry-after.js";

export interface PipelinePolicyLike {
  name: string;
  sendRequest<Req, Res extends { status: number }>(request: Req, next: (request: Req) => Promise<Res>): Promise<Res>;
}
export type ObservingPolicy = PipelinePolicyLike;

export interface PolicyConfig {
  policy: PipelinePolicyLike;
  position: "perRetry";
}
export type ObservingPolicyConfig = PolicyConfig;

export function requestObservingPolicy(system: RequestSystem, observe: RequestObserver): PolicyConfig {
  return {
    position: "perRetry",
    policy: {
      name: `amlcertRequestObserver-${system}`,
      async sendRequest(request, next) {
        let response;
        try {
          response = await next(request);
        } catch (err) {
          // core-rest-pipeline throws only when no response came; HTTP errors are thrown above this policy.
          const status = (err as { response?: { status?: unknown } } | null)?.response?.status;
          observe(system, typeof status === "number" ? String(status) : "error");
          throw err;
        }
        observe(system, String(response.status));
        return response;
      },
    },
  };
}

/** The part of an Azure SDK client's options that adds the policy; nothing at all without an observer. */
export function observerClientOptions(system: RequestSystem, observe: RequestObserver | undefined): { additionalPolicies?: PolicyConfig[] } {
  return observe === undefined ? {} : { additionalPolicies: [requestObservingPolicy(system, observe)] };
}

/** How ARM requests are bounded and retried (config `azure.requestTimeout`, `azure.maxRetries`, `azure.maxRetryAfter`). */
export interface ArmRetryOptions {
  /** retries after the first try (default 4) */
  maxRetries: number;
  /** first backoff without Retry-After; try n waits a random time up to min(max, base × 2^(n-1)) (default 1 s) */
  retryDelayMs: number;
  /** largest backoff without Retry-After (default 30 s) */
  maxRetryDelayMs: number;
  /** bound on one try, from sending the request to the last byte of the answer (default 30 s) */
  timeoutMs?: number;
  /** the longest Retry-After honoured; a longer one fails at once with AZURE_THROTTLED (default 60 s) */
  maxRetryAfterMs?: number;
  /** told of every retry before its wait (the composition root logs it) */
  onRetry?: (retry: RetryNotice) => void;
}

export const ARM_RETRY_DEFAULTS: Required<Omit<ArmRetryOptions, "onRetry">> = {
  maxRetries: 4,
  retryDelayMs: 1_000,
  maxRetryDelayMs: 30_000,
  timeoutMs: 30_000,
  maxRetryAfterMs: 60_000,
};

/** Injected for tests: how the policy waits and draws jitter (default setTimeout and Math.random). */
export interface RetryTiming {
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

interface RequestLike {
  method: string;
  url: string;
  abortSignal?: AbortSignalLikeish;
}
interface AbortSignalLikeish {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
interface ResponseLike {
  status: number;
  headers: { get(name: string): string | undefined };
  bodyAsText?: string | null;
}

/** The reason ARM could not be got through: a Retry-After above the cap, or every try throttled. */
export class ArmThrottledError extends Error {
  override readonly name = "ArmThrottledError";
  constructor(
    message: string,
    readonly facts: {
      status: number;
      /** ARM's error code, e.g. TooManyRequests */
      armCode?: string;
      /** what ARM asked to wait, in ms */
      retryAfterMs?: number;
      /** the cap (azure.maxRetryAfter) */
      maxRetryAfterMs: number;
      /** tries made */
      attempts: number;
      /** "retry-after-too-long" or "attempts" */
      why: "retry-after-too-long" | "attempts";
      method: string;
      url: string;
      requestId?: string;
    },
  ) {
    super(message);
  }
}

/** Every try of a request ran past `timeoutMs` (azure.requestTimeout). */
export class ArmTimeoutError extends Error {
  override readonly name = "ArmTimeoutError";
  constructor(
    message: string,
    readonly facts: { timeoutMs: number; attempts: number; method: string; url: string },
  ) {
    super(message);
  }
}

/** Retry-After as ms: retry-after-ms, x-ms-retry-after-ms, Retry-After in seconds or as an HTTP date. */
export function retryAfterMs(headers: { get(name: string): string | undefined }, now: () => number = Date.now): number | undefined {
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const v = headers.get(name)?.trim();
    if (v && /^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v));
  }
  return parseRetryAfter(headers.get("retry-after"), now());
}

/** Full jitter (AWS's "exponential backoff and jitter"): a random wait up to min(max, base × 2^(retry-1)). */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

const RETRY_STATUS = (s: number) => s === 408 || s === 429 || (s >= 500 && s !== 501 && s !== 505);
/** Node and core-rest-pipeline codes for "no server answered": worth another try. */
const TRANSIENT_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ESOCKETTIMEDOUT", "EPIPE", "EAI_AGAIN", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH"]);

/** ARM's `{ error: { code, message } }`, when the body holds one. */
function armErrorOf(body: string | null | undefined): { code?: string; message?: string } {
  if (!body) return {};
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    return { code: typeof e?.code === "string" ? e.code : undefined, message: typeof e?.message === "string" ? e.message : undefined };
  } catch {
    return {};
  }
}

/** The request's path without the query string, for messages (never a token: those travel in headers). */
const pathOf = (url: string) => {
  try {
    return new URL(url).pathname;
  } catch {
    return url.split("?")[0] ?? url;
  }
};

export function armRetryPolicy(retry: Partial<ArmRetryOptions> = {}, timing: RetryTiming = {}): PolicyConfig {
  const o = { ...ARM_RETRY_DEFAULTS, ...Object.fromEntries(Object.entries(retry).filter(([, v]) => v !== undefined)) } as Required<Omit<ArmRetryOptions, "onRetry">> & ArmRetryOptions;
  const sleep = timing.sleep ?? abortableSleep;
  const random = timing.random ?? Math.random;
  const seconds = (ms: number) => (ms < 100 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`);
  return {
    position: "perRetry",
    policy: {
      name: "amlcertArmRetry",
      async sendRequest<Req, Res extends { status: number }>(req: Req, next: (request: Req) => Promise<Res>): Promise<Res> {
        const request = req as unknown as RequestLike;
        const outer = request.abortSignal;
        // the caller's cancellation, as a real AbortSignal for the waits between tries
        const cancel = new AbortController();
        const onOuterAbort = () => cancel.abort(new DOMException("the operation was aborted", "AbortError"));
        outer?.addEventListener("abort", onOuterAbort, { once: true });
        const attempts = o.maxRetries + 1;
        try {
          for (let attempt = 1; ; attempt++) {
            const tryAbort = new AbortController();
            let timedOut = false;
            const timer = setTimeout(() => {
              timedOut = true;
              tryAbort.abort();
            }, o.timeoutMs);
            const onCancel = () => tryAbort.abort();
            cancel.signal.addEventListener("abort", onCancel, { once: true });
            if (cancel.signal.aborted) tryAbort.abort();
            request.abortSignal = tryAbort.signal;
            let response: ResponseLike | undefined;
            let failure: unknown;
            try {
              response = (await next(req)) as unknown as ResponseLike;
            } catch (err) {
              failure = err;
            } finally {
              clearTimeout(timer);
              cancel.signal.removeEventListener("abort", onCancel);
              request.abortSignal = outer;
            }
            if (cancel.signal.aborted) throw failure ?? cancel.signal.reason;
            const last = attempt >= attempts;
            let waitMs: number;
            let what: Pick<RetryNotice, "status" | "error" | "retryAfterMs"> & { said: string };
            if (response !== undefined) {
              if (!RETRY_STATUS(response.status)) return response as unknown as Res;
              const asked = response.status === 429 || response.status === 503 ? retryAfterMs(response.headers) : undefined;
              if (asked !== undefined && asked > o.maxRetryAfterMs) {
                const e = armErrorOf(response.bodyAsText);
                throw new ArmThrottledError(
                  `ARM answered ${response.status}${e.code ? ` ${e.code}` : ""} and asked to retry after ${seconds(asked)}, longer than the ${seconds(o.maxRetryAfterMs)} amlcert waits (azure.maxRetryAfter)`,
                  { status: response.status, armCode: e.code, retryAfterMs: asked, maxRetryAfterMs: o.maxRetryAfterMs, attempts: attempt, why: "retry-after-too-long", method: request.method, url: pathOf(request.url), requestId: response.headers.get("x-ms-request-id") },
                );
              }
              if (last) {
                if (response.status !== 429) return response as unknown as Res;
                const e = armErrorOf(response.bodyAsText);
                throw new ArmThrottledError(
                  `ARM answered 429${e.code ? ` ${e.code}` : ""} to all ${attempts} tries (azure.maxRetries ${o.maxRetries})${asked !== undefined ? `; it last asked to retry after ${seconds(asked)}` : ""}`,
                  { status: 429, armCode: e.code, retryAfterMs: asked, maxRetryAfterMs: o.maxRetryAfterMs, attempts, why: "attempts", method: request.method, url: pathOf(request.url), requestId: response.headers.get("x-ms-request-id") },
                );
              }
              // Retry-After is a floor; a little jitter on top keeps a fleet told the same second from returning at once
              waitMs = asked !== undefined ? asked + backoffMs(1, Math.min(1000, o.retryDelayMs), 1000, random) : backoffMs(attempt, o.retryDelayMs, o.maxRetryDelayMs, random);
              const code = armErrorOf(response.bodyAsText).code;
              what = {
                status: response.status,
                ...(asked === undefined ? {} : { retryAfterMs: asked }),
                said: `answered ${response.status}${code ? ` ${code}` : ""}${asked === undefined ? "" : ` (Retry-After ${seconds(asked)})`}`,
              };
            } else if (timedOut) {
              if (last) {
                throw new ArmTimeoutError(`ARM did not answer ${request.method} ${pathOf(request.url)} within ${seconds(o.timeoutMs)} (azure.requestTimeout), ${attempts} tries`, {
                  timeoutMs: o.timeoutMs,
                  attempts,
                  method: request.method,
                  url: pathOf(request.url),
                });
              }
              waitMs = backoffMs(attempt, o.retryDelayMs, o.maxRetryDelayMs, random);
              what = { error: "timeout", said: `did not answer within ${seconds(o.timeoutMs)} (azure.requestTimeout)` };
            } else {
              const code = (failure as { code?: unknown } | null)?.code;
              if (last || typeof code !== "string" || !TRANSIENT_CODES.has(code)) throw failure;
              waitMs = backoffMs(attempt, o.retryDelayMs, o.maxRetryDelayMs, random);
              what = { error: code, said: `could not be reached (${code})` };
            }
            const { said, ...facts } = what;
            o.onRetry?.({
              message: `${request.method} ${pathOf(request.url)}: ARM ${said}; retrying in ${seconds(waitMs)} (try ${attempt + 1} of ${attempts})`,
              method: request.method,
              path: pathOf(request.url),
              attempt,
              attempts,
              waitMs,
              ...facts,
            });
            await sleep(waitMs, cancel.signal);
          }
        } finally {
          outer?.removeEventListener("abort", onOuterAbort);
        }
      },
    },
  };
}

/** A try that ran past its bound (`tryTimeoutPolicy`). `code` ETIMEDOUT lets the SDK's own retry policy retry it. */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
  readonly code = "ETIMEDOUT";
  constructor(
    message: string,
    readonly timeoutMs: number,
  ) {
    super(message);
  }
}

/**
 * A per-try timeout and nothing else, for clients whose SDK retries on its own (the Entra ID token requests of
 * @azure/identity): a try still running after `timeoutMs` is aborted and fails with RequestTimeoutError, which the
 * SDK's retry policy treats as a system error (ETIMEDOUT) and retries within its own bound.
 */
export function tryTimeoutPolicy(service: string, timeoutMs: number, setting: string, onTimeout?: (err: RequestTimeoutError) => void): PolicyConfig {
  return {
    position: "perRetry",
    policy: {
      name: `amlcertTryTimeout-${service}`,
      async sendRequest<Req, Res extends { status: number }>(req: Req, next: (request: Req) => Promise<Res>): Promise<Res> {
        const request = req as unknown as RequestLike;
        const outer = request.abortSignal;
        const abort = new AbortController();
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          abort.abort();
        }, timeoutMs);
        const onOuterAbort = () => abort.abort();
        outer?.addEventListener("abort", onOuterAbort, { once: true });
        if (outer?.aborted) abort.abort();
        request.abortSignal = abort.signal;
        try {
          return await next(req);
        } catch (err) {
          if (timedOut && !outer?.aborted) {
            const timeout = new RequestTimeoutError(`${service} did not answer ${request.method} ${pathOf(request.url)} within ${Math.round(timeoutMs / 100) / 10} s (${setting})`, timeoutMs);
            onTimeout?.(timeout);
            throw timeout;
          }
          throw err;
        } finally {
          clearTimeout(timer);
          outer?.removeEventListener("abort", onOuterAbort);
          request.abortSignal = outer;
        }
      },
    },
  };
}

/**
 * The options of an ARM SDK client that bound and retry its requests with `armRetryPolicy` (the SDK's own retry off)
 * and, with an observer, count every try.
 */
export function armClientOptions(
  retry: Partial<ArmRetryOptions> | undefined,
  observe: RequestObserver | undefined,
  timing: RetryTiming = {},
): { retryOptions: { maxRetries: 0 }; additionalPolicies: PolicyConfig[] } {
  return {
    retryOptions: { maxRetries: 0 },
    additionalPolicies: [armRetryPolicy(retry, timing), ...(observe === undefined ? [] : [requestObservingPolicy("arm", observe)])],
  };
}
