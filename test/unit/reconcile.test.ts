/**
 * The run journal and crash recovery (C2): what a run records before relying on it, what the next run undoes or
 * picks up (src/renewal/reconcile.ts), and the rate-limit discipline kept in the same history.
 */
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import { describe as describeCert } from "../../src/certs/certificate.js";
import type { HistoryStore, TargetHistory } from "../../src/history/history.js";
import { createJournalWriter, journalChanges } from "../../src/history/journal.js";
import { nextHistory } from "../../src/history/record.js";
import { DUPLICATE_CERTIFICATE_WINDOW_MS } from "../../src/history/rate-limit.js";
import { createDnsSolver } from "../../src/renewal/dns-solver.js";
import type { RunJournalPort } from "../../src/renewal/deps.js";
import { renewTarget } from "../../src/renewal/renew.js";
import { startDaemon } from "../../src/app/daemon.js";
import type { TargetOutcome } from "../../src/renewal/events.js";
import { VirtualClock } from "../support/virtual-clock.js";
import { reconcile } from "../../src/renewal/reconcile.js";
import { ANNOTATION, secretFor } from "../../src/renewal/certificate-version.js";
import { createAcmeSource } from "../../src/sources/acme-source.js";
import type { DnsZone, PresentedTxt } from "../../src/ports.js";
import { days, makeLeaf, makeTestCa, type TestIssuer, type TestLeaf } from "../support/certs.js";
import { makeDeps, recordingLogger, type FakeWorld } from "../support/fakes.js";
import { renewSettings } from "../support/renew-settings.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);
const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";
const RECORD = `_acme-challenge.${FQDN}`;
const HOLDER = "pod-a/42";

/** The history ConfigMap in memory: every write counted and kept. */
class MemoryHistory implements HistoryStore {
  h: TargetHistory | undefined;
  readonly written: TargetHistory[] = [];
  failWrites = 0;
  failReads = 0;
  async read(): Promise<TargetHistory | undefined> {
    if (this.failReads > 0 && this.failReads--) throw new Error("ConfigMap unreachable");
    return structuredClone(this.h);
  }
  async update(_fqdn: string, apply: (p: TargetHistory | undefined) => TargetHistory): Promise<TargetHistory> {
    await Promise.resolve();
    if (this.failWrites > 0 && this.failWrites--) throw new Error("ConfigMap unreachable");
    this.h = apply(structuredClone(this.h));
    this.written.push(structuredClone(this.h));
    return this.h;
  }
}

interface JournaledWorld extends FakeWorld {
  store: MemoryHistory;
  journal: RunJournalPort;
  /** the journal's TXT entries at the moment each value was added to the zone */
  journalAtAdd: string[][];
  log: ReturnType<typeof recordingLogger>;
}

/** The fake world, with the real solver and ACME source wired to a journal over an in-memory history, as compose.ts wires them. */
function journaledWorld(): JournaledWorld {
  const log = recordingLogger();
  const w = makeDeps({ now: T0, fqdn: FQDN, zone: "contoso.test", logger: log.logger });
  const store = new MemoryHistory();
  const writer = createJournalWriter(store, FQDN);
  const entry = (h: PresentedTxt) => ({ record: h.recordFqdn, zone: h.zone, value: h.value });
  const journalAtAdd: string[][] = [];
  const add = w.zone.addTxtValue.bind(w.zone);
  w.zone.addTxtValue = async (fqdn, value, ttl) => {
    journalAtAdd.push((store.h?.journal?.txt ?? []).map((t) => t.value));
    return add(fqdn, value, ttl);
  };
  let solver: ReturnType<typeof createDnsSolver> | undefined;
  const journal: RunJournalPort = {
    read: () => store.read(),
    change: writer.change,
    removeTxt: (j) => solver!.cleanup({ recordFqdn: j.record, zone: j.zone, value: j.value }),
    holder: HOLDER,
  };
  solver = createDnsSolver({
    zones: [w.zone as DnsZone],
    lookup: w.lookup,
    nameServersOf: (z) => z.nameServers(),
    txtTtlSeconds: 60,
    propagationTimeoutMs: 120_000,
    propagationIntervalMs: 2_000,
    clock: w.clock,
    logger: log.logger,
    // as compose.ts: a journal write that fails is a warning, never the order's failure
    journal: {
      placing: (h) => journal.change(journalChanges.txtPlacing(entry(h), HOLDER)).then(() => undefined, () => log.logger.warn({}, "journal write failed")),
      removed: (h) => journal.change(journalChanges.txtRemoved(entry(h))).then(() => undefined, () => log.logger.warn({}, "journal write failed")),
    },
  });
  w.deps.source = createAcmeSource({ acme: () => w.acme, solver, generateKey: w.keys.generate });
  w.deps.journal = journal;
  // the run's outcome goes into the history as compose.ts's history sink puts it there
  w.deps.events = [...(w.deps.events ?? []), (e) => (e.type === "run-finished" ? store.update(FQDN, (p) => nextHistory(p, e.outcome, w.clock.now())).then(() => undefined) : undefined)];
  return { ...w, store, journal, journalAtAdd, log };
}

let ca: TestIssuer;
let due: TestLeaf;
let fresh: TestLeaf;
let issued: TestLeaf;

beforeAll(async () => {
  ({ intermediate: ca } = await makeTestCa("amlcert reconcile"));
  due = await makeLeaf(ca, [FQDN], at(-days(80)), at(days(10)));
  fresh = await makeLeaf(ca, [FQDN], at(-days(10)), at(days(80)));
  issued = await makeLeaf(ca, [FQDN], at(-3_600_000), at(days(90)));
});

function seedVersion(w: FakeWorld, name: string, leaf: TestLeaf, rollout: "pending" | "done"): void {
  const info = describeCert(new X509Certificate(leaf.leafPem));
  w.kube.seedSecret(secretFor({ name, base: BASE, fqdn: FQDN, names: [FQDN], chainPem: leaf.chainPem, keyPem: leaf.keyPem, leaf: info }, { state: rollout, failures: 0 }));
}
function inPlace(w: FakeWorld, name: string, leaf: TestLeaf): void {
  seedVersion(w, name, leaf, "done");
  Object.assign(w.extension.state.configurationSettings, { sslSecret: name, "scoringFe.sslSecret": name, sslCname: FQDN });
}
const settings = (o: Parameters<typeof renewSettings>[2] = {}) => renewSettings(FQDN, BASE, o);

describe("the journal writer", () => {
  it("when changes are made at once (concurrent challenges), writes them in one write; one made while a write is in flight goes in the next", async () => {
    const store = new MemoryHistory();
    const writer = createJournalWriter(store, FQDN);
    const t = (v: string) => ({ record: RECORD, zone: "contoso.test", value: v });
    await Promise.all([writer.change(journalChanges.txtPlacing(t("a"))), writer.change(journalChanges.txtPlacing(t("b")))]);
    expect(writer.writes).toBe(1);
    const first = writer.change(journalChanges.txtPlacing(t("c")));
    await Promise.resolve();
    await Promise.resolve();
    const second = Promise.all([writer.change(journalChanges.txtPlacing(t("d"))), writer.change(journalChanges.txtPlacing(t("e")))]);
    await Promise.all([first, second]);
    expect(writer.writes).toBe(3);
    expect(store.written.map((h) => h.journal?.txt.length)).toEqual([2, 3, 5]);
    expect(store.h?.journal?.txt.map((x) => x.value)).toEqual(["a", "b", "c", "d", "e"]);
  });

  it("when the last TXT value is removed and nothing else is outstanding, the journal is dropped from the history", async () => {
    const store = new MemoryHistory();
    const writer = createJournalWriter(store, FQDN);
    const t = { record: RECORD, zone: "contoso.test", value: "v" };
    await writer.change(journalChanges.txtPlacing(t, HOLDER));
    expect(store.h?.journal).toEqual({ holder: HOLDER, txt: [t] });
    await writer.change(journalChanges.txtRemoved(t));
    expect(store.h).toEqual({ fqdn: FQDN, consecutiveFailures: 0 });
  });

  it("when a write fails, the change's promise rejects and the next change is written", async () => {
    const store = new MemoryHistory();
    store.failWrites = 1;
    const writer = createJournalWriter(store, FQDN);
    const t = { record: RECORD, zone: "contoso.test", value: "v" };
    await expect(writer.change(journalChanges.txtPlacing(t))).rejects.toThrow("ConfigMap unreachable");
    await writer.change(journalChanges.txtPlacing(t));
    expect(store.h?.journal?.txt).toEqual([t]);
  });
});

describe("a run with a journal", () => {
  it("records each TXT value before adding it, drops it after removing it, and leaves no journal after a renewal", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("renewed");
    expect(w.journalAtAdd).toEqual([[w.acme.presented[0]!.value]]);
    // the order is counted before it is placed; the stored secret is named before the extension PATCH
    const stored = w.store.written.find((h) => h.journal?.stored)?.journal?.stored;
    expect(stored?.serial).toBe(issued.serialNumber);
    expect(w.store.h?.journal).toBeUndefined();
    expect(w.store.h?.issued).toEqual([{ at: T0.toISOString(), names: FQDN }]);
    // writes: order, TXT placed, TXT removed, stored, the run's outcome
    expect(w.store.written.length).toBe(5);
  });

  it("when a previous run left TXT values and an order in its journal, removes exactly those values before inspecting and forgets the order", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-current", fresh);
    await w.zone.addTxtValue(RECORD, "ours-left-behind", 60);
    await w.zone.addTxtValue(RECORD, "someone-elses", 60);
    w.store.h = {
      fqdn: FQDN,
      consecutiveFailures: 0,
      journal: { holder: "pod-a/7", txt: [{ record: RECORD, zone: "contoso.test", value: "ours-left-behind" }], order: { names: FQDN, at: at(-60_000).toISOString() } },
    };

    const rec = await reconcile(w.deps, settings());

    expect(rec.removedTxt.map((t) => t.value)).toEqual(["ours-left-behind"]);
    expect(rec.abandonedOrder?.names).toBe(FQDN);
    expect(w.zone.txt.get(RECORD)?.map((e) => e.value)).toEqual(["someone-elses"]);
    expect(w.store.h?.journal).toBeUndefined();
  });

  it("when a previous run stored a certificate and died before the rollout, the next run rolls that version out instead of ordering", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    seedVersion(w, "azureml-tls-new", issued, "pending");
    w.store.h = { fqdn: FQDN, consecutiveFailures: 0, journal: { txt: [], stored: { secret: "azureml-tls-new", serial: issued.serialNumber, at: at(-60_000).toISOString() } } };

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", secret: "azureml-tls-new", serial: issued.serialNumber });
    expect(w.acme.requests).toEqual([]);
    expect(w.extension.state.configurationSettings.sslSecret).toBe("azureml-tls-new");
  });

  it("when a previous run stored a certificate it never rolled out and the certificate in place is not due, the stored version is removed", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-current", fresh);
    seedVersion(w, "azureml-tls-orphan", issued, "pending");
    w.store.h = { fqdn: FQDN, consecutiveFailures: 0, journal: { txt: [], stored: { secret: "azureml-tls-orphan", serial: issued.serialNumber, at: at(-60_000).toISOString() } } };

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("none");
    expect(w.kube.deletes).toEqual(["azureml-tls-orphan"]);
    expect(w.store.h?.journal).toBeUndefined();
  });

  it("when the stored version the journal names is the one the extension already points at (the run died after the PATCH), nothing is deleted", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-current", fresh);
    w.kube.secrets.get("azureml-tls-current")!.annotations[ANNOTATION.rollout] = "pending";
    w.store.h = { fqdn: FQDN, consecutiveFailures: 0, journal: { txt: [], stored: { secret: "azureml-tls-current", serial: fresh.serialNumber, at: at(-60_000).toISOString() } } };

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("none");
    expect(w.kube.deletes).toEqual([]);
    expect(w.kube.secrets.get("azureml-tls-current")!.annotations[ANNOTATION.rollout]).toBe("done");
    expect(w.store.h?.journal).toBeUndefined();
  });

  it("when the journal cannot be read, the run goes on (renewing) and warns that leftovers are not cleaned up", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;
    w.store.failReads = 1;

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("renewed");
    expect(w.log.messages("warn")).toContain("could not read the run journal; a crashed run's leftovers (if any) are not cleaned up by this run");
  });
});

describe("a run whose journal cannot be written", () => {
  it("when every history write fails, still orders, stores and rolls out the new certificate, warning at each journal step", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;
    w.store.failWrites = Number.POSITIVE_INFINITY;

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", serial: issued.serialNumber, extensionUpdated: true });
    expect(w.extension.state.configurationSettings.sslSecret).toBe(r.secret);
    expect(w.store.h).toBeUndefined();
    expect(w.log.messages("warn")).toEqual(
      expect.arrayContaining([
        "could not record the order in the run journal; ordering without the duplicate-certificate check",
        "journal write failed",
        "could not record the stored secret in the run journal",
      ]),
    );
  });
});

describe("rate-limit discipline", () => {
  it("when the history says a CA asked not to be called before a later time, the run is skipped RateLimited and orders nothing", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.store.h = { fqdn: FQDN, consecutiveFailures: 1, retryNotBefore: at(3_600_000).toISOString() };

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "skipped", reason: "RateLimited" });
    expect(w.acme.requests).toEqual([]);
    expect(w.extension.patches).toEqual([]);
  });

  it("when forced, a run before retryNotBefore orders anyway", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;
    w.store.h = { fqdn: FQDN, consecutiveFailures: 1, retryNotBefore: at(3_600_000).toISOString() };

    const r = await renewTarget(w.deps, settings({ force: true }));

    expect(r.action).toBe("renewed");
    expect(w.acme.requests.length).toBe(1);
  });

  it("when 5 certificates for exactly these names were ordered in the last 7 days, refuses a 6th with ACME_RATE_LIMITED naming DuplicateCertificateLimit and when it may order", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    const times = [6, 5, 4, 3, 2].map((d) => at(-days(d)).toISOString());
    w.store.h = { fqdn: FQDN, consecutiveFailures: 0, issued: times.map((t) => ({ at: t, names: FQDN })) };

    const r = await renewTarget(w.deps, settings());

    const retryAt = new Date(Date.parse(times[0]!) + DUPLICATE_CERTIFICATE_WINDOW_MS).toISOString();
    expect(r.action).toBe("failed");
    expect(r.error).toEqual({
      code: "ACME_RATE_LIMITED",
      stage: "acme-order",
      exitCode: new AmlcertError("ACME_RATE_LIMITED", "acme-order", "").exitCode,
      retryAt,
      message: `DuplicateCertificateLimit: 5 certificates for exactly ${FQDN} were ordered in the last 7 days (Let's Encrypt issues at most 5); the next may be ordered after ${retryAt}; --force orders anyway`,
    });
    expect(w.acme.requests).toEqual([]);
    expect(w.store.h?.issued?.length).toBe(5);
  });

  it("when the oldest of 5 orders is more than 7 days old, a new order is allowed and the old one leaves the list", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;
    const times = [8, 5, 4, 3, 2].map((d) => at(-days(d)).toISOString());
    w.store.h = { fqdn: FQDN, consecutiveFailures: 0, issued: times.map((t) => ({ at: t, names: FQDN })) };

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("renewed");
    expect(w.store.h?.issued?.map((i) => i.at)).toEqual([...times.slice(1), T0.toISOString()]);
  });

  it("when an order fails, it is not counted against the limit", async () => {
    const w = journaledWorld();
    inPlace(w, "azureml-tls-old", due);
    w.keys.key = issued.keyPem;
    w.acme.failure = new AmlcertError("ACME_REJECTED", "acme-order", "the CA refused the finalization");

    const r = await renewTarget(w.deps, settings());

    expect(r.action).toBe("failed");
    expect(w.store.h?.issued).toBeUndefined();
    expect(w.store.h?.journal).toBeUndefined();
  });
});

describe("the daemon and a rate limit", () => {
  it("when a run fails with a rate limit's retryAt, the retry is scheduled at retryAt instead of the retry table's first row", async () => {
    const clock = new VirtualClock(new Date("2026-05-01T12:03:00.000Z"));
    const retryAt = "2026-05-01T15:00:00.000Z";
    const calls: string[] = [];
    const scheduled: { at: string; why: string }[] = [];
    let release!: () => void;
    const twoCalls = new Promise<void>((r) => (release = r));
    const base = { fqdn: FQDN, reason: "InRenewalWindow", extensionUpdated: false, dnsOk: true, servingOk: true, durationMs: 0 };
    const daemon = startDaemon(
      [{ fqdn: FQDN }],
      {
        clock,
        logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
        runTarget: async (_fqdn, signal): Promise<TargetOutcome> => {
          calls.push(clock.now().toISOString());
          if (calls.length === 2) release();
          await clock.sleep(60_000, signal);
          return calls.length === 1
            ? { ...base, action: "failed", error: { code: "ACME_RATE_LIMITED", stage: "acme-order", message: "429", exitCode: 3, retryAt } }
            : { ...base, action: "none", reason: "UpToDate" };
        },
        onScheduled: (_fqdn, when, why) => void scheduled.push({ at: when.toISOString(), why }),
      },
      { schedule: "0 */6 * * *", jitterMs: 0, runAtStart: true },
    );
    await twoCalls;
    await daemon.stop();
    await daemon.done;
    expect(calls).toEqual(["2026-05-01T12:03:00.000Z", retryAt]);
    expect(scheduled[1]).toEqual({ at: retryAt, why: "retry" });
  });
});

