/**
 * Rolling a stored version out: point the extension's sslSecret (and scoringFe.sslSecret, sslCname) at it, record the
 * rollout on the version, and on failure leave the certificate in place served (fixed mode: put the previous pair
 * back, exactly).
 */
import { AmlcertError, atStage } from "../errors.js";
import type { SecretWrite } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { ANNOTATION, MAX_ROLLOUT_FAILURES, rolloutOf, secretFor, type RolloutState, type VersionContent } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { Inspection } from "./inspect.js";

/** A version ready to roll out: stored, validated, with what is known of its earlier rollouts. */
export interface StoredVersion extends VersionContent {
  reused: boolean;
  previousFailures: number;
  /** the resourceVersion our write left (fixed mode restores only over our own write) */
  writtenVersion?: string;
}

const pointAt = (s: RenewSettings, secretName: string) => ({ sslSecret: secretName, "scoringFe.sslSecret": secretName, sslCname: s.fqdn });

/** Record a version's rollout state. Best effort: it only decides whether a later run may reuse the version. */
async function recordRollout(deps: RenewDeps, log: Logger, secret: SecretWrite, rollout: RolloutState): Promise<void> {
  const annotations = { ...secret.annotations, [ANNOTATION.rollout]: rollout.state, [ANNOTATION.rolloutFailures]: String(rollout.failures) };
  await deps.kube
    .writeSecret({ ...secret, annotations })
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

export async function rollOut(deps: RenewDeps, s: RenewSettings, inspection: Inspection, v: StoredVersion, signal?: AbortSignal): Promise<{ secret: string; changed: boolean }> {
  const log = deps.logger.child({ fqdn: s.fqdn });
  const mark = (rollout: RolloutState) => recordRollout(deps, log, secretFor(v), rollout);
  try {
    const { changed } = await deps.extension.updateSettings(pointAt(s, v.name), signal);
    log.info({ stage: "extension", secret: v.name, changed }, changed ? "extension updated" : "extension already pointed at this secret (no change)");
    await mark({ state: "done", failures: v.previousFailures });
    return { secret: v.name, changed };
  } catch (err) {
    // stopped while waiting for the operation: its result is unknown, the next run reads the extension again
    if (signal?.aborted) throw err;
    if (s.secretMode === "fixed" && inspection.current) await restorePrevious(deps, inspection, v, err);
    else if (s.secretMode === "versioned") {
      const failures = v.previousFailures + 1;
      await mark({ state: "pending", failures });
      log.warn(
        { stage: "extension", secret: v.name, failures },
        failures < MAX_ROLLOUT_FAILURES
          ? "the new certificate stays stored (unreferenced) and the next run tries to roll it out again"
          : `the rollout of this certificate failed ${failures} times; the next run issues a new one`,
      );
    }
    throw err;
  }
}

/**
 * Nothing to renew, but an extension whose last operation Failed or was Canceled is updated again, pointing at the
 * certificate in place (which was rolled out before: a pending one is rolled out as a version instead).
 */
export async function redriveFailedExtension(deps: RenewDeps, s: RenewSettings, inspection: Inspection, signal?: AbortSignal): Promise<{ secret: string; changed: boolean } | undefined> {
  const state = inspection.extension.provisioningState ?? "";
  if (!/^(failed|canceled)$/i.test(state)) return undefined;
  const secretName = inspection.currentSecretName!;
  deps.logger.warn({ stage: "extension", fqdn: s.fqdn, provisioningState: state }, "the extension's last operation did not succeed; updating it again");
  const { changed } = await deps.extension.updateSettings(pointAt(s, secretName), signal);
  return { secret: secretName, changed };
}

/** The version in place is proven served: one still annotated pending (its wait timed out, or a run crashed before it
 * wrote the annotation, and ARM completed the operation) is marked rolled out, so it is never reused or re-driven. */
export async function confirmRolledOut(deps: RenewDeps, s: RenewSettings, inspection: Inspection): Promise<void> {
  const held = inspection.current;
  if (!held || rolloutOf(held).state !== "pending") return;
  await recordRollout(deps, deps.logger.child({ fqdn: s.fqdn }), held, { state: "done", failures: rolloutOf(held).failures });
}
