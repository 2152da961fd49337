/**
 * An Azure core pipeline policy that tells a RequestObserver about every HTTP exchange of an Azure SDK client:
 * the status of each response (a 429 that the SDK then retries counts, and so does the retry) or "error" when no
 * response came (connection refused, TLS failure, timeout, abort).
 *
 * Added through the clients' `additionalPolicies` at position "perRetry": core-client places such policies after
 * the Sign phase, below the retry, redirect and bearer-token policies, so each attempt passes it exactly once.
 * The types are structural so that this module needs no Azure package of its own.
 */
import type { RequestObserver, RequestSystem } from "../ports.js";

export interface ObservingPolicy {
  name: string;
  sendRequest<Req, Res extends { status: number }>(request: Req, next: (request: Req) => Promise<Res>): Promise<Res>;
}

export interface ObservingPolicyConfig {
  policy: ObservingPolicy;
  position: "perRetry";
}

export function requestObservingPolicy(system: RequestSystem, observe: RequestObserver): ObservingPolicyConfig {
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
export function observerClientOptions(system: RequestSystem, observe: RequestObserver | undefined): { additionalPolicies?: ObservingPolicyConfig[] } {
  return observe === undefined ? {} : { additionalPolicies: [requestObservingPolicy(system, observe)] };
}
