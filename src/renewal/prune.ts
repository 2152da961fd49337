/** Versioned mode, once the new version is proven served: delete older versions, keeping `keepPrevious`. Best effort. */
import { versionsSelector } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { Inspection } from "./inspect.js";
import { versionsToPrune } from "./policies.js";

export async function pruneVersions(deps: RenewDeps, s: RenewSettings, inspection: Inspection, served: string): Promise<void> {
  if (s.secretMode !== "versioned") return;
  const keep = [served, ...(inspection.currentSecretName && inspection.currentSecretName !== served ? [inspection.currentSecretName] : [])];
  try {
    const managed = await deps.kube.listSecrets(versionsSelector(s.secretName));
    for (const name of versionsToPrune(managed, keep, s.keepPrevious)) {
      await deps.kube.deleteSecret(name);
      deps.logger.info({ stage: "prune", fqdn: s.fqdn, secret: name }, "old secret version deleted");
    }
  } catch (err) {
    deps.logger.warn({ stage: "prune", fqdn: s.fqdn, err }, "could not prune old secret versions (the renewal itself succeeded)");
  }
}
