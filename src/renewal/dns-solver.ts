/**
 * DNS-01 through Azure DNS: find the record that really holds the challenge (following a `_acme-challenge` CNAME
 * into a delegated validation zone), append our value, and wait until every authoritative server of that zone
 * serves it. If the wait fails, the value is removed again before the error propagates.
 *
 * With a journal (src/history/journal.ts), each value is recorded durably BEFORE it is added and dropped after it
 * is removed, so a run killed in between leaves the next run the exact value to remove (src/renewal/reconcile.ts).
 */
import { AmlcertError, atStage } from "../errors.js";
import type { Clock, DnsChallengeSolver, DnsLookup, DnsZone, PresentedTxt } from "../ports.js";
import { waitForTxt } from "../dns-check/propagation.js";
import type { Logger } from "../observability/logger.js";
import { normalizeName as norm } from "../dns-check/names.js";

export interface DnsSolverDeps {
  /** the target's zone first, then its challengeZones */
  zones: DnsZone[];
  lookup: DnsLookup;
  /** authoritative servers to poll for a zone */
  nameServersOf: (zone: DnsZone) => Promise<string[]>;
  txtTtlSeconds: number;
  propagationTimeoutMs: number;
  propagationIntervalMs: number;
  /** dns.propagationSettle: a fixed wait once every server serves the value (default 0) */
  propagationSettleMs?: number;
  clock: Clock;
  logger: Logger;
  /** told before a value is added and after it is removed; a journal that cannot be written is the journal's to report, never the order's */
  journal?: TxtJournal;
}

/** Where the solver records its values (the target's run journal). Both calls resolve even when the write failed. */
export interface TxtJournal {
  placing(t: PresentedTxt): Promise<void>;
  removed(t: PresentedTxt): Promise<void>;
}

const MAX_CNAME_HOPS = 8;

/** The configured zone with the longest suffix match for `fqdn`. */
export function zoneFor(zones: DnsZone[], fqdn: string): DnsZone | undefined {
  const name = norm(fqdn);
  return zones
    .filter((z) => name === z.zone || name.endsWith(`.${z.zone}`))
    .sort((a, b) => b.zone.length - a.zone.length)[0];
}

export interface DnsSolver extends DnsChallengeSolver {
  /** Remove every value presented and not yet cleaned up (on SIGTERM: the order in flight is abandoned). */
  cleanupOutstanding(): Promise<void>;
}

export function createDnsSolver(deps: DnsSolverDeps): DnsSolver {
  const { zones, logger } = deps;
  /** values written and not yet removed, so a shutdown can remove them */
  const outstanding = new Set<PresentedTxt>();

  /** Follow CNAMEs (as the CA will) from `recordName` to the name whose TXT set we must write. */
  async function challengeRecord(recordName: string): Promise<{ fqdn: string; zone: DnsZone }> {
    let name = norm(recordName);
    const seen = new Set<string>();
    for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
      const zone = zoneFor(zones, name);
      if (!zone) {
        throw new AmlcertError(
          "DNS_CNAME_UNRESOLVED",
          "dns-challenge",
          hop === 0
            ? `no configured Azure DNS zone holds ${name}`
            : `_acme-challenge CNAME points to ${name}, which is in none of the configured zones (${zones.map((z) => z.zone).join(", ")}); add its zone to challengeZones`,
          { details: { record: name } },
        );
      }
      let target: string | undefined;
      try {
        target = await zone.getCname(name);
      } catch (err) {
        throw atStage(err, "dns-challenge");
      }
      if (!target) return { fqdn: name, zone };
      if (seen.has(name)) throw new AmlcertError("DNS_CNAME_UNRESOLVED", "dns-challenge", `CNAME loop at ${name}`);
      seen.add(name);
      logger.info({ stage: "dns-challenge", from: name, to: norm(target) }, "following _acme-challenge CNAME");
      name = norm(target);
    }
    throw new AmlcertError("DNS_CNAME_UNRESOLVED", "dns-challenge", `more than ${MAX_CNAME_HOPS} CNAME hops from ${recordName}`);
  }

  /** Remove exactly the value `present` added; a failure is logged, never thrown (it must not hide the original error). */
  async function cleanup(handle: PresentedTxt): Promise<void> {
    const zone = zones.find((z) => z.zone === handle.zone);
    if (!zone) return;
    for (const h of outstanding) if (h.recordFqdn === handle.recordFqdn && h.value === handle.value) outstanding.delete(h);
    try {
      await zone.removeTxtValue(handle.recordFqdn, handle.value);
      logger.info({ stage: "dns-challenge", record: handle.recordFqdn }, "TXT value removed");
      await deps.journal?.removed(handle);
    } catch (err) {
      // Cleanup runs on the failure path too; a failed removal must not hide the original error.
      logger.warn({ stage: "dns-challenge", record: handle.recordFqdn, err }, "could not remove our TXT value; remove it by hand");
    }
  }

  return {
    async present(recordName, value, signal) {
      signal?.throwIfAborted();
      const { fqdn, zone } = await challengeRecord(recordName);
      const handle: PresentedTxt = { recordFqdn: fqdn, value, zone: zone.zone };
      await deps.journal?.placing(handle);
      try {
        await zone.addTxtValue(fqdn, value, deps.txtTtlSeconds);
      } catch (err) {
        throw atStage(err, "dns-challenge");
      }
      logger.info({ stage: "dns-challenge", record: fqdn, zone: zone.zone, value: `${value.slice(0, 8)}…` }, "TXT value added");
      outstanding.add(handle);
      try {
        const servers = await deps.nameServersOf(zone);
        const waited = await waitForTxt({
          lookup: deps.lookup,
          name: fqdn,
          value,
          servers,
          timeoutMs: deps.propagationTimeoutMs,
          intervalMs: deps.propagationIntervalMs,
          settleMs: deps.propagationSettleMs,
          clock: deps.clock,
          logger,
          signal,
        });
        logger.info({ stage: "propagation", record: fqdn, servers, attempts: waited.attempts, elapsedMs: waited.elapsedMs }, "every authoritative server serves the TXT value");
      } catch (err) {
        // a plain function, not `this.cleanup`: present may be called detached from the solver object
        await cleanup(handle);
        if (signal?.aborted) throw signal.reason;
        throw atStage(err, "propagation");
      }
      return handle;
    },

    cleanup,

    async cleanupOutstanding() {
      await Promise.all([...outstanding].map((h) => cleanup(h)));
    },
  };
}
