/**
 * The renewal decision for a source that renews its certificates itself (Key Vault, a Kubernetes TLS secret that
 * cert-manager keeps fresh): amlcert does not renew, it follows. Pure: the plan of what is in place (plan.ts), the
 * certificate the source holds now (its offer) and the time.
 *
 * Checks in order, the first that applies wins:
 * 1. Forced, or nothing sound in place (missing, broken, wrong names or key): take what the source has (plan's reason).
 * 2. The source holds a certificate that expires later than the one in place: SourceUpdated (a new Key Vault
 *    version, a changed secret).
 * 3. The source holds the one in place (or one that is not newer) and it is due or expired: SourceNotRenewing. Nothing is
 *    obtained (it would be refused as not newer every run); a warning, the source-not-renewing metric and its alert
 *    say it instead of a failed run every day.
 * 4. Otherwise the plan stands (UpToDate).
 */
import type { SourceOffer } from "../ports.js";
import type { PlanDecision } from "./plan.js";

export interface SourceDecisionInput {
  plan: PlanDecision;
  offer: SourceOffer;
  /** the source as people read it, e.g. `keyVault https://kv.vault.azure.net/certificates/web` */
  origin: string;
}

export interface SourceDecision {
  decision: PlanDecision;
  /** the certificate in place is due and the source has nothing newer */
  notRenewing: boolean;
  warnings: string[];
}

const iso = (d: Date) => d.toISOString();

export function decideFromSource({ plan, offer, origin }: SourceDecisionInput): SourceDecision {
  const current = plan.current;
  if ((plan.renew && plan.reason === "Forced") || !plan.currentSound || !current) {
    // the plan's reason stands; its message says where the certificate will come from
    return { decision: { ...plan, message: `${plan.message}; taking the certificate ${origin} holds (version ${offer.version}, serial ${offer.serialNumber})` }, notRenewing: false, warnings: [] };
  }
  const same = offer.fingerprint256 === current.fingerprint256;
  const newer = !same && offer.notAfter.getTime() > current.notAfter.getTime();
  if (newer) {
    return {
      decision: {
        renew: true,
        reason: "SourceUpdated",
        message: `${origin} holds a newer certificate (version ${offer.version}, serial ${offer.serialNumber}, expires ${iso(offer.notAfter)}) than the one in place (serial ${current.serialNumber}, expires ${iso(current.notAfter)})`,
        current,
        renewAt: plan.renewAt,
        currentSound: true,
      },
      notRenewing: false,
      warnings: [],
    };
  }
  const warnings = same
    ? []
    : [`${origin} holds a different certificate (version ${offer.version}, serial ${offer.serialNumber}) that does not expire later than the one in place (${iso(current.notAfter)}); keeping the one in place`];
  if (!plan.renew) {
    // plan and status say where the certificate comes from, also when nothing is to be done
    const held = same ? `${origin} holds this certificate (version ${offer.version})` : `${origin} holds nothing newer`;
    return { decision: { ...plan, message: `${plan.message}; ${held}` }, notRenewing: false, warnings };
  }
  // due (InRenewalWindow) or Expired, and the source has nothing better
  const renewAt = plan.renewAt ?? current.notAfter;
  const message =
    `the source is not renewing: ${origin} still holds ${same ? "the certificate in place" : "no newer certificate"} (serial ${current.serialNumber}, ` +
    `${plan.reason === "Expired" ? "expired" : "expires"} ${iso(current.notAfter)}; renewal was due at ${iso(renewAt)}); renew it at the source`;
  return {
    decision: { renew: false, reason: "SourceNotRenewing", message, current, renewAt, currentSound: true },
    notRenewing: true,
    warnings: [...warnings, message],
  };
}

/** inspect.ts's step: the plan, judged against what `source` offers; its warnings are added to `warnings`. */
export function followSource(plan: PlanDecision, offer: SourceOffer, source: { kind: string; origin?: string }, warnings: string[]): PlanDecision {
  const judged = decideFromSource({ plan, offer, origin: source.origin ?? source.kind });
  warnings.push(...judged.warnings);
  return judged.decision;
}
