/**
 * A version to roll out: a stored certificate that was never rolled out (reuse policy), or a new one from the
 * certificate source, validated before anything is written, then stored.
 */
import { AmlcertError } from "../errors.js";
import { describeProblem, validateNewPair } from "../certs/certificate.js";
import { rolloutOf, secretFor, versionedSecretName, versionsSelector } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import { soundNotAfter, type Inspection } from "./inspect.js";
import { chooseReusable, type ReusableVersion } from "./policies.js";
import type { RunRecorder } from "./recorder.js";
import type { StoredVersion } from "./rollout.js";

/** Versioned mode: a stored, valid, unreferenced certificate newer than the current one (from a run whose rollout failed). */
async function findReusable(deps: RenewDeps, s: RenewSettings, inspection: Inspection): Promise<ReusableVersion | undefined> {
  if (s.secretMode !== "versioned" || s.force) return undefined;
  const { pick } = chooseReusable({
    candidates: await deps.kube.listSecrets(versionsSelector(s.secretName)),
    inPlace: inspection.currentSecretName,
    names: s.names,
    keyType: s.keyType,
    mustOutlive: soundNotAfter(inspection.decision),
    now: deps.clock.now(),
    renewBeforeMs: s.renewBeforeMs,
  });
  return pick;
}

export async function obtainVersion(run: RunRecorder, deps: RenewDeps, s: RenewSettings, inspection: Inspection, signal?: AbortSignal): Promise<StoredVersion> {
  const log = deps.logger.child({ fqdn: s.fqdn });
  const content = { base: s.secretName, fqdn: s.fqdn, names: s.names };
  if (inspection.pendingRollout) {
    // the extension names it, but its last operation failed: roll the same version out again (and count it)
    const held = inspection.current!;
    const failures = rolloutOf(held).failures;
    log.warn({ stage: "extension", secret: held.name, failures, provisioningState: inspection.extension.provisioningState }, "the extension's rollout of this certificate failed; rolling it out again");
    const text = (key: string) => held.data[key]?.toString("utf8") ?? "";
    return { ...content, name: held.name, chainPem: text("cert.pem"), keyPem: text("key.pem"), leaf: inspection.decision.current!, reused: true, previousFailures: failures };
  }
  const reusable = await run.stage("store", () => findReusable(deps, s, inspection));
  if (reusable) {
    log.info({ stage: "store", secret: reusable.name, serial: reusable.leaf.serialNumber }, "reusing a stored certificate that was never rolled out");
    return { ...content, ...reusable, reused: true, previousFailures: reusable.failures };
  }

  const { chainPem, keyPem } = await run.stage("acme-order", () => deps.source.obtain({ names: s.names }, signal), { keepStage: true });
  const leaf = await run.stage("validate", async () => {
    const validation = validateNewPair(chainPem, keyPem, s.names, deps.clock.now(), soundNotAfter(inspection.decision));
    if (!validation.leaf || validation.problems.length > 0) {
      const onlyNotNewer = validation.problems.every((p) => p.kind === "not-newer");
      throw new AmlcertError(onlyNotNewer ? "CERT_NOT_NEWER" : "CERT_INVALID", "validate", `the issued certificate was not written: ${validation.problems.map(describeProblem).join("; ")}`);
    }
    return validation.leaf;
  });
  log.info({ stage: "validate", serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString(), issuer: leaf.issuer }, "new certificate validated");

  const name = s.secretMode === "versioned" ? versionedSecretName(s.secretName, leaf) : s.secretName;
  const version = { ...content, name, chainPem, keyPem, leaf };
  // fixed mode overwrites the secret in place: only if it is still what was planned on
  const expectedResourceVersion = s.secretMode === "fixed" ? inspection.current?.resourceVersion : undefined;
  const stored = await run.stage("store", () => deps.kube.writeSecret({ ...secretFor(version), expectedResourceVersion }));
  log.info({ stage: "store", secret: name, serial: leaf.serialNumber }, "secret written");
  return { ...version, reused: false, previousFailures: 0, writtenVersion: stored.resourceVersion };
}
