/**
 * A version to roll out: a stored certificate that was never rolled out (reuse policy), or a new one from the
 * certificate source, validated before anything is written, then stored.
 */
import { AmlcertError } from "../errors.js";
import { describeProblem, inspectPair, validateNewPair } from "../certs/certificate.js";
import type { SecretWrite, StoredSecret } from "../ports.js";
import { rolloutOf, secretFor, versionedSecretName, versionsSelector } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import { soundNotAfter, type Inspection } from "./inspect.js";
import { chooseReusable, operationFailed, type ReusableVersion } from "./policies.js";
import type { RunRecorder } from "./recorder.js";
import type { StoredVersion } from "./rollout.js";

/**
 * A stored, valid certificate never rolled out, newer than the current one (a run whose rollout failed, or that
 * ended between store and rollout, stored it). Versioned mode: any unreferenced version; slots mode: the slot a new
 * certificate would go to (read by inspect, no list). Fixed mode stores in place and has none.
 */
async function findReusable(deps: RenewDeps, s: RenewSettings, inspection: Inspection): Promise<ReusableVersion | undefined> {
  if (s.force || s.secretMode === "fixed") return undefined;
  const target = inspection.slots ? inspection.slots.secrets[inspection.slots.target] : undefined;
  const candidates = s.secretMode === "slots" ? (target ? [target] : []) : await deps.kube.listSecrets(versionsSelector(s.secretName));
  const { pick } = chooseReusable({
    candidates,
    inPlace: inspection.currentSecretName,
    names: s.names,
    keyType: s.keyType,
    mustOutlive: soundNotAfter(inspection.decision),
    now: deps.clock.now(),
    renewBeforeMs: s.renewBeforeMs,
  });
  return pick;
}

/**
 * Nothing to renew, but the extension's last operation failed while naming the certificate in place: a PATCH with the
 * same settings would change nothing, so a stored certificate never rolled out (one whose rollout failed, then the
 * point-back failed too) is rolled out instead, a real change. undefined when there is none (the redrive reports it).
 */
export async function storedForFailedExtension(deps: RenewDeps, s: RenewSettings, inspection: Inspection): Promise<StoredVersion | undefined> {
  if (inspection.decision.renew || inspection.pendingRollout || !operationFailed(inspection.extension.provisioningState)) return undefined;
  const reusable = await findReusable(deps, s, inspection);
  if (!reusable) return undefined;
  deps.logger.warn({ stage: "extension", fqdn: s.fqdn, secret: reusable.name, provisioningState: inspection.extension.provisioningState }, "the extension's last operation failed; rolling out the stored certificate that was never rolled out (the same settings again would change nothing)");
  const version = { base: s.secretName, fqdn: s.fqdn, names: s.names, name: reusable.name, chainPem: reusable.chainPem, keyPem: reusable.keyPem, leaf: reusable.leaf };
  return { ...version, reused: true, previousFailures: reusable.failures, write: secretFor(version) };
}

export async function obtainVersion(run: RunRecorder, deps: RenewDeps, s: RenewSettings, inspection: Inspection, signal?: AbortSignal): Promise<StoredVersion> {
  const log = deps.logger.child({ fqdn: s.fqdn });
  const content = { base: s.secretName, fqdn: s.fqdn, names: s.names };
  const held = inspection.pendingRollout ? inspection.pending : undefined;
  const heldLeaf = held ? inspectPair(text(held, "cert.pem"), text(held, "key.pem"), s.names).leaf : undefined;
  if (held && heldLeaf) {
    // the extension's operation for it failed: roll the same version out again (and count it)
    const failures = rolloutOf(held).failures;
    log.warn({ stage: "extension", secret: held.name, failures, provisioningState: inspection.extension.provisioningState }, "the extension's rollout of this certificate failed; rolling it out again");
    const version = { ...content, name: held.name, chainPem: text(held, "cert.pem"), keyPem: text(held, "key.pem"), leaf: heldLeaf };
    return { ...version, reused: true, previousFailures: failures, write: secretFor(version) };
  }
  const reusable = await run.stage("store", () => findReusable(deps, s, inspection));
  if (reusable) {
    log.info({ stage: "store", secret: reusable.name, serial: reusable.leaf.serialNumber }, "reusing a stored certificate that was never rolled out");
    const version = { ...content, name: reusable.name, chainPem: reusable.chainPem, keyPem: reusable.keyPem, leaf: reusable.leaf };
    return { ...version, reused: true, previousFailures: reusable.failures, write: secretFor(version) };
  }

  const { chainPem, keyPem } = await run.stage("acme-order", () => deps.source.obtain({ names: s.names, ...(inspection.replaces ? { replaces: inspection.replaces } : {}) }, signal), { keepStage: true });
  const leaf = await run.stage("validate", async () => {
    const validation = validateNewPair(chainPem, keyPem, s.names, deps.clock.now(), soundNotAfter(inspection.decision));
    if (!validation.leaf || validation.problems.length > 0) {
      const onlyNotNewer = validation.problems.every((p) => p.kind === "not-newer");
      throw new AmlcertError(onlyNotNewer ? "CERT_NOT_NEWER" : "CERT_INVALID", "validate", `the issued certificate was not written: ${validation.problems.map(describeProblem).join("; ")}`);
    }
    return validation.leaf;
  });
  log.info({ stage: "validate", serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString(), issuer: leaf.issuer }, "new certificate validated");

  const name = s.secretMode === "versioned" ? versionedSecretName(s.secretName, leaf) : s.secretMode === "slots" ? inspection.slots!.target : s.secretName;
  const version = { ...content, name, chainPem, keyPem, leaf };
  const write = s.secretMode === "fixed" ? inPlaceWrite(secretFor(version), inspection.current) : secretFor(version);
  const expectedResourceVersion = expectedVersion(s, inspection, name);
  const stored = await run.stage("store", () => deps.kube.writeSecret({ ...write, expectedResourceVersion }));
  log.info({ stage: "store", secret: name, serial: leaf.serialNumber }, "secret written");
  return { ...version, reused: false, previousFailures: 0, writtenVersion: stored.resourceVersion, write };
}

const text = (s: StoredSecret, key: string) => s.data[key]?.toString("utf8") ?? "";

/**
 * Only over the state planned on: fixed mode overwrites the secret in place only if it is still what was read; slots
 * mode replaces the target slot at the resourceVersion read (or creates it when it was missing: "" = create only).
 * Versioned mode writes a new name.
 */
function expectedVersion(s: RenewSettings, inspection: Inspection, name: string): string | undefined {
  if (s.secretMode === "fixed") return inspection.current?.resourceVersion;
  if (s.secretMode === "slots") return inspection.slots!.secrets[name]?.resourceVersion ?? "";
  return undefined;
}

/**
 * Fixed mode writes into a secret that may be someone else's: every data key it does not write (ca.crt, ...) is kept
 * and its labels are left alone (the adapter merges labels and annotations); only a secret created new gets ours.
 */
function inPlaceWrite(ours: SecretWrite, current: StoredSecret | undefined): SecretWrite {
  if (!current) return ours;
  return { ...ours, data: { ...current.data, ...ours.data }, labels: {} };
}
