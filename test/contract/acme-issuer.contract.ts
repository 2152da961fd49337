/**
 * The AcmeIssuer port (src/ports.ts) as an RFC 8555 CA shows it for a new order: every identifier (SANs included;
 * a wildcard at its base name) has a pending authorization answered with DNS-01 through the solver, all at once, so
 * two values can be live at one name; the CA checks each value where it looks; every value presented is removed once
 * the authorizations settled, on success and on failure; the chain comes back leaf first, for the names and the key.
 * The fake (FakeAcme) and the real adapter (acme-issuer.ts against Pebble -strict) both pass it. Names are fresh in
 * every test: a CA may reuse a valid authorization of the account (Pebble does, Let's Encrypt too) and skip its challenge.
 */
import { X509Certificate, createPublicKey, randomBytes } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { generateCertificateKey } from "../../src/acme/keys.js";
import { AmlcertError } from "../../src/errors.js";
import type { AcmeIssuer, DnsChallengeSolver, PresentedTxt } from "../../src/ports.js";

export interface AcmeSubject {
  issuer: AcmeIssuer;
  /** publishes TXT values where this CA's validation looks */
  solver: DnsChallengeSolver;
  /** the values live where the CA looks, by record name */
  published(): Map<string, string[]>;
  /** the CA refuses this domain and every name below it by policy */
  blockedDomain: string;
}

/** A solver that records what goes through it: presents, cleanups, and the most values live at one name at once. */
function observed(inner: DnsChallengeSolver, rewrite: (name: string, value: string) => string = (_n, v) => v) {
  const presented: { recordName: string; value: string }[] = [];
  const cleaned: PresentedTxt[] = [];
  const live = new Map<string, number>();
  const maxAtOnce = new Map<string, number>();
  const solver: DnsChallengeSolver = {
    async present(recordName, value) {
      const handle = await inner.present(recordName, rewrite(recordName, value));
      presented.push({ recordName, value });
      live.set(recordName, (live.get(recordName) ?? 0) + 1);
      maxAtOnce.set(recordName, Math.max(maxAtOnce.get(recordName) ?? 0, live.get(recordName)!));
      return handle;
    },
    async cleanup(handle) {
      await inner.cleanup(handle);
      cleaned.push(handle);
      live.set(handle.recordFqdn, (live.get(handle.recordFqdn) ?? 1) - 1);
    },
  };
  return { solver, presented, cleaned, maxAtOnce, recordNames: () => presented.map((p) => p.recordName).sort() };
}

const sansOf = (pem: string) => (new X509Certificate(pem).subjectAltName ?? "").split(", ").map((s) => s.replace(/^DNS:/, "")).sort();
const spkiOf = (key: string | X509Certificate["publicKey"]) => (typeof key === "string" ? createPublicKey(key) : key).export({ type: "spki", format: "pem" });

export function describeContract(name: string, makeSubject: () => Promise<AcmeSubject>): void {
  describe(`AcmeIssuer contract: ${name}`, () => {
    let s: AcmeSubject;
    const run = randomBytes(3).toString("hex");
    let n = 0;
    /** a fresh domain for each test (no authorization of it can exist yet) */
    const fresh = (label: string) => `${label}-${run}-${++n}.test`;
    beforeEach(async () => {
      s = await makeSubject();
    });

    it("when names and SANs are ordered, each is challenged at _acme-challenge.<name>, every value is removed again, and the leaf names them all and carries the key", async () => {
      const domain = fresh("sans");
      const names = [`www.${domain}`, `api.${domain}`, domain];
      const keyPem = await generateCertificateKey("ecdsa-p256");
      const o = observed(s.solver);

      const { chainPem } = await s.issuer.issue({ names, keyPem }, o.solver);

      expect(o.recordNames()).toEqual(names.map((x) => `_acme-challenge.${x}`).sort());
      expect(new Set(o.presented.map((p) => p.value)).size).toBe(3);
      expect(o.cleaned.map((h) => h.value).sort()).toEqual(o.presented.map((p) => p.value).sort());
      expect(s.published().size).toBe(0);
      const leaf = new X509Certificate(chainPem);
      expect(sansOf(chainPem)).toEqual([...names].sort());
      expect(leaf.subject).toContain(`CN=www.${domain}`);
      expect(spkiOf(leaf.publicKey)).toBe(spkiOf(keyPem));
    });

    it("when an apex and its wildcard are ordered, two values are live at the one name at once, and both are removed", async () => {
      const domain = fresh("wild");
      const o = observed(s.solver);

      const { chainPem } = await s.issuer.issue({ names: [domain, `*.${domain}`], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver);

      expect(o.recordNames()).toEqual([`_acme-challenge.${domain}`, `_acme-challenge.${domain}`]);
      expect(o.maxAtOnce.get(`_acme-challenge.${domain}`)).toBe(2);
      expect(o.cleaned).toHaveLength(2);
      expect(s.published().size).toBe(0);
      expect(sansOf(chainPem)).toEqual([`*.${domain}`, domain]);
    });

    it("when one value is not found where the CA looks, the order fails with ACME_REJECTED (unauthorized) for that name, and every value is removed", async () => {
      const domain = fresh("lie");
      const o = observed(s.solver, (recordName, value) => (recordName.startsWith("_acme-challenge.bad.") ? `wrong-${value}` : value));

      const err = await s.issuer.issue({ names: [`good.${domain}`, `bad.${domain}`], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver).then(() => undefined, (e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", details: { problemType: "unauthorized", identifier: `bad.${domain}` } });
      expect(o.presented).toHaveLength(2);
      expect(o.cleaned).toHaveLength(2);
      expect(s.published().size).toBe(0);
    });

    it("when presenting fails for one name, the solver's error surfaces as it is and the values presented for the others are removed", async () => {
      const domain = fresh("broken");
      const failing: DnsChallengeSolver = {
        present: async (recordName, value) => {
          if (recordName.startsWith("_acme-challenge.broken.")) throw new AmlcertError("DNS_PROPAGATION_TIMEOUT", "propagation", `${recordName} did not propagate`);
          return s.solver.present(recordName, value);
        },
        cleanup: (h) => s.solver.cleanup(h),
      };
      const o = observed(failing);

      const err = await s.issuer.issue({ names: [`fine.${domain}`, `broken.${domain}`], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver).then(() => undefined, (e: unknown) => e);

      expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
      expect(o.presented.map((p) => p.recordName)).toEqual([`_acme-challenge.fine.${domain}`]);
      expect(o.cleaned).toHaveLength(1);
      expect(s.published().size).toBe(0);
    });

    it("when the CA refuses a name by policy, the order fails with ACME_REJECTED (rejectedIdentifier) before any challenge", async () => {
      const o = observed(s.solver);

      const err = await s.issuer.issue({ names: [`ok.${fresh("policy")}`, `www.${s.blockedDomain}`], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver).then(() => undefined, (e: unknown) => e);

      expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", details: { problemType: "rejectedIdentifier" } });
      expect((err as Error).message).toContain(`www.${s.blockedDomain}`);
      expect(o.presented).toEqual([]);
    });

    it("when the key is not a readable private key, the issuer fails with INTERNAL at acme-order before any challenge", async () => {
      const o = observed(s.solver);

      const err = await s.issuer.issue({ names: [fresh("key")], keyPem: "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n" }, o.solver).then(() => undefined, (e: unknown) => e);

      expect(err).toMatchObject({ code: "INTERNAL", stage: "acme-order" });
      expect(o.presented).toEqual([]);
    });
  });
}
