/**
 * ACME certificate profiles (draft-aaron-acme-profiles): names a CA lists in its directory's meta.profiles. Only the
 * CA knows what a profile issues; these are the lifetimes Let's Encrypt documents for its profiles
 * (https://letsencrypt.org/docs/profiles/). A profile not listed here has an unknown lifetime: amlcert checks
 * renewBefore against the first certificate it brings, and warns.
 */
export const KNOWN_PROFILE_LIFETIMES_MS: Readonly<Record<string, number>> = {
  classic: 90 * 86_400_000,
  tlsserver: 45 * 86_400_000,
  shortlived: 160 * 3_600_000,
};

/** Profile names as the drafts allow them: a token (letters, digits, and . _ -). */
export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function describeLifetime(ms: number): string {
  const hours = ms / 3_600_000;
  return hours % 24 === 0 ? `${hours / 24} days` : `${Math.round(hours * 10) / 10} hours`;
}
