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
      const { chainPem } = await deps.acme().issue({ names, keyPem }, deps.solver);
      return { chainPem, keyPem };
    },
  };
}
