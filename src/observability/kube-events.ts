/**
 * Kubernetes Events as a subscriber of a run's events: Renewed / VerificationFailed on the new secret after a
 * rollout, RenewalFailed when a renewal failed before rollout (exit 3). Events are a notice for `kubectl describe`,
 * not a history: the API server keeps them an hour.
 */
import type { KubeCluster } from "../ports.js";
import type { EventSink, RenewalEvent } from "../renewal/events.js";
import { ExitCode } from "../errors.js";

export function kubeEventsSink(kube: KubeCluster, baseSecret: string): EventSink {
  let stored: Extract<RenewalEvent, { type: "stored" }> | undefined;
  return (e) => {
    if (e.type === "run-started") stored = undefined;
    if (e.type === "stored") stored = e;
    if (e.type === "verified" && e.newCertificate) {
      return kube.recordEvent(
        e.problem !== undefined
          ? { secretName: e.secret, type: "Warning", reason: "VerificationFailed", message: e.problem }
          : { secretName: e.secret, type: "Normal", reason: "Renewed", message: `serial ${stored?.certificate.serial}, valid until ${stored?.certificate.notAfter}, served by azureml-fe` },
      );
    }
    if (e.type === "run-finished" && e.outcome.error?.exitCode === ExitCode.RenewalFailed) {
      const { stage, message } = e.outcome.error;
      return kube.recordEvent({ secretName: e.outcome.storedSecret ?? baseSecret, type: "Warning", reason: "RenewalFailed", message: `${stage}: ${message}` });
    }
    return undefined;
  };
}
