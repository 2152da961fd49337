/** Does azureml-fe serve the certificate? Polled, bounded, while pods roll. */
import { AmlcertError } from "../errors.js";
import type { RenewDeps, RenewSettings } from "./deps.js";

/** The likely cause when azureml-fe keeps serving another certificate. */
export function servingHint(s: RenewSettings, extensionUpdated: boolean): string {
  return s.secretMode === "fixed" && !extensionUpdated
    ? "In fixed-name mode the extension PATCH changed nothing, so azureml-fe was not rolled; it does not reload a secret changed in place. Use secretMode: slots (the default)."
    : "If the old certificate keeps being served, the extension's protected settings scoringFe.sslCert/scoringFe.sslKey take precedence over sslSecret and must be removed once.";
}

/** Poll azureml-fe until it serves `serial` with a chain that validates, within verifyTimeoutMs. */
export async function waitForServing(deps: RenewDeps, s: RenewSettings, host: string, serial: string, hint: string, signal?: AbortSignal): Promise<void> {
  const started = deps.clock.now().getTime();
  // a second bound that does not depend on the clock advancing
  const maxAttempts = Math.ceil(s.verifyTimeoutMs / Math.max(1, s.verifyIntervalMs)) + 1;
  let last = "no answer";
  let reached = false;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
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
    await deps.clock.sleep(s.verifyIntervalMs, signal);
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
