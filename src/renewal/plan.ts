/**
 * The renewal decision: a pure function of what is stored, what is wanted and the time. Checks run in a fixed
 * order and the first that fires names the reason (stable identifiers: logs, `amlcert plan`, metric labels).
 */
import { describeProblem, inspectPair, type CertificateInfo, type PairProblem } from "../certs/certificate.js";
import { ariRenewalTime } from "../acme/ari.js";
import { describeLifetime, KNOWN_PROFILE_LIFETIMES_MS } from "../acme/profiles.js";

export const RenewalReasons = [
  "Forced",
  "SecretMissing",
  "SecretMissingData",
  "SecretUnparsable",
  "KeyUnusable",
  "KeyMismatch",
  "NamesNotCovered",
  "ChainIncomplete",
  "Expired",
  "InRenewalWindow",
  /** the extension failed to roll out the certificate in place MAX_ROLLOUT_FAILURES times (set by inspect.ts) */
  "RolloutRejected",
  /** a Key Vault or Kubernetes TLS source holds a certificate newer than the one in place (set by source-decision.ts) */
  "SourceUpdated",
  /** renew --enable-tls on an extension with TLS off: a certificate of its own, then TLS on (set by inspect.ts) */
  "EnableTls",
] as const;
export type RenewalReason = (typeof RenewalReasons)[number];

export interface StoredPair {
  /** the secret's name, for messages */
  secretName: string;
  certPem?: string;
  keyPem?: string;
}

export interface PlanInput {
  stored: StoredPair | undefined;
  /** FQDN first, then extra SANs */
  names: string[];
  now: Date;
  /** renew this long before notAfter; default: at 2/3 of the lifetime */
  renewBeforeMs?: number;
  force?: boolean;
  /** the CA's suggested window for the certificate in place (RFC 9773 ARI); it decides the renewal time when given */
  renewalWindow?: { certId: string; start: Date; end: Date };
  /** what an order would bring: the profile and, when known, its certificates' lifetime */
  profile?: { name: string; lifetimeMs?: number };
}

/** Where the renewal time came from: the CA's ARI window, renewBefore, or 2/3 of the lifetime. */
export type RenewAtSource = "ari" | "lifetime" | "renewBefore";

export type PlanDecision =
  | { renew: true; reason: RenewalReason; message: string; current?: CertificateInfo; renewAt?: Date; renewAtSource?: RenewAtSource; currentSound: boolean }
  | { renew: false; reason: "UpToDate" | NoRenewalReason; message: string; current: CertificateInfo; renewAt: Date; renewAtSource?: RenewAtSource; currentSound: true };

/**
 * Nothing to renew although the certificate is due:
 * - SourceNotRenewing: its source (not ACME) has not renewed it (source-decision.ts);
 * - ProfileLifetimeShorter: a certificate of the configured profile ordered now would expire before the sound one in
 *   place, so validation would refuse it (CERT_NOT_NEWER); amlcert orders once an order's result would be newer.
 */
export type NoRenewalReason = "SourceNotRenewing" | "ProfileLifetimeShorter";

export { KNOWN_PROFILE_LIFETIMES_MS };

/**
 * The renewal time of the certificate in place and where it came from. The CA's ARI window wins when given (it knows
 * about revocations and incidents): a time inside it that is stable per certificate, never after notAfter.
 */
export function renewalTimeOf(
  current: Pick<CertificateInfo, "notBefore" | "notAfter">,
  renewBeforeMs?: number,
  window?: { certId: string; start: Date; end: Date },
): { at: Date; source: RenewAtSource } {
  if (window) {
    const at = ariRenewalTime(window, window.certId);
    return { at: at.getTime() > current.notAfter.getTime() ? current.notAfter : at, source: "ari" };
  }
  const lifetime = current.notAfter.getTime() - current.notBefore.getTime();
  const usesRenewBefore = renewBeforeMs !== undefined && renewBeforeMs > 0 && renewBeforeMs < lifetime;
  return { at: renewalTime(current.notBefore, current.notAfter, renewBeforeMs), source: usesRenewBefore ? "renewBefore" : "lifetime" };
}

/**
 * When to renew a certificate valid from notBefore to notAfter: renewBefore before expiry when it is given and
 * shorter than the lifetime, otherwise at 2/3 of the lifetime (cert-manager's and certbot's default; for a 90-day
 * ACME certificate that is 30 days before expiry).
 */
export function renewalTime(notBefore: Date, notAfter: Date, renewBeforeMs?: number): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  if (renewBeforeMs !== undefined && renewBeforeMs > 0 && renewBeforeMs < lifetime) {
    return new Date(notAfter.getTime() - renewBeforeMs);
  }
  return new Date(notBefore.getTime() + Math.floor((lifetime * 2) / 3));
}

const firstOf = (problems: PairProblem[], kind: PairProblem["kind"]) => problems.find((p) => p.kind === kind);

export function planRenewal(input: PlanInput): PlanDecision {
  const { stored, names, now } = input;
  const inspected = stored ? inspectPair(stored.certPem, stored.keyPem, names) : undefined;
  const current = inspected?.leaf;
  // sound: a parsable pair that matches, covers the names and chains (it may still be due or expired)
  const currentSound = Boolean(current) && (inspected?.problems ?? []).every((p) => p.kind === "key" && p.problem === "not-pkcs8");
  const renew = (reason: RenewalReason, message: string): PlanDecision => ({ renew: true, reason, message, current, currentSound });

  // a sound certificate in place that outlives anything the profile would bring: ordering would only be refused
  const shorter = (): PlanDecision | undefined => {
    const lifetimeMs = input.profile?.lifetimeMs;
    if (!current || !currentSound || lifetimeMs === undefined) return undefined;
    if (now.getTime() + lifetimeMs > current.notAfter.getTime()) return undefined;
    // the first moment a new certificate expires later than the one in place
    const from = new Date(current.notAfter.getTime() - lifetimeMs + 1_000);
    return {
      renew: false,
      reason: "ProfileLifetimeShorter",
      message:
        `a ${input.profile!.name} certificate (${describeLifetime(lifetimeMs)}) ordered now would expire before the one in place ` +
        `(${current.notAfter.toISOString()}), so it would be refused; ordering from ${from.toISOString()}`,
      current,
      renewAt: from,
      renewAtSource: "lifetime",
      currentSound: true,
    };
  };

  if (input.force) return shorter() ?? renew("Forced", "--force was given");
  if (!stored) return renew("SecretMissing", "no certificate secret is in place");
  if (!stored.certPem || !stored.keyPem) {
    const missing = [!stored.certPem && "cert.pem", !stored.keyPem && "key.pem"].filter(Boolean).join(" and ");
    return renew("SecretMissingData", `secret ${stored.secretName} has no ${missing}`);
  }
  const problems = inspected!.problems;
  const unparsable = firstOf(problems, "cert-unparsable");
  if (unparsable || !current) return renew("SecretUnparsable", `secret ${stored.secretName}: ${unparsable ? describeProblem(unparsable) : "unreadable"}`);
  // An unencrypted PKCS#1/SEC1 key works; only what amlcert writes must be PKCS#8.
  const keyProblem = problems.find((p) => p.kind === "key" && p.problem !== "not-pkcs8");
  if (keyProblem) return renew("KeyUnusable", `secret ${stored.secretName}: ${describeProblem(keyProblem)}`);
  const mismatch = firstOf(problems, "key-mismatch");
  if (mismatch) return renew("KeyMismatch", `secret ${stored.secretName}: ${describeProblem(mismatch)}`);
  const namesProblem = firstOf(problems, "names");
  if (namesProblem) return renew("NamesNotCovered", `secret ${stored.secretName}: ${describeProblem(namesProblem)}`);
  const chain = firstOf(problems, "chain");
  if (chain) return renew("ChainIncomplete", `secret ${stored.secretName}: ${describeProblem(chain)}`);

  const { at: renewAt, source: renewAtSource } = renewalTimeOf(current, input.renewBeforeMs, input.renewalWindow);
  const why = renewAtSource === "ari" ? " (the CA's renewal window)" : "";
  if (now.getTime() >= current.notAfter.getTime()) {
    return { ...renew("Expired", `secret ${stored.secretName}: the certificate expired at ${current.notAfter.toISOString()}`), renewAt, renewAtSource };
  }
  if (now.getTime() >= renewAt.getTime()) {
    return (
      shorter() ?? {
        ...renew("InRenewalWindow", `secret ${stored.secretName}: renewal was due at ${renewAt.toISOString()}${why}; the certificate expires ${current.notAfter.toISOString()}`),
        renewAt,
        renewAtSource,
      }
    );
  }
  return {
    renew: false,
    reason: "UpToDate",
    message: `valid until ${current.notAfter.toISOString()}; renewal due at ${renewAt.toISOString()}${why}`,
    current,
    renewAt,
    renewAtSource,
    currentSound: true,
  };
}
