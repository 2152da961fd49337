/**
 * Pure policies over stored versions, each answer with a named reason (logged, and testable without a cluster):
 *   reuse  which stored, never rolled-out certificate a renewal may roll out instead of ordering a new one
 *   prune  which older versions to delete once a new one is proven served
 *   in place  whether the version the extension names was really rolled out
 */
import { inspectPair, type CertificateInfo } from "../certs/certificate.js";
import type { StoredSecret } from "../ports.js";
import { annotatedNotAfter, MAX_ROLLOUT_FAILURES, otherSlot, rolloutOf, slotHoldsCertificate, slotNames } from "./certificate-version.js";
import { renewalTime } from "./plan.js";

export const ReuseRejections = ["InPlace", "RolledOutBefore", "RolloutRejected", "Unusable", "OtherKeyType", "NotNewer", "Due"] as const;
export type ReuseRejection = (typeof ReuseRejections)[number];

export interface ReusableVersion {
  name: string;
  chainPem: string;
  keyPem: string;
  leaf: CertificateInfo;
  failures: number;
}

export interface ReuseInput {
  candidates: StoredSecret[];
  /** the secret the extension serves now */
  inPlace?: string;
  names: string[];
  keyType?: string;
  /** a reused certificate must expire later than this (the sound certificate in place), if set */
  mustOutlive?: Date;
  now: Date;
  renewBeforeMs?: number;
}

export interface ReuseDecision {
  pick?: ReusableVersion;
  rejected: { name: string; reason: ReuseRejection }[];
}

const text = (s: StoredSecret, key: string) => s.data[key]?.toString("utf8") ?? "";

function judge(c: StoredSecret, input: ReuseInput): ReusableVersion | ReuseRejection {
  if (c.name === input.inPlace) return "InPlace";
  const rollout = rolloutOf(c);
  // never a version that was rolled out before (a rollback target) or that the extension keeps rejecting
  if (rollout.state !== "pending") return "RolledOutBefore";
  if (rollout.failures >= MAX_ROLLOUT_FAILURES) return "RolloutRejected";
  const chainPem = text(c, "cert.pem");
  const keyPem = text(c, "key.pem");
  const r = inspectPair(chainPem, keyPem, input.names);
  if (!r.leaf || r.problems.length > 0) return "Unusable";
  if (input.keyType !== undefined && r.leaf.keyType !== input.keyType) return "OtherKeyType";
  if (r.leaf.notAfter.getTime() <= (input.mustOutlive?.getTime() ?? 0)) return "NotNewer";
  if (input.now.getTime() >= renewalTime(r.leaf.notBefore, r.leaf.notAfter, input.renewBeforeMs).getTime()) return "Due";
  return { name: c.name, chainPem, keyPem, leaf: r.leaf, failures: rollout.failures };
}

/** The newest stored version that may be rolled out instead of ordering again (a run whose rollout failed stored it). */
export function chooseReusable(input: ReuseInput): ReuseDecision {
  const rejected: ReuseDecision["rejected"] = [];
  let pick: ReusableVersion | undefined;
  for (const c of input.candidates) {
    const verdict = judge(c, input);
    if (typeof verdict === "string") rejected.push({ name: c.name, reason: verdict });
    else if (!pick || verdict.leaf.notAfter > pick.leaf.notAfter) pick = verdict;
  }
  return { pick, rejected };
}

/**
 * The versions to delete: everything but `keep` (the new version first, then the one it replaced), leaving
 * `keepPrevious` previous versions in all, newest first.
 */
export function versionsToPrune(managed: StoredSecret[], keep: string[], keepPrevious: number): string[] {
  const older = managed.filter((m) => !keep.includes(m.name)).sort((a, b) => annotatedNotAfter(b).localeCompare(annotatedNotAfter(a)));
  const previousKept = keep.slice(1).filter((k) => managed.some((m) => m.name === k)).length;
  return older.slice(Math.max(0, keepPrevious - previousKept)).map((m) => m.name);
}

/**
 * The version the extension names, as far as its rollout goes:
 *   Confirmed  rolled out (annotated done, or not ours), or pending while the extension's last operation did not
 *              fail (a timed-out wait that ARM completed later, a crash before the annotation): confirm it by serving
 *   Pending    its rollout failed: ARM keeps the new settings after a failed operation, but azureml-fe keeps serving
 *              the previous certificate, so it must be rolled out again (and counted)
 *   Rejected   its rollout failed MAX_ROLLOUT_FAILURES times: the extension will not take it; order a new one
 */
export type InPlaceRollout = "Confirmed" | "Pending" | "Rejected";

export function inPlaceRollout(secret: StoredSecret | undefined, provisioningState: string | undefined): InPlaceRollout {
  if (!secret) return "Confirmed";
  const r = rolloutOf(secret);
  if (r.state !== "pending" || !/^(failed|canceled)$/i.test(provisioningState ?? "")) return "Confirmed";
  return r.failures >= MAX_ROLLOUT_FAILURES ? "Rejected" : "Pending";
}

/** An extension operation that ended without effect: ARM keeps its settings, Helm rolled the release back. */
export const operationFailed = (provisioningState: string | undefined) => /^(failed|canceled|cancelled)$/i.test(provisioningState ?? "");

export interface SlotInput {
  /** the config's secretName: the slots are `<base>-a` and `<base>-b` */
  base: string;
  /** the secret the extension's settings name (scoringFe.sslSecret, else sslSecret) */
  named?: string;
  provisioningState?: string;
  /** both slots as read (undefined: missing) */
  slots: Record<string, StoredSecret | undefined>;
}

/**
 * Slots mode, which secret is served and which one the next certificate goes to:
 *   served         the slot the extension names; but when its last operation failed and that slot's rollout is
 *                  pending (amlcert pointed the extension at it and the operation failed), Helm rolled back to the
 *                  release before: the other slot is served, if it holds a certificate rolled out before
 *   target         always the slot that is not served, so a rollout PATCH is a real change and the served slot
 *                  stays as the rollback target. When the extension names a secret that is not a slot (the one a
 *                  user made by hand, or a versioned one) or nothing: a free slot (no cert.pem), else one never
 *                  rolled out, else the one expiring first, else `-a`
 *   failedRollout  the slot the extension names whose rollout failed (served is then the other one, or nothing)
 */
export interface SlotView {
  served?: string;
  target: string;
  failedRollout?: string;
  /** why the served and target slots are what they are (logged) */
  reason: "NamedSlot" | "FailedRolloutRolledBack" | "FailedRolloutNothingServed" | "NotASlot" | "NothingNamed";
}

export function resolveSlots(input: SlotInput): SlotView {
  const [a, b] = slotNames(input.base);
  const other = otherSlot(input.base, input.named);
  if (other !== undefined) {
    const named = input.named!;
    if (operationFailed(input.provisioningState) && rolloutOf(input.slots[named] ?? emptySecret(named)).state === "pending") {
      const o = input.slots[other];
      const otherServed = slotHoldsCertificate(o) && rolloutOf(o!).state === "done";
      return otherServed
        ? { served: other, target: named, failedRollout: named, reason: "FailedRolloutRolledBack" }
        : { target: other, failedRollout: named, reason: "FailedRolloutNothingServed" };
    }
    return { served: named, target: other, reason: "NamedSlot" };
  }
  const rank = (name: string) => {
    const secret = input.slots[name];
    if (!slotHoldsCertificate(secret)) return 0;
    return rolloutOf(secret!).state === "done" ? 2 : 1;
  };
  const ra = rank(a);
  const rb = rank(b);
  const target = rb < ra ? b : ra < rb ? a : ra === 2 && annotatedNotAfter(input.slots[b]!) < annotatedNotAfter(input.slots[a]!) ? b : a;
  return { ...(input.named ? { served: input.named } : {}), target, reason: input.named ? "NotASlot" : "NothingNamed" };
}

const emptySecret = (name: string): StoredSecret => ({ name, type: "Opaque", data: {}, labels: {}, annotations: {} });
