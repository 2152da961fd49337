/**
 * The journal of one target's run (C2): what it placed before relying on it, kept in the target's history
 * (src/history/history.ts) so that a run killed at any point (SIGKILL, OOM, a lost node) leaves the next run an
 * exact list of what to undo or pick up (src/renewal/reconcile.ts).
 *
 *   TXT value    recorded BEFORE it is added, dropped after it is removed: a later run removes only values named here
 *   order        recorded before the order is placed (and counted against the duplicate-certificate limit), dropped
 *                once its certificate is stored or the order failed
 *   stored       a secret written with a new certificate and not yet referenced by the extension, recorded after
 *                the secret write (the key is stored before anything else can fail) and before the extension PATCH
 *
 * The changes are pure functions on a history; `createJournalWriter` batches the changes made while a write is in
 * flight into the next write (concurrent challenges present their TXT values at once), so a run makes one write per
 * step, not one per value.
 */
import type { HistoryStore, JournalTxt, RunJournal, TargetHistory } from "./history.js";

/** More TXT values than any order has (100 names, each with a wildcard) means a journal that is not ours to trust. */
export const MAX_JOURNAL_TXT = 200;

export type HistoryChange = (h: TargetHistory) => TargetHistory;

const sameTxt = (a: JournalTxt, b: JournalTxt) => a.record === b.record && a.zone === b.zone && a.value === b.value;

/** The history with `journal` as its journal: an empty journal is dropped, so a finished run leaves no key behind. */
export function withJournal(h: TargetHistory, journal: RunJournal): TargetHistory {
  const next = { ...h };
  if (journal.txt.length === 0 && !journal.order && !journal.stored) delete next.journal;
  else next.journal = journal;
  return next;
}

const journalOf = (h: TargetHistory, holder?: string): RunJournal => ({ ...(h.journal ?? { txt: [] }), ...(holder ? { holder } : {}) });

export const journalChanges = {
  /** before the value is added */
  txtPlacing: (t: JournalTxt, holder?: string): HistoryChange => (h) => {
    const j = journalOf(h, holder);
    const txt = j.txt.some((x) => sameTxt(x, t)) ? j.txt : [...j.txt, t].slice(-MAX_JOURNAL_TXT);
    return withJournal(h, { ...j, txt });
  },
  /** after the value is removed */
  txtRemoved: (t: JournalTxt): HistoryChange => (h) => {
    if (!h.journal) return h;
    return withJournal(h, { ...h.journal, txt: h.journal.txt.filter((x) => !sameTxt(x, t)) });
  },
  ordering: (order: NonNullable<RunJournal["order"]>, holder?: string): HistoryChange => (h) => withJournal(h, { ...journalOf(h, holder), order }),
  orderDone: (): HistoryChange => (h) => {
    if (!h.journal?.order) return h;
    const { order: _order, ...rest } = h.journal;
    return withJournal(h, rest);
  },
  /** a new certificate is stored (the order is over) and not yet referenced */
  stored: (stored: NonNullable<RunJournal["stored"]>, holder?: string): HistoryChange => (h) => {
    const { order: _order, ...rest } = journalOf(h, holder);
    return withJournal(h, { ...rest, stored });
  },
  /** the stored secret is referenced (rolled out), rolled back, or removed */
  storedSettled: (secret?: string): HistoryChange => (h) => {
    if (!h.journal?.stored || (secret !== undefined && h.journal.stored.secret !== secret)) return h;
    const { stored: _stored, ...rest } = h.journal;
    return withJournal(h, rest);
  },
};

/** Apply changes in order. */
export const applyChanges = (h: TargetHistory, changes: HistoryChange[]): TargetHistory => changes.reduce((acc, f) => f(acc), h);

export interface JournalWriter {
  /** Write `change` (with any made while the previous write was in flight). Rejects when the write failed. */
  change(change: HistoryChange): Promise<TargetHistory>;
  /** how many writes were made (bounded: at most one per step of the run) */
  readonly writes: number;
}

/** One target's history writer: changes made while a write is in flight go together into the next write. */
export function createJournalWriter(store: HistoryStore, fqdn: string): JournalWriter {
  let queue: HistoryChange[] = [];
  let next: Promise<TargetHistory> | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let writes = 0;
  const change = (c: HistoryChange): Promise<TargetHistory> => {
    queue.push(c);
    if (next) return next;
    const previous = running;
    const write = (async () => {
      await previous.catch(() => undefined);
      const batch = queue;
      queue = [];
      next = undefined;
      writes++;
      return store.update(fqdn, (prev) => applyChanges(prev ?? { fqdn, consecutiveFailures: 0 }, batch));
    })();
    next = write;
    running = write;
    return write;
  };
  return {
    change,
    get writes() {
      return writes;
    },
  };
}
