/**
 * Rolling a stored version out: point the extension's sslSecret and scoringFe.sslSecret (and sslCname) at it, record
 * the rollout on the version, and on failure leave the certificate in place served.
 *
 * A rollout is only what the extension confirms: the operation ended Succeeded (the adapter throws
 * EXTENSION_LRO_FAILED otherwise, also for ARM's 200 "no update is done" on an extension whose last operation failed).
 * On a failed operation ARM keeps the new settings while Helm rolls the release back; amlcert then points the
 * extension back at the certificate served (a real change, so ARM runs it), so the extension's settings say what
 * azureml-fe serves. Fixed mode instead puts the previous pair back in the secret, exactly.
 */
import { AmlcertError, atStage } from "../errors.js";
import type { SecretWrite } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { ANNOTATION, MAX_ROLLOUT_FAILURES, rolloutOf, type RolloutState, type VersionContent } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { Inspection } from "./inspect.js";
import { operationFailed } from "./policies.js";

/** A version ready to roll out: stored, validated, with what is known of its earlier rollouts. */
export interface StoredVersion extends VersionContent {
  reused: boolean;
  previousFailures: number;
  /** the resourceVersion our write left (fixed mode restores only over our own write) */
  writtenVersion?: string;
  /** the secret as amlcert wrote it (data, labels): the rollout bookkeeping rewrites it with new annotations */
  write: SecretWrite;
}

const pointAt = (s: RenewSettings, secretName: string) => ({ sslSecret: secretName, "scoringFe.sslSecret": secretName, sslCname: s.fqdn });

/** Record a version's rollout state. Best effort: it only decides whether a later run may reuse the version. */
async function recordRollout(deps: RenewDeps, log: Logger, secret: SecretWrite, rollout: RolloutState): Promise<void> {
  const annotations = { ...secret.annotations, [ANNOTATION.rollout]: rollout.state, [ANNOTATION.rolloutFailures]: String(rollout.failures) };
  const { expectedResourceVersion: _planned, ...write } = secret;
  await deps.kube
    .writeSecret({ ...write, annotations })
    .catch((e: unknown) => log.warn({ stage: "extension", secret: secret.name, err: e }, "could not record the rollout state on the secret"));
}

/** Fixed mode, after a failed rollout: the previous pair back in the secret azureml-fe reads, only over our own write. */
async function restorePrevious(deps: RenewDeps, inspection: Inspection, v: StoredVersion, err: unknown): Promise<void> {
  const prev = inspection.current!;
  try {
    await deps.kube.writeSecret({ name: prev.name, data: prev.data, labels: prev.labels, annotations: prev.annotations, replaceMetadata: true, expectedResourceVersion: v.writtenVersion });
    deps.logger.warn({ stage: "extension", fqdn: v.fqdn, secret: prev.name }, "extension update failed; previous certificate restored in the secret");
  } catch (restoreErr) {
    const e = atStage(err, "extension");
    throw new AmlcertError(
      e.code,
      "extension",
      `${e.message}. The previous certificate could not be put back in secret ${prev.name} (${(restoreErr as Error).message}): the secret now holds the new certificate ${v.leaf.serialNumber}, which azureml-fe serves once it reloads`,
      { cause: err, details: e.details },
    );
  }
}

/**
 * The extension already names `target` but its last operation failed (a failed rollout whose settings ARM kept): the
 * same PATCH again would change nothing ("no update is done"). Point it at the certificate served first.
 */
async function unstick(deps: RenewDeps, s: RenewSettings, inspection: Inspection, target: string, signal?: AbortSignal): Promise<void> {
  const served = inspection.rollbackSecretName ?? inspection.currentSecretName;
  const cs = inspection.extension.configurationSettings;
  const namesTarget = cs.sslSecret === target && cs["scoringFe.sslSecret"] === target;
  if (!namesTarget || !operationFailed(inspection.extension.provisioningState) || !served || served === target) return;
  deps.logger.warn({ stage: "extension", fqdn: s.fqdn, secret: served, provisioningState: inspection.extension.provisioningState }, `the extension still names ${target} after a failed operation; pointing it back at ${served}, the certificate served, before rolling ${target} out again`);
  await deps.extension.updateSettings(pointAt(s, served), signal);
}

/** After a failed rollout: point the extension back at the certificate served (best effort; the next run does it otherwise). */
async function pointBack(deps: RenewDeps, s: RenewSettings, inspection: Inspection, failed: string, signal?: AbortSignal): Promise<void> {
  const served = inspection.rollbackSecretName ?? inspection.currentSecretName;
  // --enable-tls that failed: TLS back off, as the release the extension kept serves it
  const back: Record<string, string> = inspection.enablesTls ? { allowInsecureConnections: "True" } : {};
  if (inspection.enablesTls && (!served || served === failed)) {
    await deps.extension.updateSettings(back, signal).catch((err: unknown) => deps.logger.warn({ stage: "extension", fqdn: s.fqdn, err }, "could not set allowInsecureConnections=True again after the failed update"));
    return;
  }
  if (!served || served === failed || s.secretMode === "fixed") return;
  try {
    await deps.extension.updateSettings({ ...pointAt(s, served), ...back }, signal);
    deps.logger.warn({ stage: "extension", fqdn: s.fqdn, secret: served }, `the extension points at ${served} again, the certificate azureml-fe kept serving`);
  } catch (err) {
    if (signal?.aborted) return;
    deps.logger.warn({ stage: "extension", fqdn: s.fqdn, secret: served, err }, `could not point the extension back at ${served}; it names ${failed} in a failed state until the next run`);
  }
}

export async function rollOut(deps: RenewDeps, s: RenewSettings, inspection: Inspection, v: StoredVersion, signal?: AbortSignal): Promise<{ secret: string; changed: boolean }> {
  const log = deps.logger.child({ fqdn: s.fqdn });
  const mark = (rollout: RolloutState) => recordRollout(deps, log, v.write, rollout);
  try {
    await unstick(deps, s, inspection, v.name, signal);
    // --enable-tls: TLS goes on in the same update that names the certificate, never before it is stored
    const { changed } = await deps.extension.updateSettings({ ...pointAt(s, v.name), ...(inspection.enablesTls ? { allowInsecureConnections: "False" } : {}) }, signal);
    log.info({ stage: "extension", secret: v.name, changed }, changed ? "extension updated" : "extension already pointed at this secret (no change)");
    await mark({ state: "done", failures: v.previousFailures });
    return { secret: v.name, changed };
  } catch (err) {
    // stopped while waiting for the operation: its result is unknown, the next run reads the extension again
    if (signal?.aborted) throw err;
    if (s.secretMode === "fixed") {
      if (inspection.current) await restorePrevious(deps, inspection, v, err);
      throw err;
    }
    const failures = v.previousFailures + 1;
    await mark({ state: "pending", failures });
    log.warn(
      { stage: "extension", secret: v.name, failures, code: err instanceof AmlcertError ? err.code : undefined },
      failures < MAX_ROLLOUT_FAILURES
        ? "the new certificate stays stored, never rolled out; the next run tries to roll it out again"
        : `the rollout of this certificate failed ${failures} times (at most ${MAX_ROLLOUT_FAILURES}); the next run orders a new one`,
    );
    // a definite failure (not a timed-out wait, which ARM may still complete): the settings say what is served again
    if (err instanceof AmlcertError && err.code === "EXTENSION_LRO_FAILED") await pointBack(deps, s, inspection, v.name, signal);
    throw err;
  }
}

/**
 * Nothing to renew, but the extension's last operation Failed or was Canceled: it is updated again, pointing at the
 * certificate in place (which was rolled out before: a pending one is rolled out as a version instead). When the
 * settings already name it, ARM changes nothing and the adapter reports the failure with the extension's health.
 */
export async function redriveFailedExtension(deps: RenewDeps, s: RenewSettings, inspection: Inspection, signal?: AbortSignal): Promise<{ secret: string; changed: boolean } | undefined> {
  const state = inspection.extension.provisioningState ?? "";
  if (!operationFailed(state)) return undefined;
  const secretName = inspection.currentSecretName!;
  deps.logger.warn({ stage: "extension", fqdn: s.fqdn, provisioningState: state }, "the extension's last operation did not succeed; updating it again");
  const { changed } = await deps.extension.updateSettings(pointAt(s, secretName), signal);
  return { secret: secretName, changed };
}

/**
 * The version in place is proven served: one still annotated pending (its wait timed out, or a run crashed between the
 * PATCH and the annotation, and ARM completed the operation) is marked rolled out, so it is never reused or re-driven.
 */
export async function confirmRolledOut(deps: RenewDeps, s: RenewSettings, inspection: Inspection): Promise<void> {
  const held = inspection.current;
  if (!held || rolloutOf(held).state !== "pending" || operationFailed(inspection.extension?.provisioningState)) return;
  deps.logger.info({ stage: "extension", fqdn: s.fqdn, secret: held.name }, "the certificate in place is served: its rollout, left pending by an earlier run, is recorded done");
  await recordRollout(deps, deps.logger.child({ fqdn: s.fqdn }), { name: held.name, data: held.data, labels: held.labels, annotations: held.annotations }, { state: "done", failures: rolloutOf(held).failures });
}
