/**
 * The Azure identity amlcert signs in with, picked like DefaultAzureCredential picks it (same environment
 * variables, same order: service principal from the environment, workload identity, managed identity, Azure CLI,
 * and AZURE_TOKEN_CREDENTIALS to narrow the choice), but from an injected `env` and with the cloud's authority host.
 *
 * One deliberate difference: when the environment configures an identity explicitly (a service principal or
 * workload identity), only that identity is used. A failing workload identity does not fall through to the node's
 * managed identity or a developer's `az login`: the identity that is used is the one that was configured, and a
 * failure names it and the variables it came from. Only when nothing is configured are managed identity and the
 * Azure CLI tried in turn.
 *
 * Every token failure surfaces as AmlcertError AZURE_AUTH (stage "preflight"); adapters re-stage it.
 */
import {
  AzureCliCredential,
  ChainedTokenCredential,
  ClientCertificateCredential,
  ClientSecretCredential,
  CredentialUnavailableError,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
  type AccessToken,
  type GetTokenOptions,
  type ManagedIdentityCredentialClientIdOptions,
  type TokenCredential,
} from "@azure/identity";
import type { Logger } from "pino";
import { AmlcertError } from "../errors.js";
import type { RequestObserver } from "../ports.js";
import { isMicrosoftAuthorityHost, type ResolvedCloud } from "./cloud.js";
import { observerClientOptions, tryTimeoutPolicy } from "./request-policy.js";

export type IdentityMethod = "service-principal" | "workload-identity" | "managed-identity" | "azure-cli";

export interface AzureIdentity {
  method: IdentityMethod;
  /** the application (client) id the token was issued to (`appid`/`azp`) */
  clientId?: string;
  /** the object id of the service principal or managed identity (`oid`): what role assignments name */
  objectId?: string;
  tenantId?: string;
}

export interface AzureCredential {
  credential: TokenCredential;
  /** Get a token for ARM and say which identity it belongs to. Throws AZURE_AUTH (stage preflight). */
  identity(): Promise<AzureIdentity>;
  /** the identities that may be tried, in order (for logs and messages) */
  readonly candidates: readonly IdentityMethod[];
  /** the authority host tokens are requested from */
  readonly authorityHost: string;
}

export interface CreateAzureCredentialOptions {
  cloud: ResolvedCloud;
  env: Record<string, string | undefined>;
  logger: Logger;
  /** told the status of every token request (Entra ID, or IMDS for a managed identity) or "error"
   * (amlcert_requests_total{system="entra"}); the Azure CLI runs `az` and makes no request of its own */
  requests?: RequestObserver;
  /** bound on each try of a token request (azure.requestTimeout; default 30 s); the SDK retries a timed-out try */
  requestTimeoutMs?: number;
}

const DEFAULT_TOKEN_REQUEST_TIMEOUT_MS = 30_000;

interface Candidate {
  method: IdentityMethod;
  /** human description with the variables involved, for error messages */
  describe: string;
  credential: TokenCredential;
}

const METHOD_LABEL: Record<IdentityMethod, string> = {
  "service-principal": "service principal",
  "workload-identity": "workload identity",
  "managed-identity": "managed identity",
  "azure-cli": "Azure CLI",
};

/** AZURE_TOKEN_CREDENTIALS values DefaultAzureCredential understands that amlcert supports. */
const TOKEN_CREDENTIALS_SELECTION: Record<string, IdentityMethod[]> = {
  prod: ["service-principal", "workload-identity", "managed-identity"],
  dev: ["azure-cli"],
  environmentcredential: ["service-principal"],
  workloadidentitycredential: ["workload-identity"],
  managedidentitycredential: ["managed-identity"],
  azureclicredential: ["azure-cli"],
};

class UnavailableCredential implements TokenCredential {
  constructor(private readonly message: string) {}
  getToken(): Promise<AccessToken | null> {
    return Promise.reject(new CredentialUnavailableError(this.message));
  }
}

/** Records which candidate produced the last token. */
class RecordingCredential implements TokenCredential {
  constructor(
    private readonly candidate: Candidate,
    private readonly onSuccess: (c: Candidate) => void,
  ) {}
  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    const token = await this.candidate.credential.getToken(scopes, options);
    if (token) this.onSuccess(this.candidate);
    return token;
  }
}

/** A token is reused until this long before it expires. */
export const TOKEN_REUSE_MARGIN_MS = 5 * 60_000;

/**
 * One token per scope for the whole process: calls that arrive while a token is being fetched wait for that one
 * request, and later calls reuse the token until TOKEN_REUSE_MARGIN_MS before it expires. Without it, the sign-in
 * and each ARM client (Azure DNS, the extension) asked Entra ID again, and a run of 10 targets fetched 9 tokens.
 * A call with `claims` (a Continuous Access Evaluation challenge from ARM) always asks again and replaces the token.
 * A failed request is not kept. Each caller's abortSignal ends only its own wait.
 */
export function sharedTokens(inner: TokenCredential, now: () => number = Date.now): TokenCredential {
  const tokens = new Map<string, Promise<AccessToken | null>>();
  const shared: TokenCredential = {
    getToken(scopes, options) {
      const key = `${options?.tenantId ?? ""} ${[scopes].flat().join(" ")}`;
      const cached = tokens.get(key);
      let pending = options?.claims === undefined ? cached : undefined;
      if (pending === undefined) {
        const { abortSignal: _ownSignal, ...rest } = options ?? {};
        const fetching = inner.getToken(scopes, rest);
        tokens.set(key, fetching);
        fetching.then(
          (t) => {
            if (!t && tokens.get(key) === fetching) tokens.delete(key);
          },
          () => {
            if (tokens.get(key) === fetching) tokens.delete(key);
          },
        );
        pending = fetching;
      } else {
        const reuse = pending;
        pending = reuse.then((t) => {
          if (t && t.expiresOnTimestamp - now() > TOKEN_REUSE_MARGIN_MS) return t;
          if (tokens.get(key) === reuse) tokens.delete(key);
          return shared.getToken(scopes, options);
        });
      }
      const signal = options?.abortSignal;
      if (!signal) return pending;
      const aborted = () => new DOMException("the token request was aborted", "AbortError");
      return Promise.race([
        pending,
        new Promise<never>((_, reject) => {
          if (signal.aborted) reject(aborted());
          signal.addEventListener("abort", () => reject(aborted()), { once: true });
        }),
      ]);
    },
  };
  return shared;
}

/** Decode a JWT's claims without verifying it (the token is only read to name the identity; never logged). */
export function decodeTokenClaims(token: string): Record<string, unknown> {
  const payload = token.split(".")[1];
  if (!payload) return {};
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return claims && typeof claims === "object" ? (claims as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const firstLine = (s: string) => (s.split(/\r?\n/)[0] ?? s).trim();

/** Error messages from MSAL repeat trace ids and timestamps; keep the AADSTS description, which is the useful part. */
function summarize(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const nested = (err as { errors?: unknown[] }).errors;
  if (Array.isArray(nested) && nested.length > 0) return nested.map(summarize).join("; ");
  const aadsts = /AADSTS\d+:[^]*?(?= Trace ID:|$)/.exec(err.message);
  return firstLine(aadsts ? aadsts[0] : err.message);
}

export function createAzureCredential(opts: CreateAzureCredentialOptions): AzureCredential {
  const { cloud, env, logger } = opts;
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };

  const authorityHost =
    cloud.authorityHostSource === "override" ? cloud.authorityHost : (get("AZURE_AUTHORITY_HOST")?.replace(/\/+$/, "") ?? cloud.authorityHost);
  const disableInstanceDiscovery = !isMicrosoftAuthorityHost(authorityHost);
  // every token request has a per-try timeout (a hung Entra ID or IMDS must not hold the run), then the observer
  // MSAL reports a failed request in its own words (endpoints_resolution_error, network_error): the timeout seen
  // during a sign-in is added to its message
  const seen: { timeout?: Error } = {};
  const timeoutSeen = (): Error | undefined => seen.timeout;
  const pipeline = (service: string) => ({
    additionalPolicies: [
      tryTimeoutPolicy(service, opts.requestTimeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS, "azure.requestTimeout", (e) => (seen.timeout = e)),
      ...(observerClientOptions("entra", opts.requests).additionalPolicies ?? []),
    ],
  });
  const common = { authorityHost, disableInstanceDiscovery, ...pipeline("Entra ID") };

  const selectionRaw = get("AZURE_TOKEN_CREDENTIALS");
  let allowed: IdentityMethod[] | undefined;
  if (selectionRaw !== undefined) {
    allowed = TOKEN_CREDENTIALS_SELECTION[selectionRaw.toLowerCase()];
    if (!allowed) {
      throw new AmlcertError(
        "CONFIG_INVALID",
        "config",
        `AZURE_TOKEN_CREDENTIALS=${selectionRaw} is not supported; use prod, dev, EnvironmentCredential, WorkloadIdentityCredential, ManagedIdentityCredential or AzureCliCredential`,
      );
    }
  }
  const isAllowed = (m: IdentityMethod) => !allowed || allowed.includes(m);

  const tenantId = get("AZURE_TENANT_ID");
  const clientId = get("AZURE_CLIENT_ID");
  const secret = get("AZURE_CLIENT_SECRET");
  const certPath = get("AZURE_CLIENT_CERTIFICATE_PATH");
  const tokenFile = get("AZURE_FEDERATED_TOKEN_FILE");

  const servicePrincipal = (): Candidate => {
    const vars = `AZURE_TENANT_ID, AZURE_CLIENT_ID and ${secret ? "AZURE_CLIENT_SECRET" : "AZURE_CLIENT_CERTIFICATE_PATH"}`;
    const describe = `service principal ${clientId ?? "?"} in tenant ${tenantId ?? "?"} (from ${vars})`;
    if (!tenantId || !clientId || (!secret && !certPath)) {
      return {
        method: "service-principal",
        describe: "service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH)",
        credential: new UnavailableCredential(
          "service principal login needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",
        ),
      };
    }
    const credential = secret
      ? new ClientSecretCredential(tenantId, clientId, secret, common)
      : new ClientCertificateCredential(
          tenantId,
          clientId,
          { certificatePath: certPath!, certificatePassword: get("AZURE_CLIENT_CERTIFICATE_PASSWORD") },
          { ...common, sendCertificateChain: get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN") === "true" },
        );
    return { method: "service-principal", describe, credential };
  };

  const workloadIdentity = (): Candidate => {
    if (!tenantId || !clientId || !tokenFile) {
      const missing = [!tenantId && "AZURE_TENANT_ID", !clientId && "AZURE_CLIENT_ID", !tokenFile && "AZURE_FEDERATED_TOKEN_FILE"].filter(Boolean);
      return {
        method: "workload-identity",
        describe: "workload identity (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE)",
        credential: new UnavailableCredential(
          `workload identity needs ${missing.join(", ")}; in AKS the workload identity webhook sets them when the pod's service account is annotated with azure.workload.identity/client-id and the pod is labelled azure.workload.identity/use=true`,
        ),
      };
    }
    return {
      method: "workload-identity",
      describe: `workload identity ${clientId} in tenant ${tenantId} (from AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE=${tokenFile}, authority ${authorityHost})`,
      credential: new WorkloadIdentityCredential({ ...common, tenantId, clientId, tokenFilePath: tokenFile }),
    };
  };

  const managedIdentity = (): Candidate => {
    // As inside DefaultAzureCredential: probe IMDS briefly first, so a machine without managed identity fails fast
    // instead of retrying for half a minute. `sendProbeRequest` is what DefaultAzureCredential passes internally.
    const options: ManagedIdentityCredentialClientIdOptions & { sendProbeRequest: boolean } = {
      ...(clientId ? { clientId } : {}),
      sendProbeRequest: true,
      retryOptions: { maxRetries: 5, retryDelayInMs: 800 },
      ...pipeline("the managed identity endpoint"),
    };
    return {
      method: "managed-identity",
      describe: clientId ? `user-assigned managed identity ${clientId} (AZURE_CLIENT_ID)` : "system-assigned managed identity",
      credential: new ManagedIdentityCredential(options),
    };
  };

  const azureCli = (): Candidate => ({
    method: "azure-cli",
    describe: "Azure CLI login (az login)",
    credential: new AzureCliCredential(tenantId ? { tenantId } : {}),
  });

  if (secret && (!tenantId || !clientId)) {
    logger.warn({ missing: [!tenantId && "AZURE_TENANT_ID", !clientId && "AZURE_CLIENT_ID"].filter(Boolean) }, "AZURE_CLIENT_SECRET is set but the service principal is incomplete; not using it");
  }

  const spConfigured = Boolean(tenantId && clientId && (secret || certPath));
  const wiConfigured = Boolean(tenantId && clientId && tokenFile);
  let candidates: Candidate[];
  if (spConfigured && isAllowed("service-principal")) candidates = [servicePrincipal()];
  else if (wiConfigured && isAllowed("workload-identity")) candidates = [workloadIdentity()];
  else {
    const fallback: Array<[IdentityMethod, () => Candidate]> = allowed
      ? [["service-principal", servicePrincipal], ["workload-identity", workloadIdentity], ["managed-identity", managedIdentity], ["azure-cli", azureCli]]
      : [["managed-identity", managedIdentity], ["azure-cli", azureCli]];
    candidates = fallback.filter(([m]) => isAllowed(m)).map(([, make]) => make());
  }

  let used: Candidate | undefined;
  const recorded = candidates.map((c) => new RecordingCredential(c, (x) => (used = x)));
  const inner: TokenCredential = sharedTokens(recorded.length === 1 ? recorded[0]! : new ChainedTokenCredential(...recorded));

  const toAuthError = (err: unknown): AmlcertError => {
    if (err instanceof AmlcertError) return err;
    let message: string;
    if (candidates.length === 1) {
      const c = candidates[0]!;
      message = `Azure sign-in with ${c.describe} failed: ${summarize(err)}`;
    } else {
      const nested = (err as { errors?: unknown[] }).errors;
      const reasons = Array.isArray(nested) && nested.length === candidates.length ? nested.map(summarize) : candidates.map(() => summarize(err));
      message =
        `no Azure identity could sign in. Tried ${candidates.map((c, i) => `${c.describe}: ${reasons[i]}`).join("; ")}. ` +
        "Configure workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE; set by the AKS workload identity webhook) " +
        "or a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH)";
    }
    return new AmlcertError("AZURE_AUTH", "preflight", message, {
      cause: err,
      details: { methods: candidates.map((c) => c.method), authorityHost },
    });
  };

  const credential: TokenCredential = {
    async getToken(scopes, options) {
      seen.timeout = undefined;
      try {
        return await inner.getToken(scopes, options);
      } catch (err) {
        const e = toAuthError(err);
        const timeout = timeoutSeen();
        if (timeout === undefined || e.message.includes(timeout.message)) throw e;
        throw new AmlcertError(e.code, e.stage, `${e.message} (${timeout.message})`, { cause: e.cause, details: { ...e.details, timeout: true } });
      }
    },
  };

  logger.debug(
    { candidates: candidates.map((c) => c.method), authorityHost, instanceDiscovery: !disableInstanceDiscovery },
    "Azure credential configured",
  );

  return {
    credential,
    candidates: candidates.map((c) => c.method),
    authorityHost,
    async identity() {
      const token = await credential.getToken(cloud.tokenScope);
      if (!token) throw toAuthError(new Error(`no token was returned for ${cloud.tokenScope}`));
      const claims = decodeTokenClaims(token.token);
      const str = (k: string) => (typeof claims[k] === "string" ? (claims[k] as string) : undefined);
      const method = used?.method ?? candidates[0]!.method;
      const id: AzureIdentity = {
        method,
        clientId: str("appid") ?? str("azp"),
        objectId: str("oid"),
        tenantId: str("tid"),
      };
      logger.info({ identity: id, label: METHOD_LABEL[method] }, "signed in to Azure");
      return id;
    },
  };
}
