/**
 * Every HTTP request amlcert sends to the CA, bounded: an axios adapter around acme-client's own (node http).
 *
 * Why an adapter and not acme-client's settings: acme-client retries 429, 5xx and network failures in a response
 * interceptor (`retryMaxAttempts`, `retryDefaultDelay`) that waits whatever Retry-After says (an hour, a day) on an
 * unabortable timer, without jitter, and has no request timeout; with retries off, a request that got no answer
 * (a timeout) fails there with a TypeError. So acme-client's transport retries are switched off
 * (`retryMaxAttempts: 0`) and this adapter does them, below acme-client's interceptors:
 *
 *   timeout     each attempt is aborted after `requestTimeoutMs` (the injected clock measures it)
 *   429 / 5xx   retried up to `attempts` times; a Retry-After up to `retryAfterMaxMs` is waited (plus up to 10 %
 *               jitter), a longer one ends the call at once with an AcmeTransportError ("rate-limited" for 429,
 *               "unavailable" for 5xx) that says when to try again (`retryAt`); without Retry-After, exponential
 *               backoff with full jitter between `backoffMinMs` and `backoffMaxMs`
 *   no answer   (timeout, connection refused or reset) retried the same way, then "timeout" / "network"
 *   stop        the call's signal aborts the request in flight and every wait at once
 *
 * A failure that ends the call is sticky for that call: acme-client's status polling repeats failed requests
 * (backoffAttempts), and a CA that said "come back in an hour" is not asked again by the same call.
 * Answers the adapter does not retry (2xx, 4xx such as badNonce) go up to acme-client unchanged, which handles
 * badNonce itself (a fresh nonce, at most 5 times per request).
 */
import type { AxiosAdapter, AxiosResponse, InternalAxiosRequestConfig } from "axios";
import type { Agent as HttpsAgent } from "node:https";
import type { Clock, RequestObserver } from "../ports.js";
import { parseRetryAfter } from "../retry-after.js";

export interface TransportPolicy {
  /** each HTTP request (one attempt) is aborted after this long */
  requestTimeoutMs: number;
  /** the longest Retry-After the call waits; longer ends it with retryAt */
  retryAfterMaxMs: number;
  /** tries of one request on 429, 5xx and no answer (1 = no retry) */
  attempts: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_TRANSPORT_POLICY: TransportPolicy = {
  requestTimeoutMs: 30_000,
  retryAfterMaxMs: 120_000,
  attempts: 4,
  backoffMinMs: 1_000,
  backoffMaxMs: 10_000,
};

export interface Problem {
  type: string;
  detail: string;
}

const PROBLEM_PREFIX = "urn:ietf:params:acme:error:";

/** A problem document (RFC 7807), parsed. */
export function asProblem(value: unknown): Problem | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { type, detail } = value as { type?: unknown; detail?: unknown };
  if (typeof type !== "string" || !type.startsWith(PROBLEM_PREFIX)) return undefined;
  return { type: type.slice(PROBLEM_PREFIX.length), detail: typeof detail === "string" ? detail : "" };
}

/** The problem of an answer: the body itself, or the `error` of a challenge, authorization or order body. */
export function problemIn(data: unknown): Problem | undefined {
  let value = data;
  if (typeof value === "string" || Buffer.isBuffer(value)) {
    const text = value.toString();
    if (!text.includes(PROBLEM_PREFIX)) return undefined;
    try {
      value = JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }
  return asProblem(value) ?? asProblem((value as { error?: unknown } | null)?.error);
}

export type TransportFailureKind = "rate-limited" | "unavailable" | "timeout" | "network";

/** A request the transport gave up on. Carries no request config (nothing of the JWS or key reaches a log). */
export class AcmeTransportError extends Error {
  override readonly name = "AcmeTransportError";
  constructor(
    readonly kind: TransportFailureKind,
    message: string,
    readonly facts: { method: string; url: string; attempts: number; status?: number; retryAt?: Date; problem?: Problem; timeoutMs?: number },
  ) {
    super(message);
  }
}

/** What the adapter needs from the call in progress (an AsyncLocalStorage scope in acme-issuer.ts). */
export interface TransportCall {
  policy: TransportPolicy;
  clock: Clock;
  signal?: AbortSignal;
  httpsAgent?: HttpsAgent;
  requests?: RequestObserver;
  /** every problem document answered during the call, oldest first (bounded by the caller) */
  onProblem?: (p: Problem) => void;
  /** a retry about to wait */
  onRetry?: (r: { method: string; url: string; status?: number; attempt: number; delayMs: number; retryAfterMs?: number }) => void;
  /** [0, 1); Math.random by default */
  random?: () => number;
  /** set by the adapter when it gave up: every later request of the call fails with it at once */
  fatal?: AcmeTransportError;
}

/** Retry-After (RFC 9110): delay-seconds or an HTTP-date, as milliseconds from now; undefined when absent or unreadable. */
export function retryAfterMs(header: unknown, now: Date): number | undefined {
  return parseRetryAfter(header, now.getTime());
}

/** Exponential backoff with full jitter: a random delay in [min, min(max, min * 2^(attempt-1))]. */
export function backoffMs(attempt: number, policy: Pick<TransportPolicy, "backoffMinMs" | "backoffMaxMs">, random: () => number): number {
  const ceiling = Math.min(policy.backoffMaxMs, policy.backoffMinMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(policy.backoffMinMs + (ceiling - policy.backoffMinMs) * random());
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** The ACME resource a URL names, for messages: its path without ids. */
function describeRequest(method: string, url: string): string {
  let path = url;
  try {
    path = new URL(url).pathname;
  } catch {
    // keep it as it is
  }
  return `${method.toUpperCase()} ${path}`;
}

export function boundedAdapter(inner: AxiosAdapter, currentCall: () => TransportCall | undefined): AxiosAdapter {
  return async (config: InternalAxiosRequestConfig): Promise<AxiosResponse> => {
    const call = currentCall();
    if (call === undefined) return inner(config);
    if (call.fatal) throw call.fatal;
    const { policy, clock } = call;
    const random = call.random ?? Math.random;
    const method = (config.method ?? "get").toUpperCase();
    const url = config.url ?? "";
    const what = describeRequest(method, url);
    const giveUp = (e: AcmeTransportError): never => {
      call.fatal = e;
      throw e;
    };
    for (let attempt = 1; ; attempt++) {
      call.signal?.throwIfAborted();
      const timeout = new AbortController();
      let timedOut = false;
      void clock.sleep(policy.requestTimeoutMs, timeout.signal).then(
        () => {
          timedOut = true;
          timeout.abort();
        },
        () => undefined,
      );
      const signal = call.signal ? AbortSignal.any([timeout.signal, call.signal]) : timeout.signal;
      let response: AxiosResponse | undefined;
      let failure: unknown;
      try {
        response = await inner({ ...config, signal, ...(call.httpsAgent ? { httpsAgent: call.httpsAgent } : {}) });
      } catch (err) {
        failure = err;
        response = (err as { response?: AxiosResponse }).response;
      } finally {
        if (!timedOut) timeout.abort();
      }

      if (response !== undefined) {
        call.requests?.("acme", String(response.status));
        const problem = problemIn(response.data);
        if (problem) call.onProblem?.(problem);
        const status = response.status;
        const retryable = status === 429 || (status >= 500 && status <= 599);
        if (!retryable) {
          if (failure !== undefined) throw failure;
          return response;
        }
        const now = clock.now();
        const wait = retryAfterMs(response.headers["retry-after"], now);
        const kind: TransportFailureKind = status === 429 ? "rate-limited" : "unavailable";
        const detail = problem ? `: ${problem.type}: ${problem.detail || "(no detail)"}` : "";
        if (wait !== undefined && wait > policy.retryAfterMaxMs) {
          const retryAt = new Date(now.getTime() + wait);
          giveUp(
            new AcmeTransportError(
              kind,
              `the CA answered ${status} to ${what} and asks to wait until ${retryAt.toISOString()} (Retry-After ${seconds(wait)}, longer than the ${seconds(policy.retryAfterMaxMs)} a run waits)${detail}`,
              { method, url, attempts: attempt, status, retryAt, ...(problem ? { problem } : {}) },
            ),
          );
        }
        if (attempt >= policy.attempts) {
          const retryAt = wait === undefined ? undefined : new Date(now.getTime() + wait);
          giveUp(
            new AcmeTransportError(kind, `the CA answered ${status} to ${what} ${attempt} times${detail}`, {
              method,
              url,
              attempts: attempt,
              status,
              ...(retryAt ? { retryAt } : {}),
              ...(problem ? { problem } : {}),
            }),
          );
        }
        const delayMs = wait === undefined ? backoffMs(attempt, policy, random) : Math.round(wait * (1 + 0.1 * random()));
        call.onRetry?.({ method, url, status, attempt, delayMs, ...(wait === undefined ? {} : { retryAfterMs: wait }) });
        await clock.sleep(delayMs, call.signal);
        continue;
      }

      // no answer at all
      call.requests?.("acme", "error");
      if (call.signal?.aborted) throw call.signal.reason;
      const code = (failure as { code?: unknown } | undefined)?.code;
      const reason = timedOut ? `no answer within ${seconds(policy.requestTimeoutMs)}` : `${failure instanceof Error ? failure.message : String(failure)}${typeof code === "string" && !(failure as Error).message?.includes(code) ? ` (${code})` : ""}`;
      if (attempt >= policy.attempts) {
        giveUp(
          new AcmeTransportError(timedOut ? "timeout" : "network", `the CA did not answer ${what}: ${reason}, ${attempt} attempts`, {
            method,
            url,
            attempts: attempt,
            ...(timedOut ? { timeoutMs: policy.requestTimeoutMs } : {}),
          }),
        );
      }
      const delayMs = backoffMs(attempt, policy, random);
      call.onRetry?.({ method, url, attempt, delayMs });
      await clock.sleep(delayMs, call.signal);
    }
  };
}
