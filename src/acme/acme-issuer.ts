/**
 * The ACME adapter: one DNS-01 order on acme-client's low-level API. acme-client is imported here only.
 *
 *   account   load the account key (create + save an ECDSA P-256 key first if none), find the account
 *             (onlyReturnExisting) or register it (with External Account Binding when configured)
 *   order     newOrder for the names -> authorizations -> for each pending one, in parallel: present the dns-01
 *             value through the solver, tell the CA, wait for the challenge to be valid
 *   cleanup   always, once every authorization has settled: remove every value that was presented
 *   finalize  CSR from the caller's key -> finalize -> download the full chain (leaf first)
 *
 * acme-client throws plain Errors whose message is the problem's `detail`; to report the problem *type*
 * (rejectedIdentifier, unauthorized, badCSR, ...) this module watches the responses of acme-client's axios
 * instance and keeps the problem documents seen during the current `issue` call (an AsyncLocalStorage scope,
 * so concurrent issuers never mix them up). The same scope carries the optional extra trust anchors and the
 * request observer (amlcert_requests_total{system="acme"}).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import { getCACertificates } from "node:tls";
import * as acme from "acme-client";
import type { Logger } from "pino";
import { AmlcertError, atStage, isAmlcertError, type Stage } from "../errors.js";
import type { AcmeIssuer, AcmeProbe, Clock, DnsChallengeSolver, IssueRequest, IssuedCertificate, PresentedTxt, RequestObserver } from "../ports.js";
import type { AccountKeyStore } from "./account-key-store.js";
import { generateCertificateKey } from "./keys.js";
import { normalizeName } from "../dns-check/names.js";

export interface AcmeIssuerOptions {
  directoryUrl: string;
  /** contact address registered with the account (mailto:) */
  email?: string;
  /** External Account Binding: key id and the base64url HMAC key issued by the CA */
  eab?: { kid: string; hmacKey: string };
  accountKeys: AccountKeyStore;
  logger: Logger;
  clock: Clock;
  termsOfServiceAgreed: true;
  /** extra PEM trust anchors for the ACME server's HTTPS certificate, added to Node's default trust store */
  caPem?: string;
  /** how status polling backs off (challenge, order): attempts and delays. Defaults: 10 attempts, 1 s .. 10 s. */
  poll?: { attempts?: number; minDelayMs?: number; maxDelayMs?: number };
  /** retries of one HTTP request on network errors, 429 and 5xx (Retry-After wins over the delay, which grows
   * linearly: delay x attempt). Defaults: acme-client's, 5 retries, 5 s. */
  transportRetry?: { retries?: number; delaySeconds?: number };
  /** told the status of every HTTP response from the CA (a 429 or badNonce answer that acme-client retries counts,
   * and so does the retry) and "error" for each request that got no response (counted when `issue` returns) */
  requests?: RequestObserver;
}

const PROBLEM_PREFIX = "urn:ietf:params:acme:error:";

/** Problem types that mean "the CA refused this order" rather than "something broke on the way". */
const REJECTION_TYPES = new Set([
  "rejectedIdentifier",
  "unsupportedIdentifier",
  "unauthorized",
  "caa",
  "badCSR",
  "dns",
  "incorrectResponse",
  "connection",
]);

/** Problem types that say "try again later", whichever step they show up in. */
const TRANSIENT_TYPES = new Set(["badNonce", "rateLimited", "serverInternal"]);

/** How often one ACME step is repeated after acme-client gave up on badNonce answers (it retries 5 times itself).
 * A request refused for its nonce had no effect, so repeating the step is safe. */
const NONCE_STEP_ATTEMPTS = 3;

/** Problem types that are about the account, whichever step they show up in. */
const ACCOUNT_TYPES = new Set([
  "accountDoesNotExist",
  "externalAccountRequired",
  "userActionRequired",
  "invalidContact",
  "unsupportedContact",
  "badPublicKey",
]);

interface Problem {
  type: string;
  detail: string;
}

interface AcmeSettings {
  retryMaxAttempts: number;
  retryDefaultDelay: number;
  [other: string]: unknown;
}

interface CallScope {
  /** the most recent problem documents (bounded) */
  problems: Problem[];
  badNonces: number;
  httpsAgent?: HttpsAgent;
  transportRetry?: { retries?: number; delaySeconds?: number };
  requests?: RequestObserver;
  /** HTTP requests sent (each retry is one) and responses received during this call */
  sent: number;
  answered: number;
}

const scope = new AsyncLocalStorage<CallScope>();
let interceptorsInstalled = false;

/**
 * Hook acme-client's axios instance once: read-only observation of problems, the per-call HTTPS agent, the
 * per-call transport retry settings (acme-client reads `defaults.acmeSettings` when it retries a request; the
 * getter answers from the current call's scope and falls back to the process-wide value), and the count of
 * requests and responses.
 *
 * Responses are counted in a `transformResponse` step, not in a response interceptor: acme-client's own
 * interceptor (installed first) turns every answer into an error, retries 429/5xx/network failures by re-running
 * the whole request, and hands on only the last answer, so an interceptor after it never sees the 429. axios
 * calls `transformResponse` exactly once for each answer that arrives, before any interceptor. Requests are
 * counted in the request interceptor, which axios runs again for each of acme-client's retries.
 */
function installInterceptors(): void {
  if (interceptorsInstalled) return;
  interceptorsInstalled = true;
  const defaults = acme.axios.defaults as unknown as { acmeSettings: AcmeSettings };
  let base = defaults.acmeSettings;
  Object.defineProperty(defaults, "acmeSettings", {
    configurable: true,
    enumerable: true,
    get(): AcmeSettings {
      const retry = scope.getStore()?.transportRetry;
      if (retry === undefined) return base;
      return {
        ...base,
        ...(retry.retries === undefined ? {} : { retryMaxAttempts: retry.retries }),
        ...(retry.delaySeconds === undefined ? {} : { retryDefaultDelay: retry.delaySeconds }),
      };
    },
    set(value: AcmeSettings) {
      base = value;
    },
  });
  acme.axios.interceptors.request.use((config) => {
    const store = scope.getStore();
    if (store !== undefined) store.sent++;
    const agent = store?.httpsAgent;
    if (agent !== undefined) config.httpsAgent = agent;
    return config;
  });
  const transforms = acme.axios.defaults.transformResponse;
  acme.axios.defaults.transformResponse = [
    function countResponse(data: unknown, _headers: unknown, status?: number): unknown {
      const store = scope.getStore();
      if (store !== undefined && status !== undefined) {
        store.answered++;
        store.requests?.("acme", String(status));
      }
      return data;
    },
    ...(transforms === undefined ? [] : Array.isArray(transforms) ? transforms : [transforms]),
  ];
  acme.axios.interceptors.response.use((response) => {
    const store = scope.getStore();
    if (store !== undefined) {
      const data: unknown = response.data;
      const problem = asProblem(data) ?? asProblem((data as { error?: unknown } | null)?.error);
      if (problem !== undefined) {
        if (problem.type === "badNonce") store.badNonces++;
        store.problems.push(problem);
        if (store.problems.length > 200) store.problems.shift();
      }
    }
    return response;
  });
}

function asProblem(value: unknown): Problem | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { type, detail } = value as { type?: unknown; detail?: unknown };
  if (typeof type !== "string" || !type.startsWith(PROBLEM_PREFIX)) return undefined;
  return { type: type.slice(PROBLEM_PREFIX.length), detail: typeof detail === "string" ? detail : "" };
}

/** The problem document behind an acme-client error (its message is the detail with newlines removed). */
function problemOf(err: unknown): Problem | undefined {
  const store = scope.getStore();
  if (store === undefined || !(err instanceof Error)) return undefined;
  for (let i = store.problems.length - 1; i >= 0; i--) {
    const p = store.problems[i]!;
    if (p.detail.replace(/\n/g, "") === err.message) return p;
  }
  return undefined;
}

/** An Error carrying only name, message and code: SDK errors (axios) hold request configs we do not want in logs. */
function sanitized(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const copy = new Error(err.message);
  copy.name = err.name;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}

function describeProblem(p: Problem): string {
  return `${p.type}: ${p.detail || "(no detail)"}`;
}

/** Map a failure of an ACME call made during `what` to an AmlcertError. */
function acmeFailure(err: unknown, what: string, stage: Stage, extra: Record<string, unknown> = {}): AmlcertError {
  if (isAmlcertError(err)) return err;
  const problem = problemOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (problem === undefined) {
    return new AmlcertError("ACME_ERROR", stage, `ACME ${what} failed: ${message}`, {
      cause: sanitized(err),
      details: extra,
    });
  }
  const details = { ...extra, problemType: problem.type, problemDetail: problem.detail };
  if ((stage === "acme-account" && !TRANSIENT_TYPES.has(problem.type)) || ACCOUNT_TYPES.has(problem.type)) {
    return new AmlcertError("ACME_ACCOUNT", "acme-account", `ACME ${what} failed: ${describeProblem(problem)}`, {
      cause: sanitized(err),
      details,
    });
  }
  if (REJECTION_TYPES.has(problem.type)) {
    return new AmlcertError("ACME_REJECTED", "acme-order", `the CA rejected the ${what}: ${describeProblem(problem)}`, {
      cause: sanitized(err),
      details,
    });
  }
  return new AmlcertError("ACME_ERROR", stage, `ACME ${what} failed: ${describeProblem(problem)}`, {
    cause: sanitized(err),
    details,
  });
}

function uniqueNames(names: string[]): string[] {
  const seen = new Set<string>();
  for (const raw of names) {
    const n = normalizeName(raw.trim());
    if (n.length > 0) seen.add(n);
  }
  return [...seen];
}

/** The dns-01 record name of an authorization (a wildcard's authorization names the base domain). */
function challengeRecordName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, "")}`;
}

interface AuthzFailure {
  identifier: string;
  error: AmlcertError;
}

export function createAcmeIssuer(opts: AcmeIssuerOptions): AcmeIssuer {
  installInterceptors();
  const log = opts.logger.child({ component: "acme" });

  /** Run one ACME step, repeating it (bounded) when it failed only because the CA kept rejecting nonces. */
  async function nonceSafe<T>(step: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (err) {
        if (attempt >= NONCE_STEP_ATTEMPTS || problemOf(err)?.type !== "badNonce") throw err;
        log.debug({ attempt }, "the CA kept rejecting nonces; repeating the step");
      }
    }
  }
  const poll = {
    backoffAttempts: opts.poll?.attempts ?? 10,
    backoffMin: opts.poll?.minDelayMs ?? 1_000,
    backoffMax: opts.poll?.maxDelayMs ?? 10_000,
  };
  const httpsAgent =
    opts.caPem === undefined
      ? undefined
      : new HttpsAgent({ ca: [...getCACertificates("default"), opts.caPem], keepAlive: false });

  async function accountKey(): Promise<{ pem: string; generated: boolean }> {
    const where = opts.accountKeys.describe();
    let stored: string | undefined;
    try {
      stored = await opts.accountKeys.load();
    } catch (err) {
      throw accountStoreFailure(err, `could not read the ACME account key from ${where}`);
    }
    if (stored !== undefined) {
      try {
        createPrivateKey(stored);
      } catch (err) {
        throw new AmlcertError("ACME_ACCOUNT", "acme-account", `the ACME account key in ${where} is not a valid private key; fix or remove it`, {
          cause: sanitized(err),
        });
      }
      return { pem: stored, generated: false };
    }
    const pem = await generateCertificateKey("ecdsa-p256");
    try {
      await opts.accountKeys.save(pem);
    } catch (err) {
      // Two first runs at once: the one that saved first wins, and the other uses its key (one account, not two).
      if (isAmlcertError(err) && err.code === "KUBE_CONFLICT") {
        const winner = await opts.accountKeys.load().catch(() => undefined);
        if (winner !== undefined) {
          log.info({ keyStore: where }, "another run saved an ACME account key first; using that one");
          return { pem: winner, generated: false };
        }
      }
      throw accountStoreFailure(err, `could not save the new ACME account key to ${where}`);
    }
    log.info({ keyStore: where }, "created a new ACME account key (ECDSA P-256) and saved it before registering");
    return { pem, generated: true };
  }

  function accountStoreFailure(err: unknown, message: string): AmlcertError {
    if (isAmlcertError(err)) return atStage(err, "acme-account");
    return new AmlcertError("ACME_ACCOUNT", "acme-account", `${message}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: sanitized(err),
    });
  }

  async function account(): Promise<acme.Client> {
    const key = await accountKey();
    const client = new acme.Client({
      directoryUrl: opts.directoryUrl,
      accountKey: key.pem,
      ...(opts.eab === undefined ? {} : { externalAccountBinding: { kid: opts.eab.kid, hmacKey: opts.eab.hmacKey } }),
      ...poll,
    });
    if (!key.generated) {
      try {
        await nonceSafe(() => client.createAccount({ onlyReturnExisting: true }));
        log.info({ accountUrl: client.getAccountUrl(), created: false }, "using the existing ACME account");
        return client;
      } catch (err) {
        if (problemOf(err)?.type !== "accountDoesNotExist") throw acmeFailure(err, "account lookup", "acme-account");
        log.info({ keyStore: opts.accountKeys.describe() }, "the CA does not know the stored account key; registering it");
      }
    }
    try {
      await nonceSafe(() =>
        client.createAccount({
          termsOfServiceAgreed: opts.termsOfServiceAgreed,
          ...(opts.email === undefined ? {} : { contact: [`mailto:${opts.email}`] }),
        }),
      );
    } catch (err) {
      throw acmeFailure(err, "account registration", "acme-account", { eabKid: opts.eab?.kid });
    }
    log.info({ accountUrl: client.getAccountUrl(), created: true, eabKid: opts.eab?.kid }, "registered a new ACME account");
    return client;
  }

  /** Solve one authorization. Presented values are appended to `presented` as soon as they exist. */
  async function authorize(client: acme.Client, authz: acme.Authorization, solver: DnsChallengeSolver, presented: PresentedTxt[]): Promise<void> {
    const identifier = `${authz.wildcard === true ? "*." : ""}${authz.identifier.value}`;
    if (authz.status === "valid") {
      log.info({ identifier }, "authorization already valid; no challenge needed");
      return;
    }
    if (authz.status !== "pending") {
      throw new AmlcertError("ACME_REJECTED", "acme-order", `the CA returned the authorization for ${identifier} as ${authz.status}`, {
        details: { identifier, authorizationStatus: authz.status },
      });
    }
    const challenge = authz.challenges.find((c) => c.type === "dns-01");
    if (challenge === undefined) {
      throw new AmlcertError("ACME_REJECTED", "acme-order", `the CA offered no dns-01 challenge for ${identifier} (offered: ${authz.challenges.map((c) => c.type).join(", ") || "none"})`, {
        details: { identifier },
      });
    }
    let completed = false;
    try {
      const value = await client.getChallengeKeyAuthorization(challenge);
      const recordName = challengeRecordName(authz.identifier.value);
      let handle: PresentedTxt;
      try {
        handle = await solver.present(recordName, value);
      } catch (err) {
        throw isAmlcertError(err) ? err : atStage(err, "dns-challenge");
      }
      presented.push(handle);
      log.info({ identifier, recordName, recordFqdn: handle.recordFqdn, zone: handle.zone, valuePrefix: value.slice(0, 8) }, "dns-01 value presented");
      try {
        await nonceSafe(() => client.completeChallenge(challenge));
        completed = true;
        await nonceSafe(() => client.waitForValidStatus(challenge));
      } catch (err) {
        throw acmeFailure(err, `dns-01 challenge for ${identifier}`, "acme-order", { identifier });
      }
      log.info({ identifier }, "authorization valid");
    } catch (err) {
      if (!completed) {
        // keep the CA's pending-authorization count low, like acme-client's auto mode
        try {
          await nonceSafe(() => client.deactivateAuthorization(authz));
        } catch (deactivateErr) {
          log.warn({ identifier, error: sanitized(deactivateErr).message }, "could not deactivate the failed authorization");
        }
      }
      throw err;
    }
  }

  async function cleanupAll(solver: DnsChallengeSolver, presented: PresentedTxt[]): Promise<void> {
    if (presented.length === 0) return;
    const results = await Promise.allSettled(presented.map((h) => solver.cleanup(h)));
    let failed = 0;
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        failed++;
        const h = presented[i]!;
        log.warn(
          { recordFqdn: h.recordFqdn, zone: h.zone, valuePrefix: h.value.slice(0, 8), error: sanitized(r.reason).message },
          "dns-01 cleanup failed: the TXT value stays in the zone",
        );
      }
    });
    const summary = { presented: presented.length, removed: presented.length - failed, cleanupFailures: failed };
    if (failed > 0) log.warn(summary, "dns-01 cleanup finished with failures");
    else log.info(summary, "dns-01 cleanup finished");
  }

  async function issueInScope(req: IssueRequest, solver: DnsChallengeSolver, callScope: CallScope): Promise<IssuedCertificate> {
    const started = opts.clock.now().getTime();
    const names = uniqueNames(req.names);
    if (names.length === 0) throw new AmlcertError("INTERNAL", "acme-order", "an ACME order needs at least one name");
    try {
      createPrivateKey(req.keyPem); // fail before any challenge work, not at finalization
    } catch (err) {
      throw new AmlcertError("INTERNAL", "acme-order", "the certificate key is not a readable unencrypted private key", { cause: sanitized(err) });
    }
    const client = await account();

    let order: acme.Order;
    let authorizations: acme.Authorization[];
    try {
      order = await nonceSafe(() => client.createOrder({ identifiers: names.map((value) => ({ type: "dns", value })) }));
      const created = order;
      authorizations = await nonceSafe(() => client.getAuthorizations(created));
    } catch (err) {
      throw acmeFailure(err, `order for ${names.join(", ")}`, "acme-order", { names });
    }
    log.info({ orderUrl: order.url, names, authorizations: authorizations.length }, "ACME order created");

    const presented: PresentedTxt[] = [];
    try {
      const settled = await Promise.allSettled(authorizations.map((a) => authorize(client, a, solver, presented)));
      const failures: AuthzFailure[] = [];
      settled.forEach((r, i) => {
        if (r.status === "rejected") {
          const a = authorizations[i]!;
          const error = isAmlcertError(r.reason) ? r.reason : acmeFailure(r.reason, "authorization", "acme-order");
          failures.push({ identifier: `${a.wildcard === true ? "*." : ""}${a.identifier.value}`, error });
        }
      });
      if (failures.length > 0) {
        const first = failures.find((f) => f.error.code === "ACME_REJECTED") ?? failures[0]!;
        for (const f of failures) log.warn({ identifier: f.identifier, code: f.error.code, stage: f.error.stage, error: f.error.message }, "authorization failed");
        if (failures.length > 1) {
          first.error.details["failedIdentifiers"] = failures.map((f) => f.identifier);
        }
        throw first.error;
      }
    } finally {
      await cleanupAll(solver, presented);
    }

    let chainPem: string;
    try {
      const [, csr] = await acme.crypto.createCsr(
        { ...(names[0]!.length <= 64 ? { commonName: names[0]! } : {}), altNames: [...names] },
        req.keyPem,
      );
      const finalized = await nonceSafe(() => client.finalizeOrder(order, csr));
      chainPem = await nonceSafe(() => client.getCertificate(finalized));
    } catch (err) {
      throw acmeFailure(err, `finalization of the order for ${names.join(", ")}`, "acme-order", { orderUrl: order.url });
    }
    if (!chainPem.endsWith("\n")) chainPem += "\n";

    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(chainPem);
    } catch (err) {
      throw new AmlcertError("ACME_ERROR", "acme-order", "the CA returned a certificate that does not parse", { cause: sanitized(err) });
    }
    log.info(
      {
        names,
        serialNumber: leaf.serialNumber,
        notAfter: new Date(leaf.validTo).toISOString(),
        durationMs: opts.clock.now().getTime() - started,
        // badNonce answers acme-client retried transparently (Pebble rejects some on purpose)
        badNonceRetries: callScope.badNonces,
      },
      "certificate issued",
    );
    return { chainPem };
  }

  return {
    issue(req, solver) {
      const callScope: CallScope = {
        problems: [],
        badNonces: 0,
        sent: 0,
        answered: 0,
        ...(httpsAgent === undefined ? {} : { httpsAgent }),
        ...(opts.transportRetry === undefined ? {} : { transportRetry: opts.transportRetry }),
        ...(opts.requests === undefined ? {} : { requests: opts.requests }),
      };
      const countUnanswered = () => {
        // every request of the call has settled by now: those without an answer failed on the way
        for (let i = callScope.answered; i < callScope.sent; i++) opts.requests?.("acme", "error");
      };
      return scope.run(callScope, () => issueInScope(req, solver, callScope)).finally(countUnanswered);
    },

    /** `doctor`: the directory answers, and the stored key's account exists; registers nothing, saves nothing. */
    probe() {
      const callScope: CallScope = {
        problems: [],
        badNonces: 0,
        sent: 0,
        answered: 0,
        ...(httpsAgent === undefined ? {} : { httpsAgent }),
        ...(opts.requests === undefined ? {} : { requests: opts.requests }),
      };
      return scope.run(callScope, async (): Promise<AcmeProbe> => {
        let stored: string | undefined;
        try {
          stored = await opts.accountKeys.load();
        } catch (err) {
          throw accountStoreFailure(err, `could not read the ACME account key from ${opts.accountKeys.describe()}`);
        }
        // a key of our own for the directory request alone when none is stored yet: it is never saved or registered
        const client = new acme.Client({ directoryUrl: opts.directoryUrl, accountKey: stored ?? (await generateCertificateKey("ecdsa-p256")), ...poll });
        let externalAccountRequired: boolean;
        try {
          const meta = (await (client as unknown as { http: { getDirectory(): Promise<{ meta?: { externalAccountRequired?: unknown } }> } }).http.getDirectory()).meta;
          externalAccountRequired = meta?.externalAccountRequired === true;
        } catch (err) {
          throw acmeFailure(err, "directory request", "preflight");
        }
        if (stored === undefined) return { directory: opts.directoryUrl, account: "no-key", externalAccountRequired };
        try {
          await nonceSafe(() => client.createAccount({ onlyReturnExisting: true }));
          return { directory: opts.directoryUrl, account: "exists", externalAccountRequired };
        } catch (err) {
          if (problemOf(err)?.type === "accountDoesNotExist") return { directory: opts.directoryUrl, account: "missing", externalAccountRequired };
          throw acmeFailure(err, "account lookup", "preflight");
        }
      });
    },
  };
}
