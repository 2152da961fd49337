/** Read-only: the extension, the secret it points at, azureml-fe, and the renewal decision. Used by plan, renew and status. */
import { AmlcertError, atStage } from "../errors.js";
import type { ExtensionState, StoredSecret } from "../ports.js";
import { planRenewal, type PlanDecision } from "./plan.js";
import { followSource } from "./source-decision.js";
import { inPlaceRollout } from "./policies.js";
import { MAX_ROLLOUT_FAILURES, rolloutOf } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";

export const AZUREML_EXTENSION_TYPE = "Microsoft.AzureML.Kubernetes";
export const AZUREML_FE_SERVICE = "azureml-fe";
/** Protected settings that carry PEM files; when present they take precedence over sslSecret. */
const PROTECTED_PEM_KEYS = ["scoringFe.sslCert", "scoringFe.sslKey", "sslCertPemFile", "sslKeyPemFile"];

export interface Ingress {
  type: string;
  ips: string[];
  hostnames: string[];
  clusterIP?: string;
}

export interface Inspection {
  extension: ExtensionState;
  currentSecretName?: string;
  current?: StoredSecret;
  decision: PlanDecision;
  ingress?: Ingress;
  /** what the FQDN must resolve to: expectedAddress, or azureml-fe's ingress */
  expected: string[];
  /** the version the extension names is valid but its rollout failed: roll it out again instead of ordering */
  pendingRollout: boolean;
  warnings: string[];
}

const text = (s: StoredSecret | undefined, key: string) => s?.data[key]?.toString("utf8");
const read = <T>(run: () => Promise<T>) => run().catch((err: unknown) => {
  throw atStage(err, "preflight");
});

export async function inspectTarget(deps: RenewDeps, s: RenewSettings): Promise<Inspection> {
  const warnings: string[] = [];
  const extension = await read(() => deps.extension.get());
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
  const current = currentSecretName ? await read(() => deps.kube.getSecret(currentSecretName)) : undefined;
  const ingress = await read(() => deps.kube.getServiceIngress(AZUREML_FE_SERVICE));
  if (!ingress) warnings.push(`service ${AZUREML_FE_SERVICE} was not found in namespace azureml; is the extension installed with inference enabled?`);
  const expected = s.expectedAddress ? [s.expectedAddress] : [...(ingress?.ips ?? []), ...(ingress?.hostnames ?? [])];
  if (!s.expectedAddress && ingress && expected.length === 0) {
    warnings.push(`service ${AZUREML_FE_SERVICE} (type ${ingress.type}) has no load balancer ingress; set expectedAddress for nodePort/clusterIP setups`);
  }
  let decision = planRenewal({
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
  // a source that renews its certificates itself (Key Vault, a TLS secret) is followed, not renewed (source-decision.ts)
  if (deps.source.offer) decision = followSource(decision, await read(() => deps.source.offer!()), deps.source, warnings);
  const rollout = s.secretMode === "versioned" ? inPlaceRollout(current, extension.provisioningState) : "Confirmed";
  if (!decision.renew && rollout === "Rejected") {
    decision = {
      renew: true,
      reason: "RolloutRejected",
      message: `the extension failed to roll out secret ${currentSecretName} ${rolloutOf(current!).failures} times (at most ${MAX_ROLLOUT_FAILURES}); ordering a new certificate`,
      current: decision.current,
      renewAt: decision.renewAt,
      // azureml-fe never served it: it sets no "must expire later" bar
      currentSound: false,
    };
  }
  return { extension, currentSecretName, current, decision, ingress, expected, warnings, pendingRollout: !decision.renew && rollout === "Pending" };
}

/**
 * The bar a new certificate must clear: it must expire later than the certificate in place when that one is
 * sound (due, expired or forced, but a working pair). A broken pair in place (wrong key, names, chain) sets no bar:
 * anything valid is better than it, even a 90-day certificate replacing a broken 1-year one.
 */
export function soundNotAfter(decision: PlanDecision): Date | undefined {
  return decision.currentSound ? decision.current?.notAfter : undefined;
}
