/**
 * Pure policies over stored versions, each answer with a named reason (logged, and testable without a cluster):
 *   reuse  which stored, never rolled-out certificate a renewal may roll out instead of ordering a new one
 *   prune  which older versions to delete once a new one is proven served
 *   in place  whether the version the extension names was really rolled out
 */
import { inspectPair, type CertificateInfo } from "../certs/certificate.js";
import type { StoredSecret } from "../ports.js";
import { annotatedNotAfter, MAX_ROLLOUT_FAILURES, rolloutOf } from "./certificate-version.js";
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
