/**
 * The TlsProbe port (src/ports.ts) as a TLS 1.2 handshake with verification on shows it: the served certificate's
 * serial and fingerprint when its chain verifies against the trust store and names the probed host; otherwise the
 * handshake is refused before the certificate is accepted, so the result is authorized=false with the reason and an
 * empty serial. The fake (FakeTlsProbe) and the real probe (tls-probe.ts against the azureml-fe stand-in) both pass it.
 */
import { X509Certificate } from "node:crypto";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { TlsProbe } from "../../src/ports.js";
import { days, makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";

export const FQDN = "endpoint.contoso.test";

export interface TlsProbeSubject {
  /** the port under test; it trusts exactly the root it was made with */
  probe: TlsProbe;
  /** where azureml-fe listens */
  target: { host: string; port: number };
  /** azureml-fe serves this chain and key to new connections from now on */
  serve(leaf: { chainPem: string; keyPem: string }): Promise<void>;
  /** azureml-fe stops listening */
  stop(): Promise<void>;
}

/** What a subject needs to know about a chain it is told to serve: whether its root is the trusted one. */
export interface Trust {
  trustedRootPem: string;
  /** true when `chainPem` was issued under `trustedRootPem` (a fake cannot verify signatures, it is told) */
  isTrusted(chainPem: string): boolean;
}

export function describeContract(name: string, makeSubject: (trust: Trust) => Promise<TlsProbeSubject>): void {
  describe(`TlsProbe contract: ${name}`, () => {
    let first: TestLeaf;
    let second: TestLeaf;
    let stranger: TestLeaf;
    let otherName: TestLeaf;
    let trust: Trust;
    let s: TlsProbeSubject;

    beforeAll(async () => {
      const now = Date.now();
      const trusted = await makeTestCa("contract trusted");
      const untrusted = await makeTestCa("contract untrusted");
      const valid = [new Date(now - days(1)), new Date(now + days(30))] as const;
      first = await makeLeaf(trusted.intermediate, [FQDN], ...valid);
      second = await makeLeaf(trusted.intermediate, [FQDN], ...valid);
      otherName = await makeLeaf(trusted.intermediate, ["other.contoso.test"], ...valid);
      stranger = await makeLeaf(untrusted.intermediate, [FQDN], ...valid);
      const trustedChains = new Set([first, second, otherName].map((l) => l.chainPem));
      trust = { trustedRootPem: trusted.root.pem, isTrusted: (chainPem) => trustedChains.has(chainPem) };
    });
    beforeEach(async () => {
      s = await makeSubject(trust);
    });

    const probe = (servername = FQDN) => s.probe.probe({ ...s.target, servername });

    it("when the served chain verifies and names the host, reports its serial (upper-case hex) and fingerprint over TLS 1.2, authorized", async () => {
      await s.serve(first);
      const x509 = new X509Certificate(first.leafPem);
      expect(await probe()).toEqual({ serialNumber: x509.serialNumber.toUpperCase(), fingerprint256: x509.fingerprint256, protocol: "TLSv1.2", authorized: true });
    });

    it("when azureml-fe serves another certificate, the next probe reports that one", async () => {
      await s.serve(first);
      await probe();
      await s.serve(second);
      expect((await probe()).serialNumber).toBe(second.serialNumber);
    });

    it("when the chain does not verify against the trust store, reports authorized=false with the reason and no serial", async () => {
      await s.serve(stranger);
      const result = await probe();
      expect(result).toMatchObject({ serialNumber: "", fingerprint256: "", protocol: "TLSv1.2", authorized: false });
      expect(result.authorizationError).toMatch(/^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\b/);
    });

    it("when the certificate does not name the probed host, reports authorized=false with ERR_TLS_CERT_ALTNAME_INVALID and no serial", async () => {
      await s.serve(otherName);
      const result = await probe();
      expect(result).toMatchObject({ serialNumber: "", fingerprint256: "", authorized: false });
      expect(result.authorizationError).toMatch(/^ERR_TLS_CERT_ALTNAME_INVALID\b/);
    });

    it("when nothing listens, the probe rejects with TLS_PROBE_FAILED at stage verify-tls", async () => {
      await s.serve(first);
      await s.stop();
      const err = await probe().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "TLS_PROBE_FAILED", stage: "verify-tls" });
    });
  });
}
