/** After a rollout: both checks run (DNS, then TLS), the first failure is the run's; nothing is pruned unless both pass. */
import { AmlcertError, atStage } from "../errors.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { Inspection } from "./inspect.js";
import type { RunRecorder } from "./recorder.js";
import type { StoredVersion } from "./rollout.js";
import { checkDns } from "./verify-dns.js";
import { servingHint, waitForServing } from "./verify-serving.js";

export async function verifyRollout(run: RunRecorder, deps: RenewDeps, s: RenewSettings, inspection: Inspection, v: StoredVersion, extensionUpdated: boolean, signal?: AbortSignal): Promise<void> {
  const dns = await run.stage("verify-dns", () => checkDns(deps, s, inspection.expected));
  let failure: AmlcertError | undefined;
  if (!dns.ok) failure = new AmlcertError("DNS_MISMATCH", "verify-dns", `${s.fqdn} does not resolve to azureml-fe: ${dns.problems.join("; ")}`);
  const probeHost = s.probe.host ?? inspection.expected[0];
  let servingOk = false;
  if (!probeHost) {
    failure ??= new AmlcertError("TLS_PROBE_FAILED", "verify-tls", "no address to probe: set probeAddress or expectedAddress");
  } else {
    try {
      await run.stage("verify-tls", () => waitForServing(deps, s, probeHost, v.leaf.serialNumber, servingHint(s, extensionUpdated), signal));
      servingOk = true;
    } catch (err) {
      signal?.throwIfAborted();
      failure ??= atStage(err, "verify-tls");
    }
  }
  run.emit("verified", { secret: v.name, newCertificate: true, dnsOk: dns.ok, servingOk, ...(failure ? { problem: failure.message } : {}) });
  if (failure) throw failure;
}

/** Confirm the certificate in place is what azureml-fe serves (nothing to renew must not hide a rollout that did not take). */
export async function verifyInPlace(run: RunRecorder, deps: RenewDeps, s: RenewSettings, inspection: Inspection, dnsOk: boolean, extensionUpdated: boolean, signal?: AbortSignal): Promise<void> {
  const secret = inspection.currentSecretName!;
  const serial = inspection.decision.current!.serialNumber;
  const probeHost = s.probe.host ?? inspection.expected[0];
  if (!probeHost) return;
  try {
    await run.stage("verify-tls", () => waitForServing(deps, s, probeHost, serial, servingHint(s, extensionUpdated), signal));
  } catch (err) {
    run.emit("verified", { secret, newCertificate: false, dnsOk, servingOk: false, problem: (err as Error).message });
    throw err;
  }
  run.emit("verified", { secret, newCertificate: false, dnsOk, servingOk: true });
}
