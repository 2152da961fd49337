/**
 * Loading a kubeconfig (or the in-cluster ServiceAccount) and building @kubernetes/client-node API clients with a
 * bounded request time, plus the one mapping from client-node failures to AmlcertError.
 *
 * client-node 1.x reports an HTTP failure as `ApiException` with `code` (the status) and `body` (the response text,
 * a JSON metav1.Status from a real API server); network and TLS failures come from node-fetch as `FetchError`
 * (with a Node `code` such as ECONNREFUSED) and timeouts as `AbortError`.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import {
  ApiException,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  ServerConfiguration,
  createConfiguration,
  wrapHttpLibrary,
  ResponseContext,
  type HttpLibrary,
  type RequestContext,
} from "@kubernetes/client-node";
import { AmlcertError, type Stage } from "../errors.js";
import type { LogSink } from "../observability/logger.js";
import type { RequestObserver, RetryNotice } from "../ports.js";
import { parseRetryAfter } from "../retry-after.js";

export type KubeSource = (
  | {
      kind: "kubeconfig";
      /** default: KUBECONFIG / ~/.kube/config, as kubectl (resolved by client-node's loadFromDefault) */
      path?: string;
      /** default: the kubeconfig's current-context */
      context?: string;
    }
  | {
      kind: "in-cluster";
      /** where the ServiceAccount token, ca.crt and namespace are mounted (default /var/run/secrets/kubernetes.io/serviceaccount) */
      serviceAccountDir?: string;
      /** API server address; default KUBERNETES_SERVICE_HOST/PORT as client-node reads them */
      server?: string;
    }
) & {
  /** how requests to this API server are bounded and retried (config kubernetesApi.*); default KUBE_RETRY_DEFAULTS */
  retry?: KubeRetryOptions;
};

/**
 * How Kubernetes requests are bounded and retried. client-node, unlike client-go, retries nothing: under API priority
 * and fairness a busy API server answers 429 with Retry-After, and a run must not fail for that. So:
 *   - every try has a timeout (from sending to the last byte of the answer);
 *   - 429 is retried for any verb (the server did not process the request);
 *   - 5xx, a timed-out try and a failed connection are retried only for reads (GET): a write that may have been
 *     applied is not sent again (its resourceVersion would then conflict with our own write);
 *   - the wait is the server's Retry-After, up to `maxRetryAfterMs` (a longer one fails at once), or else
 *     exponential backoff with full jitter; at most `maxRetries` retries.
 */
export interface KubeRetryOptions {
  timeoutMs?: number;
  maxRetries?: number;
  maxRetryAfterMs?: number;
  /** first backoff without Retry-After (default 500 ms); retry n waits a random time up to min(max, base × 2^(n-1)) */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** how the retries wait and draw jitter (tests inject them) */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** told of every retry before its wait (the composition root logs it) */
  onRetry?: (retry: KubeRetryNotice) => void;
}

/** A retry about to happen (the same notice as ARM's). */
export type KubeRetryNotice = RetryNotice;

export const KUBE_RETRY_DEFAULTS = { timeoutMs: 30_000, maxRetries: 4, maxRetryAfterMs: 30_000, retryDelayMs: 500, maxRetryDelayMs: 10_000 } as const;

/** Every try of a Kubernetes request ran past its timeout (kubernetesApi.requestTimeout). */
export class KubeTimeoutError extends Error {
  override readonly name = "KubeTimeoutError";
  constructor(
    readonly timeoutMs: number,
    readonly attempts: number,
  ) {
    super(`no answer within ${Math.round(timeoutMs / 100) / 10} s (kubernetesApi.requestTimeout)${attempts > 1 ? `, ${attempts} tries` : ""}`);
  }
}

/** The part of a pino logger the Kubernetes adapters use. */
export type KubeLogger = LogSink;

export interface KubeApis {
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  /** SelfSubjectAccessReview, for `amlcert doctor` */
  authorization: AuthorizationV1Api;
  /** API server URL */
  server: string;
  /** kubeconfig context name ("in-cluster" for the ServiceAccount) */
  context: string;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = KUBE_RETRY_DEFAULTS.timeoutMs;
const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

function describeSource(source: KubeSource): string {
  if (source.kind === "in-cluster") return "the in-cluster ServiceAccount";
  return `kubeconfig ${source.path ?? "(default: KUBECONFIG or ~/.kube/config)"}${source.context ? ` context "${source.context}"` : ""}`;
}

/** Load the configuration; CONFIG_INVALID when the file, context or in-cluster mount is unusable. */
export function loadKubeConfig(source: KubeSource): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (source.kind === "in-cluster") {
      const dir = source.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
      if (source.server) {
        kc.loadFromClusterAndUser(
          { name: "in-cluster", server: source.server, caFile: join(dir, "ca.crt"), skipTLSVerify: false },
          { name: "in-cluster", authProvider: { name: "tokenFile", config: { tokenFile: join(dir, "token") } } },
        );
      } else {
        const prefix = dir.endsWith(SERVICE_ACCOUNT_DIR) ? dir.slice(0, -SERVICE_ACCOUNT_DIR.length) : undefined;
        if (prefix === undefined) throw new Error(`serviceAccountDir ${dir} needs an explicit server address`);
        kc.loadFromCluster(prefix);
        const server = kc.getCurrentCluster()?.server ?? "";
        if (/^https?:\/\/(undefined)?:(undefined)?$/.test(server) || server.includes("undefined")) {
          throw new Error("KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set: amlcert is not running in a pod");
        }
      }
    } else {
      if (source.path) kc.loadFromFile(source.path);
      else {
        kc.loadFromDefault();
        const c = kc.getCurrentCluster();
        if (!c || (c.name === "cluster" && c.server === "http://localhost:8080")) {
          throw new Error(`no kubeconfig found (KUBECONFIG is unset and ${join(homedir(), ".kube", "config")} does not exist)`);
        }
      }
      if (source.context) {
        if (!kc.getContextObject(source.context)) {
          const known = kc.getContexts().map((c) => c.name);
          throw new Error(`no context "${source.context}" (contexts: ${known.join(", ") || "none"})`);
        }
        kc.setCurrentContext(source.context);
      }
    }
  } catch (err) {
    throw new AmlcertError("CONFIG_INVALID", "config", `cannot use ${describeSource(source)}: ${(err as Error).message}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new AmlcertError("CONFIG_INVALID", "config", `${describeSource(source)}: the current context names no cluster`);
  }
  if (cluster.skipTLSVerify) {
    throw new AmlcertError(
      "CONFIG_INVALID",
      "config",
      `${describeSource(source)}: cluster "${cluster.name}" sets insecure-skip-tls-verify; amlcert never disables TLS verification (set certificate-authority-data instead)`,
    );
  }
  return kc;
}


const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * client-node's own HTTP library (node-fetch) with the bound and the retries of KubeRetryOptions, telling `observe`
 * the status of every response or "error" when none came (refused, TLS failure, timeout). Middleware cannot do
 * this: its `post` never sees a failed fetch, and it cannot send a request again. The answer's body is read within
 * the try's timeout, so a server that stalls half-way is bounded too.
 */
export function retryingHttpLibrary(retry: KubeRetryOptions = {}, observe?: RequestObserver): HttpLibrary {
  const o = { ...KUBE_RETRY_DEFAULTS, ...Object.fromEntries(Object.entries(retry).filter(([, v]) => v !== undefined)) } as typeof KUBE_RETRY_DEFAULTS & KubeRetryOptions;
  const sleep = o.sleep ?? sleepFor;
  const random = o.random ?? Math.random;
  const base = new IsomorphicFetchHttpLibrary();
  return wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      const read = String(request.getHttpMethod()).toUpperCase() === "GET";
      for (let attempt = 1; ; attempt++) {
        const abort = new AbortController();
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          abort.abort();
        }, o.timeoutMs);
        request.setSignal(abort.signal);
        let response: ResponseContext | undefined;
        let failure: unknown;
        try {
          const raw = await base.send(request).toPromise();
          const body = await raw.body.binary();
          response = new ResponseContext(raw.httpStatusCode, raw.headers, { text: async () => body.toString("utf8"), binary: async () => body });
        } catch (err) {
          failure = timedOut ? new KubeTimeoutError(o.timeoutMs, attempt) : err;
        } finally {
          clearTimeout(timer);
        }
        observe?.("kubernetes", response ? String(response.httpStatusCode) : "error");
        const last = attempt > o.maxRetries;
        let waitMs: number;
        let said: string;
        let facts: Pick<KubeRetryNotice, "status" | "error">;
        const backoff = () => Math.floor(random() * Math.min(o.maxRetryDelayMs, o.retryDelayMs * 2 ** (attempt - 1)));
        if (response) {
          const status = response.httpStatusCode;
          const again = status === 429 || (read && status >= 500 && status !== 501 && status !== 505);
          if (!again || last) return response;
          const asked = status === 429 || status === 503 ? parseRetryAfter(response.headers["retry-after"], Date.now()) : undefined;
          // a Retry-After longer than the cap is answered at once: kubeError names it
          if (asked !== undefined && asked > o.maxRetryAfterMs) return response;
          waitMs = asked ?? backoff();
          said = `answered ${status}${asked === undefined ? "" : ` (Retry-After ${asked / 1000} s)`}`;
          facts = { status };
        } else {
          if (!read || last) throw failure;
          waitMs = backoff();
          const code = failure instanceof KubeTimeoutError ? "timeout" : String((failure as { code?: unknown } | null)?.code ?? (failure as Error | null)?.name ?? "error");
          said = failure instanceof KubeTimeoutError ? `did not answer within ${o.timeoutMs / 1000} s (kubernetesApi.requestTimeout)` : `could not be reached (${code})`;
          facts = { error: code };
        }
        if (o.onRetry) {
          let path = request.getUrl();
          try {
            path = new URL(path).pathname;
          } catch {
            // keep it as it is
          }
          const method = String(request.getHttpMethod()).toUpperCase();
          o.onRetry({ message: `${method} ${path}: the API server ${said}; retrying in ${waitMs / 1000} s (try ${attempt + 1} of ${o.maxRetries + 1})`, method, path, attempt, attempts: o.maxRetries + 1, waitMs, ...facts });
        }
        await sleep(waitMs);
      }
    },
  });
}

/** `requests` is told of every API server response (amlcert_requests_total{system="kubernetes"}). A number as
 * `retry` is the per-try timeout (the other settings their defaults). */
export function makeKubeApis(kc: KubeConfig, retry: number | KubeRetryOptions = {}, requests?: RequestObserver): KubeApis {
  const cluster = kc.getCurrentCluster()!;
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    httpApi: retryingHttpLibrary(typeof retry === "number" ? { timeoutMs: retry } : retry, requests),
  });
  return {
    core: new CoreV1Api(config),
    coordination: new CoordinationV1Api(config),
    authorization: new AuthorizationV1Api(config),
    server: cluster.server,
    context: kc.getCurrentContext(),
  };
}

/** A metav1.Status, as far as amlcert reads it. */
export interface KubeStatusBody {
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; group?: string; kind?: string };
}

/** HTTP status and Status body of a client-node failure, or undefined for non-HTTP failures. */
export function apiFailure(err: unknown): { code: number; status: KubeStatusBody } | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const code = (err as ApiException<unknown>).code;
  const raw = (err as ApiException<unknown>).body;
  let status: KubeStatusBody = {};
  if (typeof raw === "string") {
    try {
      status = JSON.parse(raw) as KubeStatusBody;
    } catch {
      status = { message: raw.slice(0, 300) };
    }
  } else if (raw && typeof raw === "object") status = raw as KubeStatusBody;
  return { code, status };
}

export interface KubeCall {
  verb: string;
  /** plural resource, e.g. "secrets" or "leases" */
  resource: string;
  group?: string;
  name?: string;
  namespace: string;
  stage: Stage;
}

export interface KubeErrorContext {
  server: string;
  context: string;
  /** where the permissions come from, named in 403 messages */
  rbacHint: string;
}

const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_HAS_EXPIRED",
]);

/** One AmlcertError for any failure of a Kubernetes call. */
export function kubeError(err: unknown, call: KubeCall, ctx: KubeErrorContext): AmlcertError {
  if (err instanceof AmlcertError) return err;
  const what = `${call.group ? `${call.resource}.${call.group}` : call.resource}${call.name ? ` "${call.name}"` : ""}`;
  const where = `namespace "${call.namespace}" (${ctx.context} at ${ctx.server})`;
  const details: Record<string, unknown> = {
    verb: call.verb,
    resource: call.resource,
    namespace: call.namespace,
    server: ctx.server,
    context: ctx.context,
    ...(call.name ? { name: call.name } : {}),
    ...(call.group ? { apiGroup: call.group } : {}),
  };
  const failure = apiFailure(err);
  if (failure) {
    const { code, status } = failure;
    const said = status.message ? ` Server said: ${status.message}` : "";
    const d = { ...details, status: code, reason: status.reason };
    switch (code) {
      case 401:
        return new AmlcertError("KUBE_FORBIDDEN", call.stage, `the Kubernetes API server did not accept amlcert's credentials (401 Unauthorized) when trying to ${call.verb} ${what} in ${where}: the token is missing, expired or revoked.`, { cause: err, details: d });
      case 403:
        return new AmlcertError(
          "KUBE_FORBIDDEN",
          call.stage,
          `Kubernetes denied "${call.verb}" on ${what} in ${where} (403 Forbidden). amlcert needs "${call.verb}" on ${call.resource}${call.group ? ` (API group ${call.group})` : ""} there: grant it with ${ctx.rbacHint}.${said}`,
          { cause: err, details: d },
        );
      case 404:
        if (status.details?.kind === "namespaces") {
          return new AmlcertError("KUBE_NOT_FOUND", call.stage, `namespace "${call.namespace}" does not exist in ${ctx.context} at ${ctx.server}; is the Azure ML extension installed in this cluster?`, { cause: err, details: d });
        }
        return new AmlcertError("KUBE_NOT_FOUND", call.stage, `${what} not found in ${where}.${said}`, { cause: err, details: d });
      case 429: {
        const retryAfter = (err as ApiException<unknown>).headers?.["retry-after"];
        return new AmlcertError(
          "KUBE_ERROR",
          call.stage,
          `the Kubernetes API server at ${ctx.server} is throttling requests (429 ${status.reason ?? "TooManyRequests"}, API priority and fairness) and retries did not get through when trying to ${call.verb} ${what} in namespace "${call.namespace}"${retryAfter ? `; it asked to retry after ${retryAfter} s (amlcert waits at most kubernetesApi.maxRetryAfter)` : ""}.${said}`,
          { cause: err, details: { ...d, throttled: true, ...(retryAfter ? { retryAfterSeconds: Number(retryAfter) } : {}) } },
        );
      }
      case 409:
        return new AmlcertError("KUBE_CONFLICT", call.stage, `could not ${call.verb} ${what} in ${where}: 409 ${status.reason ?? "Conflict"}.${said}`, { cause: err, details: d });
      default:
        return new AmlcertError("KUBE_ERROR", call.stage, `could not ${call.verb} ${what} in ${where}: HTTP ${code}${status.reason ? ` ${status.reason}` : ""}.${said}`, { cause: err, details: d });
    }
  }
  if (err instanceof KubeTimeoutError) {
    return new AmlcertError("KUBE_ERROR", call.stage, `the Kubernetes API server at ${ctx.server} did not answer in time when trying to ${call.verb} ${what} in namespace "${call.namespace}": ${err.message}.`, {
      cause: err,
      details: { ...details, timeout: true, timeoutSeconds: err.timeoutMs / 1000, attempts: err.attempts },
    });
  }
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === "AbortError") {
    return new AmlcertError("KUBE_ERROR", call.stage, `the Kubernetes API server at ${ctx.server} did not answer in time when trying to ${call.verb} ${what} in namespace "${call.namespace}".`, { cause: err, details });
  }
  if (e?.code && TLS_CODES.has(e.code)) {
    return new AmlcertError("KUBE_ERROR", call.stage, `TLS verification of the Kubernetes API server at ${ctx.server} failed (${e.code}): check certificate-authority-data of ${ctx.context}.`, { cause: err, details: { ...details, errorCode: e.code } });
  }
  return new AmlcertError("KUBE_ERROR", call.stage, `could not ${call.verb} ${what} in ${where}: ${e?.message ?? String(err)}`, { cause: err, details: { ...details, ...(e?.code ? { errorCode: e.code } : {}) } });
}

/** Loads the configuration once, on first use, so that a bad kubeconfig surfaces from the call that needs it. */
export function lazyKubeApis(source: KubeSource, requestTimeoutMs?: number, requests?: RequestObserver): () => KubeApis {
  let apis: KubeApis | undefined;
  return () => {
    apis ??= makeKubeApis(loadKubeConfig(source), { ...source.retry, ...(requestTimeoutMs === undefined ? {} : { timeoutMs: requestTimeoutMs }) }, requests);
    return apis;
  };
}
