/**
 * The renewal use case. `renewTarget` tells the whole story for one endpoint:
 *
 *   preflight  read the extension (type, insecure mode, current sslSecret), the secret it names and azureml-fe
 *   plan       decide, with a named reason, whether to renew (pure: ./plan.ts)
 *   dns check  does the FQDN resolve to azureml-fe? (a warning before issuing; DNS may be managed elsewhere)
 *   issue      fresh key, ACME DNS-01 through Azure DNS (./dns-solver.ts), full chain
 *   validate   key matches, chain ordered and complete, names covered, newer than what is in place
 *   store      Opaque secret cert.pem + key.pem, labelled and annotated (a new versioned name by default)
 *   extension  PATCH configurationSettings sslSecret, scoringFe.sslSecret, sslCname; wait for the operation
 *   verify     the FQDN resolves to azureml-fe; azureml-fe serves the new serial over TLS 1.2
 *   prune      only after both checks pass: remove older secret versions, keeping `keepPrevious`
 *
 * Nothing before `store` writes anything but our own TXT values (always removed again). A failure up to and
 * including `extension` leaves the previous certificate in place and served.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { AmlcertError, ExitCode, atStage, type Stage } from "../errors.js";
import { describeProblem, inspectPair, validateNewPair, type CertificateInfo } from "../certs/certificate.js";
import type {
  AcmeIssuer,
  Clock,
  DnsChallengeSolver,
  DnsLookup,
  DnsZone,
  ExtensionClient,
  ExtensionState,
  KubeCluster,
  SecretWrite,
  StoredSecret,
  TlsProbe,
} from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { planRenewal, renewalTime, type PlanDecision } from "./plan.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../labels.js";
import { normalizeName as norm } from "../dns-check/names.js";

export const AZUREML_EXTENSION_TYPE = "Microsoft.AzureML.Kubernetes";
export const AZUREML_FE_SERVICE = "azureml-fe";
export { LABEL_MANAGED_BY };
export const LABEL_SECRET_BASE = "amlcert.io/secret-base";
export const LABEL_FQDN_HASH = "amlcert.io/fqdn-hash";
export const ANNOTATION = {
  fqdn: "amlcert.io/fqdn",
  names: "amlcert.io/names",
  serial: "amlcert.io/serial",
  notBefore: "amlcert.io/not-before",
  notAfter: "amlcert.io/not-after",
  fingerprint: "amlcert.io/sha256-fingerprint",
  issuer: "amlcert.io/issuer",
  /** "pending" until an extension update pointing at this secret succeeded, then "done" */
  rollout: "amlcert.io/rollout",
  /** extension updates that failed for this secret */
  rolloutFailures: "amlcert.io/rollout-failures",
} as const;
/** A stored certificate whose rollout failed this often is not tried again (the extension may reject it). */
export const MAX_ROLLOUT_FAILURES = 3;

export interface RolloutState {
  state: "pending" | "done";
  failures: number;
}
/** Protected settings that carry PEM files; when present they take precedence over sslSecret. */
const PROTECTED_PEM_KEYS = ["scoringFe.sslCert", "scoringFe.sslKey", "sslCertPemFile", "sslKeyPemFile"];

/** Mutual exclusion between runs on one cluster (a Kubernetes Lease). */
export interface RunLock {
  acquire(): Promise<boolean>;
  release(): Promise<void>;
}

export interface RenewDeps {
  kube: KubeCluster;
  /** taken before anything is read, so the plan is made on the state no other run is changing */
  lock?: RunLock;
  extension: ExtensionClient;
  zone: DnsZone;
  lookup: DnsLookup;
  nameServersOf: (zone: DnsZone) => Promise<string[]>;
  acme: AcmeIssuer;
  solver: DnsChallengeSolver;
  tlsProbe: TlsProbe;
  generateKey: () => Promise<string>;
  clock: Clock;
  logger: Logger;
}

export interface RenewSettings {
  fqdn: string;
  /** fqdn first, then extra SANs */
  names: string[];
  secretName: string;
  secretMode: "versioned" | "fixed";
  keepPrevious: number;
  /** the configured certificate key type (acme.keyType): a stored certificate of another type is not reused */
  keyType?: string;
  renewBeforeMs?: number;
  force: boolean;
  expectedAddress?: string;
  /** TLS check target; host defaults to the expected address */
  probe: { host?: string; port: number };
  manageRecord: boolean;
  recordTtlSeconds: number;
  /** the "system resolver" check; undefined = the system's own */
  resolvers?: string[];
  verifyTimeoutMs: number;
  verifyIntervalMs: number;
}

export interface DnsCheck {
  ok: boolean;
  expected: string[];
  authoritative: string[];
  system: string[];
  problems: string[];
}

export interface TargetResult {
  fqdn: string;
  action: "renewed" | "none" | "skipped" | "failed";
  reason: string;
  serial?: string;
  notAfter?: string;
  secret?: string;
  extensionUpdated: boolean;
  dnsOk: boolean;
  servingOk: boolean;
  durationMs: number;
  error?: { code: string; stage: Stage; message: string };
}

export interface Inspection {
  extension: ExtensionState;
  currentSecretName?: string;
  current?: StoredSecret;
  decision: PlanDecision;
  ingress?: { type: string; ips: string[]; hostnames: string[]; clusterIP?: string };
  expected: string[];
  warnings: string[];
}

const text = (s: StoredSecret | undefined, key: string) => s?.data[key]?.toString("utf8");

function stage<T>(name: Stage, run: () => Promise<T>): Promise<T> {
  return run().catch((err: unknown) => {
    throw atStage(err, name);
  });
}

/** `<base>-<yyyymmdd>-<last 8 hex of the serial>`: sortable by day, unique per certificate. */
export function versionedSecretName(base: string, leaf: CertificateInfo): string {
  const day = leaf.notBefore.toISOString().slice(0, 10).replace(/-/g, "");
  return `${base}-${day}-${leaf.serialNumber.toLowerCase().slice(-8)}`;
}

export function secretFor(
  name: string,
  base: string,
  fqdn: string,
  names: string[],
  chainPem: string,
  keyPem: string,
  leaf: CertificateInfo,
  rollout: RolloutState = { state: "pending", failures: 0 },
): SecretWrite {
  return {
    name,
    data: { "cert.pem": Buffer.from(chainPem), "key.pem": Buffer.from(keyPem) },
    labels: {
      [LABEL_MANAGED_BY]: MANAGED_BY,
      [LABEL_SECRET_BASE]: base,
      [LABEL_FQDN_HASH]: createHash("sha256").update(fqdn).digest("hex").slice(0, 16),
    },
    annotations: {
      [ANNOTATION.fqdn]: fqdn,
      [ANNOTATION.names]: names.join(","),
      [ANNOTATION.serial]: leaf.serialNumber,
      [ANNOTATION.notBefore]: leaf.notBefore.toISOString(),
      [ANNOTATION.notAfter]: leaf.notAfter.toISOString(),
      [ANNOTATION.fingerprint]: leaf.fingerprint256,
      [ANNOTATION.issuer]: leaf.issuer,
      [ANNOTATION.rollout]: rollout.state,
      [ANNOTATION.rolloutFailures]: String(rollout.failures),
    },
  };
}

/** Read-only: the extension, the secret it points at, azureml-fe, and the renewal decision. Used by plan and renew. */
export async function inspectTarget(deps: RenewDeps, s: RenewSettings): Promise<Inspection> {
  const warnings: string[] = [];
  const extension = await stage("preflight", () => deps.extension.get());
  if (extension.extensionType.toLowerCase() !== AZUREML_EXTENSION_TYPE.toLowerCase()) {
    throw new AmlcertError("EXTENSION_WRONG_TYPE", "preflight", `extension type is ${extension.extensionType}, not ${AZUREML_EXTENSION_TYPE}; check extension.name`);
  }
  if ((extension.configurationSettings.allowInsecureConnections ?? "").toLowerCase() === "true") {
    throw new AmlcertError(
      "EXTENSION_INSECURE",
      "preflight",
      "the extension has allowInsecureConnections=True, which turns TLS off; amlcert will not turn TLS on behind your back. " +
        "Set allowInsecureConnections=False (az k8s-extension update --config allowInsecureConnections=False) and run again",
    );
  }
  const pemKeys = extension.protectedSettingKeys.filter((k) => PROTECTED_PEM_KEYS.includes(k));
  if (pemKeys.length > 0) {
    warnings.push(
      `the extension has protected PEM settings (${pemKeys.join(", ")}) which take precedence over sslSecret; ` +
        "remove them once (az k8s-extension update ... --config-protected with the PEM settings left out) or the new certificate will not be served",
    );
  }
  const currentSecretName = s.secretMode === "fixed" ? s.secretName : (extension.configurationSettings.sslSecret ?? extension.configurationSettings["scoringFe.sslSecret"]);
  const current = currentSecretName ? await stage("preflight", () => deps.kube.getSecret(currentSecretName)) : undefined;
  const ingress = await stage("preflight", () => deps.kube.getServiceIngress(AZUREML_FE_SERVICE));
  if (!ingress) warnings.push(`service ${AZUREML_FE_SERVICE} was not found in namespace azureml; is the extension installed with inference enabled?`);
  const expected = s.expectedAddress ? [s.expectedAddress] : [...(ingress?.ips ?? []), ...(ingress?.hostnames ?? [])];
  if (!s.expectedAddress && ingress && expected.length === 0) {
    warnings.push(`service ${AZUREML_FE_SERVICE} (type ${ingress.type}) has no load balancer ingress; set expectedAddress for nodePort/clusterIP setups`);
  }
  const decision = planRenewal({
    // a name that points at no secret is a missing secret (SecretMissing), not a secret with missing data
    stored: currentSecretName && current ? { secretName: currentSecretName, certPem: text(current, "cert.pem"), keyPem: text(current, "key.pem") } : undefined,
    names: s.names,
    now: deps.clock.now(),
    renewBeforeMs: s.renewBeforeMs,
    force: s.force,
  });
  if (current === undefined && currentSecretName && decision.reason === "SecretMissing") {
    decision.message = `secret ${currentSecretName} ${s.secretMode === "fixed" ? "(secretName, fixed mode)" : "named by sslSecret"} does not exist`;
  }
  return { extension, currentSecretName, current, decision, ingress, expected, warnings };
}

/** Does the FQDN resolve to the expected addresses, through the zone's authoritative servers and the resolver? */
export async function checkDns(deps: RenewDeps, s: RenewSettings, expected: string[]): Promise<DnsCheck> {
  const problems: string[] = [];
  const fqdn = norm(s.fqdn);
  let leavesZone = false;
  const resolveVia = async (label: string, servers: string[] | undefined) => {
    try {
      const r = await deps.lookup.resolve(s.fqdn, servers);
      return [...r.addresses, ...r.cnames];
    } catch (err) {
      // The zone's own servers refuse a CNAME hop outside the zone (e.g. to *.cloudapp.azure.com): that is no
      // mismatch, it only means the rest of the chain is checked through the resolver.
      const e = err as { code?: string; query?: string };
      if (servers !== undefined && e.code === "EREFUSED" && e.query !== undefined && e.query !== fqdn) {
        leavesZone = true;
        return [];
      }
      problems.push(`${label}: ${(err as Error).message}`);
      return [];
    }
  };
  const servers = await deps.nameServersOf(deps.zone).catch((err: unknown) => {
    problems.push(`authoritative servers: ${(err as Error).message}`);
    return undefined;
  });
  const authoritative = servers ? await resolveVia("authoritative servers", servers) : [];
  const system = await resolveVia("resolver", s.resolvers);
  const want = new Set(expected.map(norm));
  const expectsHostname = [...want].some((w) => isIP(w) === 0);
  // Something found (an address, or a name on the CNAME chain) must be expected. When only addresses are expected,
  // every address found must be one of them: a stale extra A record would send some clients elsewhere.
  const matches = (found: string[]) =>
    found.some((f) => want.has(norm(f))) && (expectsHostname || found.filter((f) => isIP(f) !== 0).every((f) => want.has(norm(f))));
  if (expected.length === 0) problems.push("no expected address: azureml-fe has no ingress and expectedAddress is not set");
  else {
    if (servers && !leavesZone && !matches(authoritative)) problems.push(`authoritative servers answer ${authoritative.join(", ") || "nothing"} for ${s.fqdn}, expected ${expected.join(", ")}`);
    if (!matches(system)) problems.push(`the resolver answers ${system.join(", ") || "nothing"} for ${s.fqdn}, expected ${expected.join(", ")}`);
  }
  return { ok: problems.length === 0, expected, authoritative, system, problems };
}

/** manageRecord: point the FQDN's A record at azureml-fe. Best effort: DNS problems before issuing never block renewal. */
async function ensureRecord(deps: RenewDeps, s: RenewSettings, expected: string[]): Promise<void> {
  const warn = (msg: string, err?: unknown) => deps.logger.warn({ stage: "preflight", fqdn: s.fqdn, err }, msg);
  const ips = expected.filter((e) => isIP(e) === 4);
  if (ips.length === 0) return warn("manageRecord is on but there is no IPv4 address to point the A record at");
  try {
    const cname = await deps.zone.getCname(s.fqdn);
    if (cname) return warn(`manageRecord is on but ${s.fqdn} is a CNAME to ${cname}; amlcert does not replace a CNAME with an A record`);
    const outcome = await deps.zone.upsertA(s.fqdn, ips, s.recordTtlSeconds);
    deps.logger.info({ stage: "preflight", fqdn: s.fqdn, addresses: ips, outcome }, "A record managed");
  } catch (err) {
    warn("manageRecord: could not update the A record", err);
  }
}

/** The likely cause when azureml-fe keeps serving another certificate. */
function servingHint(s: RenewSettings, extensionUpdated: boolean): string {
  return s.secretMode === "fixed" && !extensionUpdated
    ? "In fixed-name mode the extension PATCH changed nothing, so azureml-fe was not rolled; it does not reload a secret changed in place. Use secretMode: versioned."
    : "If the old certificate keeps being served, the extension's protected settings scoringFe.sslCert/scoringFe.sslKey take precedence over sslSecret and must be removed once.";
}

/** Poll azureml-fe until it serves `serial` (pods roll), within the bound. */
async function waitForServing(deps: RenewDeps, s: RenewSettings, host: string, serial: string, hint: string): Promise<void> {
  const started = deps.clock.now().getTime();
  // a second bound that does not depend on the clock advancing
  const maxAttempts = Math.ceil(s.verifyTimeoutMs / Math.max(1, s.verifyIntervalMs)) + 1;
  let last = "no answer";
  let reached = false;
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await deps.tlsProbe.probe({ host, port: s.probe.port, servername: s.fqdn });
      reached = true;
      if (r.serialNumber.toUpperCase() === serial.toUpperCase() && r.authorized) {
        deps.logger.info({ stage: "verify-tls", fqdn: s.fqdn, serial, protocol: r.protocol, attempts: attempt }, "azureml-fe serves the new certificate and the chain validates");
        return;
      }
      last = r.serialNumber.toUpperCase() === serial.toUpperCase() ? `the new certificate is served but does not validate: ${r.authorizationError}` : `serial ${r.serialNumber || "(unverified)"} is served${r.authorized ? "" : ` (${r.authorizationError})`}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (deps.clock.now().getTime() - started >= s.verifyTimeoutMs || attempt >= maxAttempts) break;
    await deps.clock.sleep(s.verifyIntervalMs);
  }
  if (!reached) {
    throw new AmlcertError(
      "TLS_PROBE_FAILED",
      "verify-tls",
      `no TLS connection to azureml-fe at ${host}:${s.probe.port} (SNI ${s.fqdn}) within ${Math.round(s.verifyTimeoutMs / 1000)}s: ${last}. Check probeAddress / verify.port and that amlcert can reach azureml-fe`,
    );
  }
  throw new AmlcertError(
    "TLS_OLD_CERT_SERVED",
    "verify-tls",
    `azureml-fe at ${host}:${s.probe.port} (SNI ${s.fqdn}) does not serve the certificate ${serial} after ${Math.round(s.verifyTimeoutMs / 1000)}s: ${last}. ${hint}`,
  );
}

/**
 * The bar a new certificate must clear: it must expire later than the certificate in place when that one is
 * sound (due, expired or forced, but a working pair). A broken pair in place (wrong key, names, chain) sets no bar:
 * anything valid is better than it, even a 90-day certificate replacing a broken 1-year one.
 */
function goodCurrentNotAfter(decision: PlanDecision): Date | undefined {
  return decision.currentSound ? decision.current?.notAfter : undefined;
}

/** In versioned mode: a stored, valid, unreferenced certificate newer than the current one (from a run whose rollout failed). */
async function findPending(
  deps: RenewDeps,
  s: RenewSettings,
  inspection: Inspection,
): Promise<{ name: string; chainPem: string; keyPem: string; leaf: CertificateInfo; failures: number } | undefined> {
  if (s.secretMode !== "versioned" || s.force) return undefined;
  const candidates = await deps.kube.listSecrets(`${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_SECRET_BASE}=${s.secretName}`);
  const now = deps.clock.now();
  const currentNotAfter = goodCurrentNotAfter(inspection.decision)?.getTime() ?? 0;
  let best: { name: string; chainPem: string; keyPem: string; leaf: CertificateInfo; failures: number } | undefined;
  for (const c of candidates) {
    if (c.name === inspection.currentSecretName) continue;
    // never a version that was rolled out before (a rollback target) or that the extension keeps rejecting
    if (c.annotations[ANNOTATION.rollout] !== "pending" || Number(c.annotations[ANNOTATION.rolloutFailures] ?? "0") >= MAX_ROLLOUT_FAILURES) continue;
    const chainPem = text(c, "cert.pem") ?? "";
    const keyPem = text(c, "key.pem") ?? "";
    const r = inspectPair(chainPem, keyPem, s.names);
    if (!r.leaf || r.problems.length > 0) continue;
    if (s.keyType !== undefined && r.leaf.keyType !== s.keyType) continue;
    if (r.leaf.notAfter.getTime() <= currentNotAfter) continue;
    if (now.getTime() >= renewalTime(r.leaf.notBefore, r.leaf.notAfter, s.renewBeforeMs).getTime()) continue;
    if (!best || r.leaf.notAfter > best.leaf.notAfter) best = { name: c.name, chainPem, keyPem, leaf: r.leaf, failures: Number(c.annotations[ANNOTATION.rolloutFailures] ?? "0") };
  }
  return best;
}

async function prune(deps: RenewDeps, s: RenewSettings, keep: string[]): Promise<void> {
  const managed = await deps.kube.listSecrets(`${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_SECRET_BASE}=${s.secretName}`);
  const older = managed
    .filter((m) => !keep.includes(m.name))
    .sort((a, b) => (b.annotations[ANNOTATION.notAfter] ?? "").localeCompare(a.annotations[ANNOTATION.notAfter] ?? ""));
  const previous = keep.slice(1).filter((k) => managed.some((m) => m.name === k)).length;
  const toDelete = older.slice(Math.max(0, s.keepPrevious - previous));
  for (const m of toDelete) {
    await deps.kube.deleteSecret(m.name);
    deps.logger.info({ stage: "prune", fqdn: s.fqdn, secret: m.name }, "old secret version deleted");
  }
}

/** Record a version's rollout state. Best effort: it only decides whether a later run may reuse the version. */
async function recordRollout(deps: RenewDeps, log: Logger, secret: SecretWrite, rollout: RolloutState): Promise<void> {
  const annotations = { ...secret.annotations, [ANNOTATION.rollout]: rollout.state, [ANNOTATION.rolloutFailures]: String(rollout.failures) };
  await deps.kube
    .writeSecret({ ...secret, annotations })
    .catch((e: unknown) => log.warn({ stage: "extension", secret: secret.name, err: e }, "could not record the rollout state on the secret"));
}

/**
 * Nothing to renew: the certificate in place is fine, but is it what azureml-fe serves? A rollout that did not take
 * (a failed or timed-out extension operation, protected PEM settings, fixed mode without a reload) must not become a
 * quiet exit 0. An extension whose last operation Failed or was Canceled is updated again first.
 */
async function confirmInPlace(
  deps: RenewDeps,
  s: RenewSettings,
  inspection: Inspection,
  current: CertificateInfo,
  probeHost: string | undefined,
  result: TargetResult,
  log: Logger,
): Promise<void> {
  const secretName = inspection.currentSecretName!;
  Object.assign(result, { serial: current.serialNumber, notAfter: current.notAfter.toISOString(), secret: secretName });
  const state = inspection.extension.provisioningState ?? "";
  if (/^(failed|canceled)$/i.test(state)) {
    log.warn({ stage: "extension", provisioningState: state }, "the extension's last operation did not succeed; updating it again");
    const { changed } = await stage("extension", () => deps.extension.updateSettings({ sslSecret: secretName, "scoringFe.sslSecret": secretName, sslCname: s.fqdn }));
    result.extensionUpdated = changed;
    const held = inspection.current;
    if (held && held.annotations[ANNOTATION.rollout] === "pending") {
      await recordRollout(deps, log, held, { state: "done", failures: Number(held.annotations[ANNOTATION.rolloutFailures] ?? "0") });
    }
  }
  if (probeHost) {
    await waitForServing(deps, s, probeHost, current.serialNumber, servingHint(s, result.extensionUpdated));
    result.servingOk = true;
  }
}

export function emptyResult(fqdn: string): TargetResult {
  return { fqdn, action: "none", reason: "", extensionUpdated: false, dnsOk: false, servingOk: false, durationMs: 0 };
}

/**
 * Renew one target. `result` is filled in as the run goes, so that when this throws, the caller still knows what
 * was stored and rolled out (e.g. the new secret after a failed check).
 */
export async function renewTarget(deps: RenewDeps, s: RenewSettings, result: TargetResult = emptyResult(s.fqdn)): Promise<TargetResult> {
  const { logger, clock } = deps;
  const started = clock.now().getTime();
  const finish = () => {
    result.durationMs = clock.now().getTime() - started;
    return { ...result };
  };
  const log = logger.child({ fqdn: s.fqdn });

  // lock, then plan on fresh state: another run may have renewed while we waited
  if (deps.lock && !(await stage("preflight", () => deps.lock!.acquire()))) {
    log.warn({ stage: "preflight" }, "another amlcert run holds the lease on this cluster; skipping this target");
    result.action = "skipped";
    result.reason = "LockHeld";
    return finish();
  }
  try {
    return await renewLocked(deps, s, result, log, finish);
  } catch (err) {
    // Failures after rollout already recorded a VerificationFailed event on the new secret.
    if (err instanceof AmlcertError && err.exitCode === ExitCode.RenewalFailed) {
      await deps.kube.recordEvent({ secretName: result.secret ?? s.secretName, type: "Warning", reason: "RenewalFailed", message: `${err.stage}: ${err.message}` });
    }
    throw err;
  } finally {
    await deps.lock?.release();
  }
}

async function renewLocked(deps: RenewDeps, s: RenewSettings, result: TargetResult, log: Logger, finish: () => TargetResult): Promise<TargetResult> {
  const { clock } = deps;
  // preflight + plan
  const inspection = await inspectTarget(deps, s);
  for (const w of inspection.warnings) log.warn({ stage: "preflight" }, w);
  const { decision } = inspection;
  result.reason = decision.reason;
  log.info({ stage: "plan", reason: decision.reason, renewAt: decision.renewAt?.toISOString() }, decision.renew ? `renewal needed: ${decision.message}` : `nothing to do: ${decision.message}`);

  // DNS before issuing: a warning only (DNS may be managed elsewhere); with manageRecord, fix it.
  let dns = await checkDns(deps, s, inspection.expected);
  if (!dns.ok && s.manageRecord) {
    await ensureRecord(deps, s, inspection.expected);
    dns = await checkDns(deps, s, inspection.expected);
  }
  if (!dns.ok) for (const p of dns.problems) log.warn({ stage: "verify-dns" }, `DNS check before issuing: ${p}`);
  result.dnsOk = dns.ok;

  const probeHost = s.probe.host ?? inspection.expected[0];
  if (!decision.renew) {
    await confirmInPlace(deps, s, inspection, decision.current, probeHost, result, log);
    return finish();
  }

  // issue (or reuse a stored, validated certificate whose rollout failed earlier)
  const pending = await stage("store", () => findPending(deps, s, inspection));
  let chainPem: string;
  let keyPem: string;
  let secretName: string;
  let leaf: CertificateInfo;
  let writtenVersion: string | undefined;
  if (pending) {
    log.info({ stage: "store", secret: pending.name, serial: pending.leaf.serialNumber }, "reusing a stored certificate that was never rolled out");
    ({ chainPem, keyPem, leaf } = pending);
    secretName = pending.name;
  } else {
    keyPem = await stage("acme-order", () => deps.generateKey());
    const issued = await deps.acme.issue({ names: s.names, keyPem }, deps.solver);
    chainPem = issued.chainPem;

    // validate before any write
    const validation = validateNewPair(chainPem, keyPem, s.names, clock.now(), goodCurrentNotAfter(decision));
    if (!validation.leaf || validation.problems.length > 0) {
      const onlyNotNewer = validation.problems.every((p) => p.kind === "not-newer");
      throw new AmlcertError(onlyNotNewer ? "CERT_NOT_NEWER" : "CERT_INVALID", "validate", `the issued certificate was not written: ${validation.problems.map(describeProblem).join("; ")}`);
    }
    leaf = validation.leaf;
    log.info({ stage: "validate", serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString(), issuer: leaf.issuer }, "new certificate validated");

    // store
    secretName = s.secretMode === "versioned" ? versionedSecretName(s.secretName, leaf) : s.secretName;
    // fixed mode overwrites the secret in place: only if it is still what was planned on
    const expectedResourceVersion = s.secretMode === "fixed" ? inspection.current?.resourceVersion : undefined;
    const stored = await stage("store", () => deps.kube.writeSecret({ ...secretFor(secretName, s.secretName, s.fqdn, s.names, chainPem, keyPem, leaf), expectedResourceVersion }));
    writtenVersion = stored.resourceVersion;
    log.info({ stage: "store", secret: secretName, serial: leaf.serialNumber }, "secret written");
  }
  Object.assign(result, { serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString(), secret: secretName });
  const markRollout = (rollout: RolloutState) => recordRollout(deps, log, secretFor(secretName, s.secretName, s.fqdn, s.names, chainPem, keyPem, leaf), rollout);

  // roll out
  try {
    const { changed } = await stage("extension", () =>
      deps.extension.updateSettings({ sslSecret: secretName, "scoringFe.sslSecret": secretName, sslCname: s.fqdn }),
    );
    result.extensionUpdated = changed;
    log.info({ stage: "extension", secret: secretName, changed }, changed ? "extension updated" : "extension already pointed at this secret (no change)");
    await markRollout({ state: "done", failures: pending?.failures ?? 0 });
  } catch (err) {
    if (s.secretMode === "fixed" && inspection.current) {
      // Put the previous pair back (exactly, metadata too) so the secret azureml-fe reads holds the certificate in
      // place; only over our own write, never over someone else's.
      const prev = inspection.current;
      try {
        await deps.kube.writeSecret({ name: prev.name, data: prev.data, labels: prev.labels, annotations: prev.annotations, replaceMetadata: true, expectedResourceVersion: writtenVersion });
        log.warn({ stage: "extension", secret: prev.name }, "extension update failed; previous certificate restored in the secret");
      } catch (restoreErr) {
        const e = atStage(err, "extension");
        throw new AmlcertError(
          e.code,
          "extension",
          `${e.message}. The previous certificate could not be put back in secret ${prev.name} (${(restoreErr as Error).message}): the secret now holds the new certificate ${leaf.serialNumber}, which azureml-fe serves once it reloads`,
          { cause: err, details: e.details },
        );
      }
    } else if (s.secretMode === "versioned") {
      const failures = (pending?.failures ?? 0) + 1;
      await markRollout({ state: "pending", failures });
      log.warn(
        { stage: "extension", secret: secretName, failures },
        failures < MAX_ROLLOUT_FAILURES
          ? "the new certificate stays stored (unreferenced) and the next run tries to roll it out again"
          : `the rollout of this certificate failed ${failures} times; the next run issues a new one`,
      );
    }
    throw err;
  }

  // verify: both checks run, the first failure is reported; nothing is pruned unless both pass
  const hint = servingHint(s, result.extensionUpdated);
  const dnsAfter = await checkDns(deps, s, inspection.expected);
  result.dnsOk = dnsAfter.ok;
  let failure: AmlcertError | undefined;
  if (!dnsAfter.ok) failure = new AmlcertError("DNS_MISMATCH", "verify-dns", `${s.fqdn} does not resolve to azureml-fe: ${dnsAfter.problems.join("; ")}`);
  if (!probeHost) {
    failure ??= new AmlcertError("TLS_PROBE_FAILED", "verify-tls", "no address to probe: set probeAddress or expectedAddress");
  } else {
    try {
      await waitForServing(deps, s, probeHost, leaf.serialNumber, hint);
      result.servingOk = true;
    } catch (err) {
      failure ??= atStage(err, "verify-tls");
    }
  }
  const event = failure
    ? { type: "Warning" as const, reason: "VerificationFailed", message: failure.message }
    : { type: "Normal" as const, reason: "Renewed", message: `serial ${leaf.serialNumber}, valid until ${leaf.notAfter.toISOString()}, served by azureml-fe` };
  await deps.kube.recordEvent({ secretName, ...event });
  if (failure) throw failure;

  if (s.secretMode === "versioned") {
    const keep = [secretName, ...(inspection.currentSecretName && inspection.currentSecretName !== secretName ? [inspection.currentSecretName] : [])];
    await prune(deps, s, keep).catch((err: unknown) => log.warn({ stage: "prune", err }, "could not prune old secret versions (the renewal itself succeeded)"));
  }
  result.action = "renewed";
  return finish();
}
