/**
 * ACME as a certificate source: a fresh key, then one order answered with DNS-01 through Azure DNS (the solver),
 * full chain downloaded. The ACME client is built lazily, so a run with nothing to renew never creates an account.
 *
 * The target's profile (acme.profile or targets[].profile) is checked against the directory's meta.profiles before
 * the order, and named in the configuration's words when the CA does not offer it. RFC 9773's renewalInfo of the
 * certificate in place comes from the same CA client.
 */
import { X509Certificate } from "node:crypto";
import type { Logger } from "pino";
import { AmlcertError, atStage } from "../errors.js";
import type { AcmeIssuer, CertificateSource, DnsChallengeSolver } from "../ports.js";
import { describeLifetime, KNOWN_PROFILE_LIFETIMES_MS } from "../acme/profiles.js";

export interface AcmeSourceDeps {
  acme: () => AcmeIssuer;
  solver: DnsChallengeSolver;
  generateKey: () => Promise<string>;
  /** the profile to order and the configuration field that set it (for messages) */
  profile?: { name: string; field: string };
  /** renewal.renewBefore: checked against the first certificate of a profile whose lifetime is not known */
  renewBeforeMs?: number;
  /** the CA's directory URL, for messages */
  directory?: string;
  logger?: Logger;
}

export function createAcmeSource(deps: AcmeSourceDeps): CertificateSource {
  const profile = deps.profile;
  const lifetimeMs = profile ? KNOWN_PROFILE_LIFETIMES_MS[profile.name] : undefined;
  let lifetimeChecked = lifetimeMs !== undefined;

  async function checkProfile(name: string, field: string, signal?: AbortSignal): Promise<void> {
    const issuer = deps.acme();
    if (!issuer.profiles) return;
    const offered = await issuer.profiles(signal);
    const ca = deps.directory ? `the CA at ${deps.directory}` : "the CA";
    if (offered === undefined) {
      throw new AmlcertError("CONFIG_INVALID", "config", `${field}: ${ca} offers no profiles (its directory has no meta.profiles); remove ${field}`, {
        details: { profile: name },
      });
    }
    if (!(name in offered)) {
      throw new AmlcertError("CONFIG_INVALID", "config", `${field}: "${name}" is not a profile ${ca} offers; it offers ${Object.keys(offered).join(", ")}`, {
        details: { profile: name, offered: Object.keys(offered) },
      });
    }
  }

  /** A profile of unknown lifetime: renewBefore is checked against the first certificate it brings. */
  function checkLifetime(chainPem: string): void {
    if (lifetimeChecked || !profile) return;
    lifetimeChecked = true;
    try {
      const leaf = new X509Certificate(chainPem);
      const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
      const log = deps.logger?.child({ component: "acme" });
      if (deps.renewBeforeMs !== undefined && deps.renewBeforeMs >= lifetime) {
        log?.warn(
          { profile: profile.name, lifetimeMs: lifetime, renewBeforeMs: deps.renewBeforeMs },
          `renewal.renewBefore (${describeLifetime(deps.renewBeforeMs)}) is not shorter than the ${describeLifetime(lifetime)} that ${profile.name} certificates live (${profile.field}); amlcert renews them at 2/3 of their lifetime instead. Set renewBefore shorter`,
        );
      } else {
        log?.info({ profile: profile.name, lifetimeMs: lifetime }, `${profile.name} certificates live ${describeLifetime(lifetime)}`);
      }
    } catch {
      // validation reports an unreadable certificate
    }
  }

  return {
    kind: "acme",
    ...(profile ? { profile: { name: profile.name, ...(lifetimeMs === undefined ? {} : { lifetimeMs }) } } : {}),
    async obtain({ names, replaces, profile: asked }, signal) {
      signal?.throwIfAborted();
      const wanted = asked ?? profile?.name;
      if (wanted !== undefined) await checkProfile(wanted, profile?.field ?? "profile", signal);
      const keyPem = await deps.generateKey().catch((err: unknown) => {
        throw atStage(err, "acme-order");
      });
      signal?.throwIfAborted();
      // the order's challenges wait on this run's signal: a stop ends the propagation wait and removes the TXT value
      const solver = signal ? { present: (name: string, value: string) => deps.solver.present(name, value, signal), cleanup: deps.solver.cleanup } : deps.solver;
      const { chainPem } = await deps.acme().issue(
        { names, keyPem, ...(replaces === undefined ? {} : { replaces }), ...(wanted === undefined ? {} : { profile: wanted }), ...(signal ? { signal } : {}) },
        solver,
      );
      checkLifetime(chainPem);
      return { chainPem, keyPem };
    },
    async renewalInfo(chainPem, signal) {
      return deps.acme().renewalInfo?.(chainPem, signal);
    },
    async check(signal) {
      if (!profile) return;
      try {
        await checkProfile(profile.name, profile.field, signal);
      } catch (err) {
        // only a profile the CA refuses is the configuration's fault; a CA that cannot be asked now is the order's to report
        if (err instanceof AmlcertError && err.code === "CONFIG_INVALID") throw err;
      }
    },
  };
}
