/**
 * The ACME adapter: one DNS-01 order on acme-client's low-level API. acme-client is imported here only (its axios
 * instance's transport is bounded by ./acme-transport.ts).
 *
 * Process scope (one issuer per process, see src/app/compose.ts): one keep-alive HTTPS agent, the directory
 * (fetched once, with its meta; acme-client's own copy is primed with it), one acme-client Client and one account
 * lookup (or registration), and the renewalInfo answers until their Retry-After.
 *
 *   account   load the account key (create + save an ECDSA P-256 key first if none), find the account
 *             (onlyReturnExisting) or register it (with External Account Binding when configured)
 *   order     newOrder for the names (with `profile` and RFC 9773's `replaces` when given) -> authorizations ->
 *             for each pending one, in parallel: present the dns-01 value through the solver, tell the CA, wait for
 *             the challenge to be valid
 *   cleanup   always, once every authorization has settled: remove every value that was presented
 *   finalize  CSR from the caller's key -> finalize -> download the full chain (leaf first)
 *
 * acme-client throws plain Errors whose message is the problem's `detail`; to report the problem *type*
 * (rejectedIdentifier, unauthorized, badCSR, ...) the transport hands this module the problem documents seen during
 * the current call (an AsyncLocalStorage scope, so concurrent calls never mix them up). The same scope carries the
 * call's signal, the transport policy and the request observer (amlcert_requests_total{system="acme"}).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import { createRequire } from "node:module";
import { getCACertificates } from "node:tls";
import * as acme from "acme-client";
import type { AxiosAdapter } from "axios";
import type { Logger } from "pino";
import { AmlcertError, atStage, isAmlcertError, type Stage } from "../errors.js";
import type { AcmeIssuer, AcmeProbe, Clock, DnsChallengeSolver, IssueRequest, IssuedCertificate, PresentedTxt, RenewalWindow, RequestObserver } from "../ports.js";
import type { AccountKeyStore } from "./account-key-store.js";
import { generateCertificateKey } from "./keys.js";
import { normalizeName } from "../dns-check/names.js";
import { certIdOf, parseSuggestedWindow } from "./ari.js";
import {
  AcmeTransportError,
  DEFAULT_TRANSPORT_POLICY,
  boundedAdapter,
  retryAfterMs,
  type Problem,
  type TransportCall,
  type TransportPolicy,
} from "./acme-transport.js";

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
  /** bounds of every HTTP request (acme-transport.ts): timeout, the longest Retry-After waited, attempts, backoff */
  transport?: Partial<TransportPolicy>;
  /** shorthand for transport: `retries` after the first try, a fixed `delaySeconds` between them */
  transportRetry?: { retries?: number; delaySeconds?: number };
  /** told the status of every HTTP response from the CA (a 429 or badNonce answer that is retried counts, and so
   * does the retry) and "error" for each request that got no response */
  requests?: RequestObserver;
}

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
  "invalidProfile",
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

/** acme-client caches its directory this long; ours is refreshed as often (a daemon runs for weeks). */
const DIRECTORY_MAX_AGE_MS = 24 * 3_600_000;
/** A renewalInfo answer is reused until its Retry-After, within these bounds (RFC 9773 section 4.3). */
const ARI_REFRESH_MIN_MS = 60_000;
const ARI_REFRESH_MAX_MS = 24 * 3_600_000;
/** The bound of a renewalInfo lookup's one try (and of the directory fetch it may need). */
const ARI_LOOKUP_TIMEOUT_MS = 10_000;
/** Without a Retry-After, Let's Encrypt's six hours. */
const ARI_REFRESH_DEFAULT_MS = 6 * 3_600_000;

interface CallScope {
  /** the most recent problem documents (bounded) */
  problems: Problem[];
  badNonces: number;
  transport: TransportCall;
}

interface Directory {
  newOrder?: string;
  renewalInfo?: string;
  meta?: { profiles?: Record<string, string>; externalAccountRequired?: boolean; [k: string]: unknown };
  [k: string]: unknown;
}

const scope = new AsyncLocalStorage<CallScope>();
let transportInstalled = false;

/**
 * Put the bounded transport under acme-client's axios instance, once per process, and switch acme-client's own
 * transport retries off (acme-transport.ts says why). The adapter acts only inside an issuer's call scope.
 * acme-client's axios is reached through acme-client's own module resolution, so it is the same copy.
 */
function installTransport(): void {
  if (transportInstalled) return;
  transportInstalled = true;
  const axiosOfAcme = createRequire(createRequire(import.meta.url).resolve("acme-client"))("axios") as { getAdapter(name: string): AxiosAdapter };
  const http = axiosOfAcme.getAdapter("http");
  const defaults = acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } };
  defaults.acmeSettings = { ...defaults.acmeSettings, retryMaxAttempts: 0 };
  acme.axios.defaults.adapter = boundedAdapter(http, () => scope.getStore()?.transport);
}

/** The problem document behind an acme-client error (its message is the detail with newlines removed). */
function problemOf(err: unknown): Problem | undefined {
  if (err instanceof AcmeTransportError) return err.facts.problem;
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

/** A request the transport gave up on: rate limited (C2: retryAt), or the CA unavailable or silent. */
function transportFailure(err: AcmeTransportError, what: string, stage: Stage, extra: Record<string, unknown>): AmlcertError {
  const { retryAt, status, problem, attempts, timeoutMs } = err.facts;
  const details = {
    ...extra,
    transport: err.kind,
    attempts,
    ...(status === undefined ? {} : { status }),
    ...(retryAt === undefined ? {} : { retryAt: retryAt.toISOString() }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(problem ? { problemType: problem.type, problemDetail: problem.detail } : {}),
  };
  const code = err.kind === "rate-limited" && retryAt !== undefined ? "ACME_RATE_LIMITED" : "ACME_ERROR";
  return new AmlcertError(code, stage, `ACME ${what} failed: ${err.message}`, { cause: sanitized(err), details });
}

/** Map a failure of an ACME call made during `what` to an AmlcertError. */
function acmeFailure(err: unknown, what: string, stage: Stage, extra: Record<string, unknown> = {}): AmlcertError {
  if (isAmlcertError(err)) return err;
  if (err instanceof AcmeTransportError) return transportFailure(err, what, stage, extra);
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

/** acme-client's HttpClient, for its directory cache (not part of its typed API; checked before use). */
interface AcmeHttp {
  getDirectory(): Promise<Directory>;
  directoryCache?: Directory | null;
  directoryTimestamp?: number;
}

function httpOf(client: acme.Client): AcmeHttp | undefined {
  const http = (client as unknown as { http?: AcmeHttp }).http;
  return typeof http?.getDirectory === "function" ? http : undefined;
}

export function createAcmeIssuer(opts: AcmeIssuerOptions): AcmeIssuer {
  installTransport();
  const log = opts.logger.child({ component: "acme" });
  const policy: TransportPolicy = {
    ...DEFAULT_TRANSPORT_POLICY,
    ...(opts.transportRetry?.retries === undefined ? {} : { attempts: opts.transportRetry.retries + 1 }),
    ...(opts.transportRetry?.delaySeconds === undefined
      ? {}
      : { backoffMinMs: opts.transportRetry.delaySeconds * 1000, backoffMaxMs: opts.transportRetry.delaySeconds * 1000 }),
    ...opts.transport,
  };

  // renewalInfo is best effort (the lifetime rule stands in): one short try, so a CA that is down does not hold up plan
  const lookupPolicy: TransportPolicy = { ...policy, attempts: 1, requestTimeoutMs: Math.min(policy.requestTimeoutMs, ARI_LOOKUP_TIMEOUT_MS) };

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
  // one connection pool per process: keep-alive, so a run's requests share a TLS connection
  const httpsAgent = new HttpsAgent({ keepAlive: true, ...(opts.caPem === undefined ? {} : { ca: [...getCACertificates("default"), opts.caPem] }) });

  /** Run `fn` in a call scope of its own (problems, signal, counters), unless one is running already. */
  function inCall<T>(signal: AbortSignal | undefined, fn: (call: CallScope) => Promise<T>, bounds: TransportPolicy = policy): Promise<T> {
    const running = scope.getStore();
    if (running !== undefined) return fn(running);
    const call: CallScope = {
      problems: [],
      badNonces: 0,
      transport: {
        policy: bounds,
        clock: opts.clock,
        httpsAgent,
        ...(signal === undefined ? {} : { signal }),
        ...(opts.requests === undefined ? {} : { requests: opts.requests }),
        onRetry: (r) => log.info({ method: r.method, url: r.url, status: r.status, attempt: r.attempt, delayMs: r.delayMs, retryAfterMs: r.retryAfterMs }, "ACME request retried"),
      },
    };
    call.transport.onProblem = (p) => {
      if (p.type === "badNonce") call.badNonces++;
      call.problems.push(p);
      if (call.problems.length > 200) call.problems.shift();
    };
    return scope.run(call, () => fn(call));
  }

  // ------------------------------------------------------------------------------------------------- directory
  let directoryMemo: { at: number; dir: Promise<Directory> } | undefined;
  /** The directory, fetched once (and again after a day); a failure is not kept. */
  function directory(signal?: AbortSignal, bounds: TransportPolicy = policy): Promise<Directory> {
    const now = opts.clock.now().getTime();
    if (directoryMemo && now - directoryMemo.at < DIRECTORY_MAX_AGE_MS) return directoryMemo.dir;
    const dir = inCall(signal, async () => {
      const res = await acme.axios.get<unknown>(opts.directoryUrl, { validateStatus: null } as never);
      if (res.status !== 200 || typeof res.data !== "object" || res.data === null) {
        throw new Error(`the ACME directory ${opts.directoryUrl} answered ${res.status}${typeof res.data === "object" ? "" : " without a JSON body"}`);
      }
      return res.data as Directory;
    }, bounds);
    directoryMemo = { at: now, dir };
    dir.catch(() => {
      if (directoryMemo?.dir === dir) directoryMemo = undefined;
    });
    return dir;
  }

  /** A Client whose directory is ours (no second fetch). */
  async function newClient(accountKey: string): Promise<acme.Client> {
    const dir = await directory();
    const client = new acme.Client({
      directoryUrl: opts.directoryUrl,
      accountKey,
      ...(opts.eab === undefined ? {} : { externalAccountBinding: { kid: opts.eab.kid, hmacKey: opts.eab.hmacKey } }),
      ...poll,
    });
    const http = httpOf(client);
    if (http && http.directoryCache == null) {
      http.directoryCache = dir;
      http.directoryTimestamp = Math.floor(Date.now() / 1000);
    }
    return client;
  }

  // --------------------------------------------------------------------------------------------------- account
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

  async function findOrRegister(): Promise<acme.Client> {
    const key = await accountKey();
    let client: acme.Client;
    try {
      client = await newClient(key.pem);
    } catch (err) {
      throw acmeFailure(err, "directory request", "acme-account");
    }
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

  let accountMemo: Promise<acme.Client> | undefined;
  /** The account's client, looked up (or registered) once per process; a failure is not kept. */
  function account(): Promise<acme.Client> {
    if (accountMemo) return accountMemo;
    const found = findOrRegister();
    accountMemo = found;
    found.catch(() => {
      if (accountMemo === found) accountMemo = undefined;
    });
    return found;
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

  async function createOrder(client: acme.Client, names: string[], req: IssueRequest): Promise<acme.Order> {
    const dir = await directory();
    // RFC 9773 section 5: `replaces` only toward a CA that has renewalInfo
    const replaces = req.replaces !== undefined && dir.renewalInfo !== undefined ? req.replaces : undefined;
    const payload = (withReplaces: boolean) =>
      ({
        identifiers: names.map((value) => ({ type: "dns", value })),
        ...(req.profile === undefined ? {} : { profile: req.profile }),
        ...(withReplaces && replaces !== undefined ? { replaces } : {}),
      }) as Parameters<acme.Client["createOrder"]>[0];
    try {
      return await nonceSafe(() => client.createOrder(payload(true)));
    } catch (err) {
      // the certificate was replaced already (an earlier order of ours whose rollout failed): order without it
      if (replaces === undefined || problemOf(err)?.type !== "alreadyReplaced") throw err;
      log.warn({ replaces, problemDetail: problemOf(err)?.detail }, "the CA says the certificate in place was already replaced; ordering without replaces");
      return nonceSafe(() => client.createOrder(payload(false)));
    }
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
      order = await createOrder(client, names, req);
      const created = order;
      authorizations = await nonceSafe(() => client.getAuthorizations(created));
    } catch (err) {
      throw acmeFailure(err, `order for ${names.join(", ")}`, "acme-order", { names });
    }
    log.info({ orderUrl: order.url, names, authorizations: authorizations.length, profile: req.profile, replaces: req.replaces }, "ACME order created");

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

  // ---------------------------------------------------------------------------------------------------- ARI
  const windows = new Map<string, { window: RenewalWindow | undefined; until: number }>();

  async function fetchWindow(base: string, certId: string, signal?: AbortSignal): Promise<{ window: RenewalWindow | undefined; until: number }> {
    const url = `${base.replace(/\/+$/, "")}/${certId}`;
    const res = await inCall(signal, () => acme.axios.get<unknown>(url, { validateStatus: null } as never), lookupPolicy);
    const now = opts.clock.now();
    const after = retryAfterMs(res.headers["retry-after"], now) ?? ARI_REFRESH_DEFAULT_MS;
    const until = now.getTime() + Math.min(ARI_REFRESH_MAX_MS, Math.max(ARI_REFRESH_MIN_MS, after));
    if (res.status !== 200) {
      log.info({ certId, status: res.status }, "the CA has no renewal information for the certificate in place; renewing by its lifetime");
      return { window: undefined, until };
    }
    const parsed = parseSuggestedWindow(res.data);
    if (parsed === undefined) {
      log.warn({ certId }, "the CA's renewal information has no usable suggestedWindow; renewing by the certificate's lifetime");
      return { window: undefined, until };
    }
    return { window: { certId, ...parsed, refreshAfter: new Date(until) }, until };
  }

  return {
    issue(req, solver) {
      return inCall(req.signal, (call) => issueInScope(req, solver, call));
    },

    async profiles(signal) {
      try {
        const dir = await directory(signal);
        const p = dir.meta?.profiles;
        return typeof p === "object" && p !== null && Object.keys(p).length > 0 ? { ...p } : undefined;
      } catch (err) {
        throw acmeFailure(err, "directory request", "acme-order");
      }
    },

    async renewalInfo(chainPem, signal) {
      let certId: string | undefined;
      try {
        certId = certIdOf(chainPem);
      } catch {
        return undefined;
      }
      if (certId === undefined) return undefined;
      const cached = windows.get(certId);
      if (cached && opts.clock.now().getTime() < cached.until) return cached.window;
      try {
        const dir = await directory(signal, lookupPolicy);
        if (typeof dir.renewalInfo !== "string") return undefined;
        const answer = await fetchWindow(dir.renewalInfo, certId, signal);
        windows.set(certId, answer);
        // the map stays small: one entry per certificate in place, and old ones go
        for (const [k, v] of windows) if (v.until <= opts.clock.now().getTime()) windows.delete(k);
        return answer.window;
      } catch (err) {
        if (signal?.aborted) throw err;
        log.warn({ certId, error: err instanceof Error ? err.message : String(err) }, "could not read the CA's renewal information; renewing by the certificate's lifetime");
        return undefined;
      }
    },

    /** `doctor`: the directory answers, and the stored key's account exists; registers nothing, saves nothing. */
    probe() {
      return inCall(undefined, async (): Promise<AcmeProbe> => {
        let stored: string | undefined;
        try {
          stored = await opts.accountKeys.load();
        } catch (err) {
          throw accountStoreFailure(err, `could not read the ACME account key from ${opts.accountKeys.describe()}`);
        }
        let externalAccountRequired: boolean;
        try {
          externalAccountRequired = (await directory()).meta?.externalAccountRequired === true;
        } catch (err) {
          throw acmeFailure(err, "directory request", "preflight");
        }
        if (stored === undefined) return { directory: opts.directoryUrl, account: "no-key", externalAccountRequired };
        // a client of its own: the lookup must not become the process's account (probe never registers)
        const client = await newClient(stored);
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
