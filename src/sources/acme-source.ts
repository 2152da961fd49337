/**
 * ACME as a certificate source: a fresh key, then one order answered with DNS-01 through Azure DNS (the solver),
 * full chain downloaded. The ACME client is built lazily, so a run with nothing to renew never creates an account.
 */
import { atStage } from "../errors.js";
import type { AcmeIssuer, CertificateSource, DnsChallengeSolver } from "../ports.js";

export interface AcmeSourceDeps {
  acme: () => AcmeIssuer;
  solver: DnsChallengeSolver;
  generateKey: () => Promise<string>;
}

export function createAcmeSource(deps: AcmeSourceDeps): CertificateSource {
  return {
    kind: "acme",
    async obtain({ names }, signal) {
      signal?.throwIfAborted();
      const keyPem = await deps.generateKey().catch((err: unknown) => {
        throw atStage(err, "acme-order");
      });
      signal?.throwIfAborted();
      // the order's challenges wait on this run's signal: a stop ends the propagation wait and removes the TXT value
      const solver = signal ? { present: (name: string, value: string) => deps.solver.present(name, value, signal), cleanup: deps.solver.cleanup } : deps.solver;
      const { chainPem } = await deps.acme().issue({ names, keyPem }, solver);
      return { chainPem, keyPem };
    },
  };
}
