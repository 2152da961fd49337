/**
 * Azure Key Vault's data plane, read-only: a certificate (its current or a pinned version, with its policy) and the
 * certificate's backing secret (which carries the private key: PKCS#12 or PEM). The only module that imports
 * `@azure/keyvault-certificates` and `@azure/keyvault-secrets`, and it loads them on first use, so a run without a
 * Key Vault target never pays for them.
 *
 * Tokens: the SDK's challenge policy. Key Vault answers the first request with 401 and a bearer challenge naming
 * the tenant and the resource; the SDK asks the identity amlcert already uses for a token for that resource and
 * retries. Its challenge-resource check stays on (`disableChallengeResourceVerification` is never set): a vault
 * host that does not end in the challenge's resource host gets no token, so a look-alike endpoint cannot collect
 * a token for Key Vault.
 *
 * Errors become AmlcertError: 401 AZURE_AUTH, 403 AZURE_FORBIDDEN (naming the role to assign and its scope), 404
 * AZURE_NOT_FOUND, 429 AZURE_THROTTLED, anything else AZURE_ERROR; stage "preflight" (the caller re-stages).
 * Bounded: 30 s per try, 3 retries (the SDK's, exponential up to 10 s), and a Retry-After over 60 s ends the call
 * at once with AZURE_THROTTLED (the SDK alone would sleep as long as Key Vault asks).
 */
import type { TokenCredential } from "@azure/identity";
import type { CertificateClient, KeyVaultCertificateWithPolicy } from "@azure/keyvault-certificates";
import type { SecretClient } from "@azure/keyvault-secrets";
import { AmlcertError, type ErrorCode } from "../errors.js";
import type { RequestObserver } from "../ports.js";
import { observerClientOptions, retryAfterMs, type PolicyConfig } from "../azure/request-policy.js";

export interface KeyVaultCertificate {
  name: string;
  version: string;
  /** DER of the certificate (the leaf) */
  cer: Buffer;
  enabled: boolean;
  /** the policy's keyProperties.exportable, when the answer carried the policy */
  exportable?: boolean;
  /** the policy's secret content type: application/x-pkcs12 or application/x-pem-file */
  contentType?: string;
  /** the backing secret (same name and version as the certificate) */
  secretName: string;
  secretVersion: string;
}

export interface KeyVaultSecretValue {
  value: string;
  contentType?: string;
}

export interface KeyVault {
  readonly vaultUrl: string;
  /** the current version of certificate `name`, or `version` */
  getCertificate(name: string, version?: string, signal?: AbortSignal): Promise<KeyVaultCertificate>;
  /** a version of a secret (for a certificate: its backing secret, which holds the key) */
  getSecret(name: string, version: string, signal?: AbortSignal): Promise<KeyVaultSecretValue>;
}

export interface CreateKeyVaultOptions {
  vaultUrl: string;
  credential: TokenCredential;
  /** told the status of every Key Vault response (amlcert_requests_total{system="keyvault"}) */
  requests?: RequestObserver;
  /** per-request timeout (default 30 s); the SDK retries 408/429/5xx up to 3 times */
  timeoutMs?: number;
}

/** The longest Retry-After from Key Vault that a run waits (the SDK's own retry would wait any length). */
export const KEY_VAULT_MAX_RETRY_AFTER_MS = 60_000;

/** Key Vault throttled with a Retry-After longer than a run waits. */
class KeyVaultThrottledError extends Error {
  override readonly name = "KeyVaultThrottledError";
  constructor(
    readonly status: number,
    readonly retryAfterMs: number,
  ) {
    super(`Key Vault answered ${status} and asked to retry after ${Math.round(retryAfterMs / 1000)} s, longer than the ${KEY_VAULT_MAX_RETRY_AFTER_MS / 1000} s a run waits`);
  }
}

/** Below the SDK's retry: a 429/503 whose Retry-After exceeds the cap ends the call at once instead of sleeping. */
const retryAfterCap: PolicyConfig = {
  position: "perRetry",
  policy: {
    name: "amlcertKeyVaultRetryAfterCap",
    async sendRequest(request, next) {
      const response = await next(request);
      if (response.status === 429 || response.status === 503) {
        const ms = retryAfterMs((response as unknown as { headers: { get(name: string): string | undefined } }).headers);
        if (ms !== undefined && ms > KEY_VAULT_MAX_RETRY_AFTER_MS) throw new KeyVaultThrottledError(response.status, ms);
      }
      return response;
    },
  },
};

interface RestErrorLike extends Error {
  statusCode?: number;
  code?: string;
}
const isRestError = (err: unknown): err is RestErrorLike => err instanceof Error && err.name === "RestError";

/** The first line of Key Vault's message (403 answers list caller, action and resource over several lines). */
const firstLine = (m: string) => m.split(/\r?\n/)[0]!.trim();
const actionOf = (m: string) => /Action: '([^']+)'/.exec(m)?.[1];

export function createKeyVault(opts: CreateKeyVaultOptions): KeyVault {
  const vaultUrl = opts.vaultUrl.replace(/\/+$/, "");
  const timeout = opts.timeoutMs ?? 30_000;
  // the cap first: the observer below it still counts the 429 it ends on
  const clientOptions = {
    additionalPolicies: [retryAfterCap, ...(observerClientOptions("keyvault", opts.requests).additionalPolicies ?? [])],
    retryOptions: { maxRetries: 3, maxRetryDelayInMs: 10_000 },
  };
  let certificates: Promise<CertificateClient> | undefined;
  let secrets: Promise<SecretClient> | undefined;
  const certificateClient = () =>
    (certificates ??= import("@azure/keyvault-certificates").then(({ CertificateClient: C }) => new C(vaultUrl, opts.credential, clientOptions)));
  const secretClient = () => (secrets ??= import("@azure/keyvault-secrets").then(({ SecretClient: S }) => new S(vaultUrl, opts.credential, clientOptions)));

  const failure = (err: unknown, what: string, role: string): AmlcertError => {
    if (err instanceof AmlcertError) return err;
    if (err instanceof KeyVaultThrottledError) {
      return new AmlcertError("AZURE_THROTTLED", "preflight", `reading ${what}: ${err.message}`, {
        cause: err,
        details: { status: err.status, retryAfterMs: err.retryAfterMs, vaultUrl },
      });
    }
    if (!isRestError(err)) {
      const message = err instanceof Error ? err.message : String(err);
      return new AmlcertError("AZURE_ERROR", "preflight", `Key Vault ${vaultUrl}: reading ${what} failed: ${message}`, { cause: err });
    }
    const status = err.statusCode;
    const message = err.message ?? "";
    const by: Record<number, ErrorCode> = { 401: "AZURE_AUTH", 403: "AZURE_FORBIDDEN", 404: "AZURE_NOT_FOUND", 429: "AZURE_THROTTLED" };
    const code = (status !== undefined ? by[status] : undefined) ?? "AZURE_ERROR";
    const details = { status, keyVaultCode: err.code, vaultUrl };
    if (status === 403) {
      const action = actionOf(message);
      return new AmlcertError(
        code,
        "preflight",
        `Key Vault ${vaultUrl} refused reading ${what} (403 ${err.code ?? "Forbidden"}${action ? `, action ${action}` : ""}): ${firstLine(message)} ` +
          `Assign the identity amlcert uses ${role}`,
        { cause: err, details },
      );
    }
    if (status === 404) return new AmlcertError(code, "preflight", `Key Vault ${vaultUrl} has no ${what} (404 ${err.code ?? "NotFound"})`, { cause: err, details });
    return new AmlcertError(code, "preflight", `Key Vault ${vaultUrl}: reading ${what} failed (${status ?? "no response"} ${err.code ?? ""}): ${firstLine(message)}`, { cause: err, details });
  };

  return {
    vaultUrl,
    async getCertificate(name, version, signal) {
      const what = `certificate ${name}${version ? ` version ${version}` : ""}`;
      const role = `"Key Vault Reader" (Microsoft.KeyVault/vaults/certificates/read) on the certificate (${vaultUrl}/certificates/${name}) or the vault`;
      try {
        const client = await certificateClient();
        const options = { abortSignal: signal, requestOptions: { timeout } };
        // a pinned version comes without its policy (the SDK's getCertificateVersion); the secret tells then
        const c: KeyVaultCertificateWithPolicy = version ? await client.getCertificateVersion(name, version, options) : await client.getCertificate(name, options);
        const policy = c.policy;
        const sid = c.secretId ?? `${vaultUrl}/secrets/${name}/${c.properties.version ?? ""}`;
        const [secretName, secretVersion] = new URL(sid).pathname.split("/").filter(Boolean).slice(1);
        if (!c.cer || !c.properties.version || !secretName || !secretVersion) {
          throw new AmlcertError("AZURE_ERROR", "preflight", `Key Vault ${vaultUrl}: ${what} came without its certificate, version or secret id`);
        }
        return {
          name,
          version: c.properties.version,
          cer: Buffer.from(c.cer),
          enabled: c.properties.enabled !== false,
          ...(policy?.exportable !== undefined ? { exportable: policy.exportable } : {}),
          ...(policy?.contentType ? { contentType: policy.contentType } : {}),
          secretName,
          secretVersion,
        };
      } catch (err) {
        throw failure(err, what, role);
      }
    },
    async getSecret(name, version, signal) {
      const what = `secret ${name} version ${version} (the certificate's key)`;
      const role = `"Key Vault Secrets User" (Microsoft.KeyVault/vaults/secrets/getSecret/action) on the secret (${vaultUrl}/secrets/${name}) or the vault`;
      try {
        const client = await secretClient();
        const s = await client.getSecret(name, { version, abortSignal: signal, requestOptions: { timeout } });
        if (s.value === undefined) throw new AmlcertError("AZURE_ERROR", "preflight", `Key Vault ${vaultUrl}: ${what} came without a value`);
        return { value: s.value, ...(s.properties.contentType ? { contentType: s.properties.contentType } : {}) };
      } catch (err) {
        throw failure(err, what, role);
      }
    },
  };
}
