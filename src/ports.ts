/**
 * The small interfaces amlcert owns for every external system. Each is implemented by exactly one adapter
 * module that imports the system's SDK (src/acme, src/azure-dns, src/kubernetes, src/extension, src/dns-check,
 * src/tls-probe); the use case (src/renewal/renew.ts) sees only these types, and unit tests fake them.
 */

/** ACME: one order for a set of names, answered with DNS-01. */
export interface DnsChallengeSolver {
  /** Publish `value` as a TXT value at `recordName` (e.g. `_acme-challenge.www.example.com`) and wait until the
   * zone's authoritative servers serve it. Returns an opaque handle for cleanup. */
  present(recordName: string, value: string, signal?: AbortSignal): Promise<PresentedTxt>;
  /** Remove exactly the value `present` added. Must be safe to call after a failed or partial `present`. */
  cleanup(handle: PresentedTxt): Promise<void>;
}

export interface PresentedTxt {
  /** the record that actually holds the value (after following a `_acme-challenge` CNAME) */
  recordFqdn: string;
  value: string;
  /** which zone adapter wrote it (to remove it again) */
  zone: string;
}

export interface IssueRequest {
  /** first name is the common name; all are SANs */
  names: string[];
  /** PKCS#8 PEM of the fresh certificate key */
  keyPem: string;
  /** RFC 9773: the certID of the certificate this order replaces (sent only when the CA has renewalInfo) */
  replaces?: string;
  /** the CA's certificate profile to order (one of the directory's meta.profiles) */
  profile?: string;
  /** the run's signal: aborts the request in flight and every wait of the order */
  signal?: AbortSignal;
}

/**
 * The CA's suggested renewal window for a certificate (RFC 9773, ACME Renewal Information), as its renewalInfo
 * resource answered it.
 */
export interface RenewalWindow {
  /** the certificate's certID (base64url AKI keyIdentifier "." base64url serial) */
  certId: string;
  start: Date;
  end: Date;
  explanationURL?: string;
  /** when the CA asks to be asked again (Retry-After); the answer is reused until then */
  refreshAfter?: Date;
}

export interface IssuedCertificate {
  /** full chain PEM: leaf first */
  chainPem: string;
}

/** What `doctor` learns of the CA without creating anything. */
export interface AcmeProbe {
  directory: string;
  /** "no-key": nothing stored yet; "missing": the stored key has no account at this CA */
  account: "exists" | "missing" | "no-key";
  /** the directory's meta.externalAccountRequired */
  externalAccountRequired: boolean;
}

export interface AcmeIssuer {
  /** Create the account if needed (or reuse the stored one), order, solve every authorization with `solver`,
   * finalize and download the full chain. Removes every TXT value it presented, on success and on failure. */
  issue(req: IssueRequest, solver: DnsChallengeSolver): Promise<IssuedCertificate>;
  /** Read the directory and look the stored account key up (onlyReturnExisting); never registers or saves a key. */
  probe?(): Promise<AcmeProbe>;
  /** The CA's renewal window for the leaf of `chainPem`, when its directory has renewalInfo (RFC 9773); undefined
   * when it has none, the certificate has no certID, or the CA did not answer (never throws: the lifetime rule holds). */
  renewalInfo?(chainPem: string, signal?: AbortSignal): Promise<RenewalWindow | undefined>;
  /** The directory's meta.profiles (name -> description), undefined when it offers none. */
  profiles?(signal?: AbortSignal): Promise<Record<string, string> | undefined>;
}

/** A certificate and its fresh key, as a source hands it over (not yet validated). */
export interface ObtainedCertificate {
  /** full chain PEM: leaf first */
  chainPem: string;
  /** PKCS#8 PEM, unencrypted */
  keyPem: string;
}

/**
 * How a certificate is obtained: ACME today (src/sources/acme-source.ts); a Key Vault certificate or an existing
 * Kubernetes TLS secret later. The use case only knows this port, not orders and solvers.
 */
export interface CertificateSource {
  /** a short name for logs, metrics and status, e.g. "acme" */
  readonly kind: string;
  obtain(req: { names: string[]; replaces?: string; profile?: string }, signal?: AbortSignal): Promise<ObtainedCertificate>;
  /** ACME Renewal Information for the certificate in place (C3): the CA's window, undefined when it has none. */
  renewalInfo?(chainPem: string, signal?: AbortSignal): Promise<RenewalWindow | undefined>;
  /** what an order brings (ACME): the configured profile and, when known, its certificates' lifetime */
  readonly profile?: { name: string; lifetimeMs?: number };
  /** Read-only checks of what an order would ask for (ACME: the profile is one the CA offers), run when a renewal is
   * planned, so `plan` reports a configuration the CA refuses (CONFIG_INVALID) before `renew` orders. */
  check?(signal?: AbortSignal): Promise<void>;
  /** Sources that hold a certificate someone else renews (Key Vault, a Kubernetes TLS secret): which one they hold
   * now, read without side effects, so the renewal decision can compare it with the one in place. ACME has none. */
  offer?(signal?: AbortSignal): Promise<SourceOffer>;
  /** where the certificate comes from, for plan, status, events and alerts, e.g. "keyVault https://kv.vault.azure.net/certificates/web" */
  readonly origin?: string;
}

/** The certificate a source holds now (its leaf), as `offer()` reads it. */
export interface SourceOffer {
  /** the source's own version identifier: the Key Vault certificate version, the secret's resourceVersion */
  version: string;
  serialNumber: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex (as CertificateInfo has it) */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
}

/** Azure DNS, for one zone. Names are absolute, lower case, without the trailing dot. */
export interface DnsZone {
  readonly zone: string;
  /** Append `value` to the TXT record set `fqdn` (creating it with If-None-Match: *, updating it with If-Match). */
  addTxtValue(fqdn: string, value: string, ttlSeconds: number): Promise<void>;
  /** Remove only `value`; delete the record set (If-Match) once it is empty. A missing record set is not an error. */
  removeTxtValue(fqdn: string, value: string): Promise<void>;
  /** The CNAME target of `fqdn` in this zone, if the zone holds a CNAME record set there. */
  getCname(fqdn: string): Promise<string | undefined>;
  /** Create or update the A record set `fqdn` to exactly `addresses`. */
  upsertA(fqdn: string, addresses: string[], ttlSeconds: number): Promise<"created" | "updated" | "unchanged">;
  /** The zone's name servers as ARM reports them (`properties.nameServers`), without trailing dots. */
  nameServers(): Promise<string[]>;
}

/** DNS queries on the wire (node:dns), against given servers (`host` or `host:port`) or the system resolver. */
export interface DnsLookup {
  /** TXT values at `name`, asking only `servers` (authoritative; no caching). Empty array for NXDOMAIN/NODATA. */
  txt(name: string, servers: string[]): Promise<string[]>;
  /** Follow CNAMEs from `name` and return the final A/AAAA addresses and the CNAME chain.
   * `servers` undefined means the system resolver. */
  resolve(name: string, servers?: string[]): Promise<{ addresses: string[]; cnames: string[] }>;
  /** IP addresses of a host name (for turning ARM's name server host names into query targets). */
  hostAddresses(host: string): Promise<string[]>;
  /** The NS record set of `name` as `servers` (or the system resolver) answer it: the delegation the world sees. */
  ns(name: string, servers?: string[]): Promise<string[]>;
}

/** Kubernetes secret as amlcert sees it. */
export interface StoredSecret {
  name: string;
  type: string;
  data: Record<string, Buffer>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  resourceVersion?: string;
  creationTimestamp?: string;
}

export interface SecretWrite {
  name: string;
  data: Record<string, Buffer>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Replace only if the secret is still at this resourceVersion (read when the run planned); otherwise fail with
   * KUBE_CONFLICT at once instead of retrying on fresh state. "" means: create only, the secret must not exist. */
  expectedResourceVersion?: string;
  /** Labels and annotations replace the secret's own instead of being merged into them (restoring a previous state). */
  replaceMetadata?: boolean;
}

/** Kubernetes, for one cluster (one kubeconfig context or in-cluster) and one namespace (`azureml`). */
export interface KubeCluster {
  getSecret(name: string): Promise<StoredSecret | undefined>;
  /** Create, or replace with optimistic concurrency (read resourceVersion, PUT, retry on 409 within a bound). */
  writeSecret(secret: SecretWrite): Promise<StoredSecret>;
  listSecrets(labelSelector: string): Promise<StoredSecret[]>;
  deleteSecret(name: string): Promise<void>;
  /** `status.loadBalancer.ingress` of a service (azureml-fe), plus its type. undefined when the service is missing. */
  getServiceIngress(name: string): Promise<{ type: string; ips: string[]; hostnames: string[]; clusterIP?: string } | undefined>;
  /** Record a Kubernetes Event about `secretName` (best effort: never throws). */
  recordEvent(e: { secretName: string; type: "Normal" | "Warning"; reason: string; message: string }): Promise<void>;
}

export interface ExtensionState {
  id?: string;
  extensionType: string;
  provisioningState?: string;
  configurationSettings: Record<string, string>;
  /** keys only: ARM never returns protected values */
  protectedSettingKeys: string[];
  /** what the extension reports of its health (ARM's `statuses` and `errorInfo`), e.g. "E40007 INVALID_SSL_SETTING: ..." */
  health?: string[];
}

/** The Azure ML cluster extension (Microsoft.KubernetesConfiguration/extensions). */
export interface ExtensionClient {
  get(): Promise<ExtensionState>;
  /** PATCH only `configurationSettings` with these keys; wait for the long-running operation (bounded).
   * Returns whether ARM reported a change (202 + operation) or none (200). Throws EXTENSION_LRO_FAILED when the
   * operation ends Failed/Canceled, and when ARM answers 200 (no update is done) while the extension's last operation
   * Failed or was Canceled: the settings are not in effect then (the message carries the extension's health). `signal`
   * stops the wait (ARM may still complete the operation; the next run reads the extension again). */
  updateSettings(settings: Record<string, string>, signal?: AbortSignal): Promise<{ changed: boolean; state: ExtensionState }>;
}

export interface TlsProbeResult {
  serialNumber: string;
  fingerprint256: string;
  protocol: string;
  /** chain verified against the configured trust store and the name matched */
  authorized: boolean;
  authorizationError?: string;
}

export interface TlsProbe {
  /** One TLS 1.2 handshake to host:port with SNI `servername`. */
  probe(target: { host: string; port: number; servername: string }): Promise<TlsProbeResult>;
}

/** Injectable time. */
export interface Clock {
  now(): Date;
  /** Resolve after `ms`; reject with the signal's reason (an AbortError) as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The reason an aborted wait rejects with, when the signal carries none. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("the operation was aborted", "AbortError");
}

/** A real-time wait of `ms` that rejects with the signal's reason as soon as `signal` aborts (no timer is left). */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const systemClock: Clock = { now: () => new Date(), sleep: abortableSleep };

/** Which external system a request went to, for the requests-by-status metric. */
export type RequestSystem = "acme" | "arm" | "entra" | "kubernetes" | "keyvault";
/** A retry an adapter is about to make (ARM, the Kubernetes API): what went wrong with the try, and the wait. The
 * composition root logs it. */
export interface RetryNotice {
  /** e.g. "PUT /subscriptions/…: ARM answered 429 TooManyRequests (Retry-After 1 s); retrying in 1.2 s (try 2 of 5)" */
  message: string;
  method: string;
  path: string;
  /** the try that failed (1 = the first) */
  attempt: number;
  attempts: number;
  waitMs: number;
  /** the status the server answered, or undefined when no answer came */
  status?: number;
  /** "timeout", or the connection error's code */
  error?: string;
  retryAfterMs?: number;
}

/** Told of every HTTP response (status code as a string) or transport failure ("error") an adapter sees. */
export type RequestObserver = (system: RequestSystem, status: string) => void;
