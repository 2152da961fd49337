/**
 * Crash recovery (C2): the first step of a run once it holds the Lease, before it inspects anything. It reads the
 * target's journal (src/history/journal.ts), which a previous run wrote before relying on what it placed, and:
 *
 *   TXT values   removes each one the journal names, from the zone the journal names (only those: a value of
 *                anyone else's is never touched), and drops it from the journal once removed
 *   order        an order in flight when the previous run ended is abandoned (it was counted against the
 *                duplicate-certificate limit before it was placed); the journal forgets it
 *   stored       a secret stored with a new certificate and never referenced is handed to the rest of the run,
 *                which rolls it out (it is the version reused) or removes it (`settleStored`)
 *
 * It also reports the rate-limit state the history keeps (retryNotBefore). Reconcile never fails a run: a journal
 * that cannot be read or written is a warning, and the run goes on as if there were no journal.
 */
import { AmlcertError } from "../errors.js";
import type { JournalTxt, RunJournal, TargetHistory } from "../history/history.js";
import { journalChanges } from "../history/journal.js";
import { canonicalNames, checkDuplicateLimit, rateLimitedUntil, withIssuance, withoutIssuance, type DuplicateCheck } from "../history/rate-limit.js";
import type { CertificateSource } from "../ports.js";
import { rolloutOf } from "./certificate-version.js";
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { Inspection } from "./inspect.js";

export interface Reconciled {
  /** the history as this run found it (before reconciling) */
  history?: TargetHistory;
  /** TXT values a previous run left behind, removed now */
  removedTxt: JournalTxt[];
  /** an order a previous run had in flight when it ended */
  abandonedOrder?: NonNullable<RunJournal["order"]>;
  /** a secret a previous run stored and never referenced: this run rolls it out or removes it */
  stored?: NonNullable<RunJournal["stored"]>;
  /** the CA said not before this: the run orders nothing (unless forced) */
  rateLimitedUntil?: Date;
}

export async function reconcile(deps: RenewDeps, s: RenewSettings): Promise<Reconciled> {
  const journal = deps.journal;
  if (!journal) return { removedTxt: [] };
  const log = deps.logger.child({ fqdn: s.fqdn, stage: "preflight" });
  let history: TargetHistory | undefined;
  try {
    history = await journal.read();
  } catch (err) {
    log.warn({ err }, "could not read the run journal; a crashed run's leftovers (if any) are not cleaned up by this run");
    return { removedTxt: [] };
  }
  const limited = rateLimitedUntil(history, deps.clock.now(), s.force);
  const left = history?.journal;
  if (!left) return { history, removedTxt: [], ...(limited ? { rateLimitedUntil: limited } : {}) };

  const from = left.holder ? ` by ${left.holder}` : "";
  if (left.txt.length > 0) log.warn({ values: left.txt.map((t) => t.record), previousRun: left.holder }, `a previous run${from} ended with ${left.txt.length} TXT value(s) in place; removing them`);
  // the solver's clean-up: removes exactly that value, logs a failure, drops the journal entry once removed
  await Promise.all(left.txt.map((t) => journal.removeTxt(t)));
  if (left.order) {
    log.warn({ names: left.order.names, startedAt: left.order.at, orderUrl: left.order.url, previousRun: left.holder }, `a previous run${from} ended with an order in flight; it is abandoned (and was counted against the duplicate-certificate limit)`);
    await journal.change(journalChanges.orderDone()).catch((err: unknown) => log.warn({ err }, "could not update the run journal"));
  }
  if (left.stored) log.info({ secret: left.stored.secret, serial: left.stored.serial, previousRun: left.holder }, `a previous run${from} stored a certificate it did not roll out; this run rolls it out or removes it`);
  return {
    history,
    removedTxt: left.txt,
    ...(left.order ? { abandonedOrder: left.order } : {}),
    ...(left.stored ? { stored: left.stored } : {}),
    ...(limited ? { rateLimitedUntil: limited } : {}),
  };
}

/**
 * With nothing to renew: the stored-but-unreferenced secret a crashed run left is settled. Referenced by the
 * extension after all (the run died after the PATCH): nothing to do. Gone: nothing to do. Otherwise, in versioned
 * mode, a version that was never rolled out (annotated pending) is deleted: the certificate in place is sound, and
 * an unreferenced version must not outlive this run. Fixed mode stores in place; slots mode's free slot is the
 * slot reconciliation's (src/renewal/inspect.ts, policies.ts). The journal forgets it in every case.
 */
export async function settleStored(deps: RenewDeps, s: RenewSettings, inspection: Inspection, recovered: Reconciled): Promise<void> {
  const stored = recovered.stored;
  if (!stored || !deps.journal) return;
  const log = deps.logger.child({ fqdn: s.fqdn, stage: "prune" });
  if (stored.secret !== inspection.currentSecretName && s.secretMode === "versioned") {
    const secret = await deps.kube.getSecret(stored.secret);
    if (secret && rolloutOf(secret).state === "pending") {
      await deps.kube.deleteSecret(stored.secret);
      log.info({ secret: stored.secret, serial: stored.serial }, "removed the certificate a crashed run stored and never rolled out (the certificate in place is not due)");
    }
  }
  await deps.journal.change(journalChanges.storedSettled(stored.secret)).catch((err: unknown) => log.warn({ err }, "could not update the run journal"));
}

/**
 * The ACME source, journaled: before an order is placed it is recorded (with its names and time) and counted
 * against Let's Encrypt's duplicate-certificate limit, in one write; a 6th certificate for the exact name set
 * within 7 days is refused (`DuplicateCertificateLimit`, ACME_RATE_LIMITED with its retryAt) unless forced. An order
 * that fails is uncounted again; one that succeeds stays counted, and its journal entry is replaced by the stored
 * secret (`journalStored`). A journal write that fails is a warning: the order goes ahead unguarded.
 */
export function journaledSource(deps: RenewDeps, s: RenewSettings): CertificateSource {
  const { journal, source } = deps;
  if (!journal || source.kind !== "acme") return source;
  const log = deps.logger.child({ fqdn: s.fqdn, stage: "acme-order" });
  return {
    ...source,
    async obtain(req, signal) {
      const at = deps.clock.now();
      let refused: Extract<DuplicateCheck, { allowed: false }> | undefined;
      let counted = false;
      try {
        await journal.change((h) => {
          const check = checkDuplicateLimit(h.issued, req.names, at);
          refused = !check.allowed && !s.force ? check : undefined;
          if (refused) return h;
          counted = true;
          return journalChanges.ordering({ names: canonicalNames(req.names), at: at.toISOString() }, journal.holder)(withIssuance(h, req.names, at));
        });
      } catch (err) {
        counted = false;
        log.warn({ err }, "could not record the order in the run journal; ordering without the duplicate-certificate check");
      }
      if (refused) {
        throw new AmlcertError("ACME_RATE_LIMITED", "acme-order", refused.message, {
          details: { reason: refused.reason, retryAt: refused.retryAt.toISOString(), count: refused.count, names: canonicalNames(req.names) },
        });
      }
      try {
        return await source.obtain(req, signal);
      } catch (err) {
        if (counted) {
          await journal
            .change((h) => journalChanges.orderDone()(withoutIssuance(h, req.names, at)))
            .catch((e: unknown) => log.warn({ err: e }, "could not update the run journal after the failed order"));
        }
        throw err;
      }
    },
  };
}

/**
 * After a new certificate is stored and before the extension is pointed at it: the journal names the stored secret
 * (and forgets the order), so a run killed before the rollout leaves it to the next run. Never throws: the
 * certificate is already stored, and a journal that cannot be written must not stop it being rolled out.
 */
export async function journalStored(deps: RenewDeps, s: RenewSettings, inspection: Inspection, stored: { name: string; serial: string }): Promise<void> {
  if (!deps.journal || stored.name === inspection.currentSecretName) return;
  const entry = { secret: stored.name, serial: stored.serial, at: deps.clock.now().toISOString() };
  await deps.journal
    .change(journalChanges.stored(entry, deps.journal.holder))
    .catch((err: unknown) => deps.logger.warn({ fqdn: s.fqdn, stage: "store", err }, "could not record the stored secret in the run journal"));
}
