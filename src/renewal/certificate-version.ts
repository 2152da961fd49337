/**
 * A stored certificate version: the labels and annotations amlcert writes on each secret, in one codec. Reuse, prune,
 * status and the rollout bookkeeping all read a version through here, so the layout is written down once.
 */
import { createHash } from "node:crypto";
import type { CertificateInfo } from "../certs/certificate.js";
import type { SecretWrite, StoredSecret } from "../ports.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../labels.js";

export { LABEL_MANAGED_BY, MANAGED_BY };
export const LABEL_SECRET_BASE = "amlcert.io/secret-base";
export const LABEL_FQDN_HASH = "amlcert.io/fqdn-hash";
export const ANNOTATION = {
  fqdn: "amlcert.io/fqdn",
  names: "amlcert.io/names",
  serial: "amlcert.io/serial",
  notBefore: "amlcert.io/not-before",
  notAfter: "amlcert.io/not-after",
  fingerprint: "amlcert.io/sha256-fingerprint",
  issuer: "amlcert.io/issuer",
  /** "pending" until an extension update pointing at this secret succeeded, then "done" */
  rollout: "amlcert.io/rollout",
  /** extension updates that failed for this secret */
  rolloutFailures: "amlcert.io/rollout-failures",
} as const;
/** A stored certificate whose rollout failed this often is not tried again (the extension may reject it). */
export const MAX_ROLLOUT_FAILURES = 3;

export interface RolloutState {
  state: "pending" | "done";
  failures: number;
}

/** The label selector of every version stored under one base name. */
export function versionsSelector(base: string): string {
  return `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_SECRET_BASE}=${base}`;
}

/** Slots mode: the two secrets of a target, `<base>-a` and `<base>-b` (created by the manifests in deploy/). */
export function slotNames(base: string): [string, string] {
  return [`${base}-a`, `${base}-b`];
}

/** The other slot of `name` (undefined when `name` is not one of the two slots of `base`). */
export function otherSlot(base: string, name: string | undefined): string | undefined {
  const [a, b] = slotNames(base);
  return name === a ? b : name === b ? a : undefined;
}

/** A slot holds a certificate once amlcert wrote `cert.pem` into it; the manifests create both slots empty. */
export function slotHoldsCertificate(secret: StoredSecret | undefined): boolean {
  return (secret?.data["cert.pem"]?.length ?? 0) > 0;
}

/** `<base>-<yyyymmdd>-<last 8 hex of the serial>`: sortable by day, unique per certificate. */
export function versionedSecretName(base: string, leaf: CertificateInfo): string {
  const day = leaf.notBefore.toISOString().slice(0, 10).replace(/-/g, "");
  return `${base}-${day}-${leaf.serialNumber.toLowerCase().slice(-8)}`;
}

/** What a stored version says of its rollout; a secret amlcert did not annotate has state undefined. */
export function rolloutOf(secret: StoredSecret): { state?: string; failures: number } {
  return { state: secret.annotations[ANNOTATION.rollout], failures: Number(secret.annotations[ANNOTATION.rolloutFailures] ?? "0") || 0 };
}

/** The stored version's expiry as annotated (for ordering versions without parsing them). */
export function annotatedNotAfter(secret: StoredSecret): string {
  return secret.annotations[ANNOTATION.notAfter] ?? "";
}

export interface VersionContent {
  name: string;
  base: string;
  fqdn: string;
  names: string[];
  chainPem: string;
  keyPem: string;
  leaf: CertificateInfo;
}

export function secretFor(v: VersionContent, rollout: RolloutState = { state: "pending", failures: 0 }): SecretWrite {
  return {
    name: v.name,
    data: { "cert.pem": Buffer.from(v.chainPem), "key.pem": Buffer.from(v.keyPem) },
    labels: {
      [LABEL_MANAGED_BY]: MANAGED_BY,
      [LABEL_SECRET_BASE]: v.base,
      [LABEL_FQDN_HASH]: createHash("sha256").update(v.fqdn).digest("hex").slice(0, 16),
    },
    annotations: {
      [ANNOTATION.fqdn]: v.fqdn,
      [ANNOTATION.names]: v.names.join(","),
      [ANNOTATION.serial]: v.leaf.serialNumber,
      [ANNOTATION.notBefore]: v.leaf.notBefore.toISOString(),
      [ANNOTATION.notAfter]: v.leaf.notAfter.toISOString(),
      [ANNOTATION.fingerprint]: v.leaf.fingerprint256,
      [ANNOTATION.issuer]: v.leaf.issuer,
      [ANNOTATION.rollout]: rollout.state,
      [ANNOTATION.rolloutFailures]: String(rollout.failures),
    },
  };
}
