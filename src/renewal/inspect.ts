/** Read-only: the extension, the secret it points at, azureml-fe, and the renewal decision. Used by plan, renew and status. */
import { AmlcertError, atStage } from "../errors.js";
import type { ExtensionState, RenewalWindow, StoredSecret } from "../ports.js";
import { inspectPair } from "../certs/certificate.js";
import { planRenewal, type PlanDecision } from "./plan.js";
import { followSource } from "./source-decision.js";
import { inPlaceRollout, operationFailed, resolveSlots, type SlotView } from "./policies.js";
import { annotatedNotAfter, MAX_ROLLOUT_FAILURES, otherSlot, rolloutOf, slotNames, versionsSelector } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";

export const AZUREML_EXTENSION_TYPE = "Microsoft.AzureML.Kubernetes";
export const AZUREML_FE_SERVICE = "azureml-fe";
/** Protected settings that carry PEM files; when present they take precedence over sslSecret. */
export const PROTECTED_PEM_KEYS = ["scoringFe.sslCert", "scoringFe.sslKey", "sslCertPemFile", "sslKeyPemFile"];

export interface Ingress {
  type: string;
  ips: string[];
  hostnames: string[];
  clusterIP?: string;
}

export interface Inspection {
  extension: ExtensionState;
  /** the secret azureml-fe is served from (slots mode: see policies.ts resolveSlots) */
  currentSecretName?: string;
  current?: StoredSecret;
  /** the secret the extension's settings name: scoringFe.sslSecret, else sslSecret */
  namedSecretName?: string;
  /** slots mode: which slot is served, which one a new certificate goes to, and both slots as read */
  slots?: SlotView & { secrets: Record<string, StoredSecret | undefined> };
  /** a version to roll out again: its rollout failed (versioned: the one the extension names; slots: the failed slot) */
  pending?: StoredSecret;
  /** versioned mode, the extension names a version whose operation failed: the newest version rolled out before (what
   * Helm kept serving), to point the extension back at before the failed one is rolled out again */
  rollbackSecretName?: string;
  decision: PlanDecision;
  ingress?: Ingress;
  /** what the FQDN must resolve to: expectedAddress, or azureml-fe's ingress */
  expected: string[];
  /** the version the extension names is valid but its rollout failed: roll it out again instead of ordering */
  pendingRollout: boolean;
  warnings: string[];
  /** renew --enable-tls on an extension with TLS off: the rollout also sets allowInsecureConnections=False */
  enablesTls: boolean;
  /** RFC 9773: the CA's renewal window for the certificate in place (it set decision.renewAt) */
  renewalWindow?: RenewalWindow;
  /** RFC 9773: the certID a new order replaces (the certificate in place, when the CA has a window for it) */
  replaces?: string;
}

const text = (s: StoredSecret | undefined, key: string) => s?.data[key]?.toString("utf8");
const read = <T>(run: () => Promise<T>) => run().catch((err: unknown) => {
  throw atStage(err, "preflight");
});

/** An extension operation is running: amlcert waits for it (bounded) before it plans, orders or stores anything. */
export const extensionBusy = (provisioningState: string | undefined) => /^(updating|creating|deleting|accepted|running)$/i.test(provisioningState ?? "");

/**
 * The read-only checks that refuse a target before anything is written (no Lease, no Event, no history): the
 * extension is the Azure ML one and has TLS on. Returns the extension as read.
 */
export async function preflightExtension(deps: RenewDeps, s?: Pick<RenewSettings, "enableTls">): Promise<ExtensionState> {
  const extension = await read(() => deps.extension.get());
  refuseUnlessSecure(extension, s?.enableTls === true);
  return extension;
}

const BUSY_TIMEOUT_MS = 10 * 60_000;
const BUSY_INTERVAL_MS = 15_000;

/**
 * An extension with an operation running (someone else's update, an upgrade) is waited for, bounded by
 * extensionBusyTimeoutMs (reads through the Clock, every extensionBusyIntervalMs; `signal` ends the wait), before
 * anything is ordered or stored: a PATCH now would be refused (409) or race the other operation. false: still busy.
 */
export async function waitWhileBusy(deps: RenewDeps, s: RenewSettings, extension: ExtensionState, signal?: AbortSignal): Promise<boolean> {
  if (!extensionBusy(extension.provisioningState)) return true;
  const timeout = s.extensionBusyTimeoutMs ?? BUSY_TIMEOUT_MS;
  const interval = Math.max(1, s.extensionBusyIntervalMs ?? BUSY_INTERVAL_MS);
  const started = deps.clock.now().getTime();
  const maxReads = Math.ceil(timeout / interval);
  let state = extension.provisioningState;
  deps.logger.warn({ stage: "preflight", fqdn: s.fqdn, provisioningState: state }, `the extension is busy (${state}); waiting up to ${Math.round(timeout / 1000)} s for its operation to end`);
  for (let reads = 0; reads < maxReads && deps.clock.now().getTime() - started < timeout; reads++) {
    await deps.clock.sleep(interval, signal);
    state = (await read(() => deps.extension.get())).provisioningState;
    if (!extensionBusy(state)) return true;
  }
  deps.logger.warn({ stage: "preflight", fqdn: s.fqdn, provisioningState: state }, `the extension is still busy (${state}); skipping this run (ExtensionBusy), nothing was ordered or stored`);
  return false;
}

/** Which secret the extension names: scoringFe.sslSecret (what the chart reads), else sslSecret; and whether the two disagree. */
export function namedSecret(extension: ExtensionState): { name?: string; disagree?: { sslSecret: string; scoringFe: string } } {
  const cs = extension.configurationSettings;
  const scoringFe = cs["scoringFe.sslSecret"];
  const ssl = cs.sslSecret;
  const name = scoringFe || ssl || undefined;
  return { ...(name ? { name } : {}), ...(scoringFe && ssl && scoringFe !== ssl ? { disagree: { sslSecret: ssl, scoringFe } } : {}) };
}

/** allowInsecureConnections=True: the extension serves plain HTTP, TLS is off. */
export const tlsOff = (extension: ExtensionState) => (extension.configurationSettings.allowInsecureConnections ?? "").toLowerCase() === "true";

/** `enableTls` (renew --enable-tls) is the deliberate opt-in that lets amlcert turn TLS on. */
function refuseUnlessSecure(extension: ExtensionState, enableTls = false): void {
  if (extension.extensionType.toLowerCase() !== AZUREML_EXTENSION_TYPE.toLowerCase()) {
    throw new AmlcertError("EXTENSION_WRONG_TYPE", "preflight", `extension type is ${extension.extensionType}, not ${AZUREML_EXTENSION_TYPE}; check extension.name`);
  }
  if (tlsOff(extension) && !enableTls) {
    throw new AmlcertError(
      "EXTENSION_INSECURE",
      "preflight",
      "the extension has allowInsecureConnections=True, which turns TLS off; amlcert will not turn TLS on behind your back. " +
        "Set allowInsecureConnections=False (az k8s-extension update --config allowInsecureConnections=False) and run again",
    );
  }
}

/** A secret the extension names that is not one of the slots, read for the plan; a 403 is refused unless forced. */
async function readForeign(deps: RenewDeps, s: RenewSettings, name: string, warnings: string[]): Promise<StoredSecret | undefined> {
  try {
    return await deps.kube.getSecret(name);
  } catch (err) {
    if (!(err instanceof AmlcertError && err.code === "KUBE_FORBIDDEN")) throw atStage(err, "preflight");
    const [a, b] = slotNames(s.secretName);
    if (!s.force) {
      throw new AmlcertError(
        "KUBE_FORBIDDEN",
        "preflight",
        `the extension serves secret ${name}, which amlcert may not read (403: the Role in deploy/ allows only ${a}, ${b} and the ACME account secret). ` +
          `amlcert does not replace a certificate it cannot inspect: allow get on secret ${name} (add it to the Role's resourceNames) so the first renewal is planned on it, ` +
          `or run amlcert renew --force once to move this target to the slots ${a}/${b} (secret ${name} is left as it is, for a manual rollback)`,
        { cause: err, details: { secret: name } },
      );
    }
    warnings.push(`secret ${name}, which the extension serves, cannot be read (403); --force moves this target to the slots ${a}/${b} without comparing against it (it is left in place)`);
    return undefined;
  }
}

export async function inspectTarget(deps: RenewDeps, s: RenewSettings, known?: ExtensionState): Promise<Inspection> {
  const warnings: string[] = [];
  const extension = known ?? (await read(() => deps.extension.get()));
  refuseUnlessSecure(extension, s.enableTls === true);
  const enablesTls = tlsOff(extension) && s.enableTls === true;
  if (enablesTls) {
    warnings.push(
      `--enable-tls: the extension runs with allowInsecureConnections=True; amlcert obtains and stores a certificate for ${s.fqdn}, then turns TLS on in one extension update ` +
        "(allowInsecureConnections=False, sslSecret, scoringFe.sslSecret, sslCname). From then on azureml-fe serves HTTPS only: HTTP scoring clients stop working",
    );
  }
  const pemKeys = extension.protectedSettingKeys.filter((k) => PROTECTED_PEM_KEYS.includes(k));
  if (pemKeys.length > 0) {
    warnings.push(
      `the extension has protected PEM settings (${pemKeys.join(", ")}) which take precedence over sslSecret; ` +
        "remove them once (az k8s-extension update ... --config-protected with the PEM settings left out) or the new certificate will not be served",
    );
  }
  const named = namedSecret(extension);
  if (named.disagree) {
    warnings.push(
      `the extension's settings disagree: sslSecret names ${named.disagree.sslSecret}, scoringFe.sslSecret names ${named.disagree.scoringFe}; ` +
        `azureml-fe uses scoringFe.sslSecret (${named.disagree.scoringFe}); the next rollout sets both`,
    );
  }
  let currentSecretName: string | undefined;
  let current: StoredSecret | undefined;
  let slots: Inspection["slots"];
  let pending: StoredSecret | undefined;
  if (s.secretMode === "slots") {
    const [a, b] = slotNames(s.secretName);
    const [sa, sb] = await Promise.all([read(() => deps.kube.getSecret(a)), read(() => deps.kube.getSecret(b))]);
    const secrets = { [a]: sa, [b]: sb };
    const view = resolveSlots({ base: s.secretName, named: named.name, provisioningState: extension.provisioningState, slots: secrets });
    slots = { ...view, secrets };
    currentSecretName = view.served;
    const foreign = view.served !== undefined && otherSlot(s.secretName, view.served) === undefined;
    current = view.served === undefined ? undefined : foreign ? await readForeign(deps, s, view.served, warnings) : secrets[view.served];
    if (view.failedRollout) {
      pending = secrets[view.failedRollout];
      warnings.push(
        `the extension's last operation ${extension.provisioningState}: it names slot ${view.failedRollout} (never rolled out), ` +
          (view.served ? `Helm kept the release serving slot ${view.served}` : "and no earlier certificate is known to be served"),
      );
    }
  } else {
    currentSecretName = s.secretMode === "fixed" ? s.secretName : named.name;
    current = currentSecretName ? await read(() => deps.kube.getSecret(currentSecretName!)) : undefined;
  }
  let rollbackSecretName: string | undefined;
  if (s.secretMode === "versioned" && current && rolloutOf(current).state === "pending" && operationFailed(extension.provisioningState)) {
    const done = (await read(() => deps.kube.listSecrets(versionsSelector(s.secretName)))).filter((v) => v.name !== current!.name && rolloutOf(v).state === "done");
    rollbackSecretName = done.sort((x, y) => annotatedNotAfter(y).localeCompare(annotatedNotAfter(x)))[0]?.name;
  }
  const ingress = await read(() => deps.kube.getServiceIngress(AZUREML_FE_SERVICE));
  if (!ingress) warnings.push(`service ${AZUREML_FE_SERVICE} was not found in namespace azureml; is the extension installed with inference enabled?`);
  const expected = s.expectedAddress ? [s.expectedAddress] : [...(ingress?.ips ?? []), ...(ingress?.hostnames ?? [])];
  if (!s.expectedAddress && ingress && expected.length === 0) {
    warnings.push(`service ${AZUREML_FE_SERVICE} (type ${ingress.type}) has no load balancer ingress; set expectedAddress for nodePort/clusterIP setups`);
  }
  // RFC 9773: the CA's window for the certificate in place; undefined (the lifetime rule) when it has none or did not answer
  const currentChain = text(current, "cert.pem");
  const renewalWindow = currentChain && deps.source.renewalInfo ? await deps.source.renewalInfo(currentChain).catch(() => undefined) : undefined;
  let decision = planRenewal({
    ...(renewalWindow ? { renewalWindow } : {}),
    ...(deps.source.profile ? { profile: deps.source.profile } : {}),
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
  // an order is planned: what it would ask the source for must be something the source offers (ACME: the profile)
  if (decision.renew && deps.source.check) await read(() => deps.source.check!());
  // a source that renews its certificates itself (Key Vault, a TLS secret) is followed, not renewed (source-decision.ts)
  if (deps.source.offer) decision = followSource(decision, await read(() => deps.source.offer!()), deps.source, warnings);
  // versioned: the version the extension names, when its rollout failed; slots: the slot whose rollout failed
  const failedOne = s.secretMode === "versioned" ? current : pending;
  const rollout = s.secretMode === "versioned" ? inPlaceRollout(current, extension.provisioningState) : s.secretMode === "slots" && pending ? inPlaceRollout(pending, operationFailed(extension.provisioningState) ? "Failed" : "Succeeded") : "Confirmed";
  if (!decision.renew && rollout === "Rejected") {
    decision = {
      renew: true,
      reason: "RolloutRejected",
      message: `the extension failed to roll out secret ${failedOne!.name} ${rolloutOf(failedOne!).failures} times (at most ${MAX_ROLLOUT_FAILURES}); ordering a new certificate`,
      current: decision.current,
      renewAt: decision.renewAt,
      // versioned: azureml-fe never served it, so it sets no "must expire later" bar; slots: the served one still does
      currentSound: s.secretMode === "slots" ? decision.currentSound : false,
    };
  }
  // turning TLS on: a certificate of its own, whatever the extension names now (nothing was served over TLS)
  if (enablesTls) {
    decision = { renew: true, reason: "EnableTls", message: "--enable-tls: TLS is off (allowInsecureConnections=True); a new certificate is ordered and TLS turned on with it", current: decision.current, renewAt: decision.renewAt, currentSound: false };
  }
  // slots: the failed slot is rolled out again only while it holds a usable pair for the names (else it is just the target)
  const usable = s.secretMode !== "slots" || (pending !== undefined && inspectPair(text(pending, "cert.pem"), text(pending, "key.pem"), s.names).problems.length === 0);
  const pendingRollout = !decision.renew && rollout === "Pending" && usable;
  return {
    extension,
    currentSecretName,
    current,
    ...(named.name ? { namedSecretName: named.name } : {}),
    ...(slots ? { slots } : {}),
    ...(pendingRollout ? { pending: failedOne } : {}),
    ...(rollbackSecretName ? { rollbackSecretName } : {}),
    decision,
    ingress,
    expected,
    warnings,
    pendingRollout,
    enablesTls,
    ...(renewalWindow ? { renewalWindow, replaces: renewalWindow.certId } : {}),
  };
}

/**
 * The bar a new certificate must clear: it must expire later than the certificate in place when that one is
 * sound (due, expired or forced, but a working pair). A broken pair in place (wrong key, names, chain) sets no bar:
 * anything valid is better than it, even a 90-day certificate replacing a broken 1-year one.
 */
export function soundNotAfter(decision: PlanDecision): Date | undefined {
  return decision.currentSound ? decision.current?.notAfter : undefined;
}
