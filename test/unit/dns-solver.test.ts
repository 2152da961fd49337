import { describe, expect, it } from "vitest";
import { AmlcertError, ExitCode } from "../../src/errors.js";
import type { DnsZone } from "../../src/ports.js";
import { createDnsSolver, zoneFor, type DnsSolverDeps } from "../../src/renewal/dns-solver.js";
import { FakeClock, FakeLookup, FakeZone, recordingLogger } from "../support/fakes.js";
import { amlcertFailure } from "../support/assertions.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const RECORD = "_acme-challenge.ml.contoso.test";
const VALUE = "Xw4Yv0bq2xTzQ3n6hFm1sRkL9uDcA5eGpJ7iWoN8yZM";

interface Setup {
  solver: ReturnType<typeof createDnsSolver>;
  zone: FakeZone;
  challengeZones: FakeZone[];
  lookup: FakeLookup;
  clock: FakeClock;
  log: ReturnType<typeof recordingLogger>;
}

function setup(opts: { challengeZones?: string[]; zone?: string; deps?: Partial<DnsSolverDeps> } = {}): Setup {
  const clock = new FakeClock(T0);
  const log = recordingLogger();
  const zone = new FakeZone(opts.zone ?? "contoso.test", clock);
  const challengeZones = (opts.challengeZones ?? []).map((z) => new FakeZone(z, clock));
  const lookup = new FakeLookup([zone, ...challengeZones], clock);
  const solver = createDnsSolver({
    zones: [zone, ...challengeZones],
    lookup,
    nameServersOf: (z: DnsZone) => z.nameServers(),
    txtTtlSeconds: 60,
    propagationTimeoutMs: 30_000,
    propagationIntervalMs: 2_000,
    clock,
    logger: log.logger,
    ...opts.deps,
  });
  return { solver, zone, challengeZones, lookup, clock, log };
}


describe("zoneFor", () => {
  it("picks the configured zone with the longest suffix, and none for a name outside every zone", () => {
    const clock = new FakeClock(T0);
    const zones = [new FakeZone("contoso.test", clock), new FakeZone("dev.contoso.test", clock)];
    expect(zoneFor(zones, "_acme-challenge.ml.dev.contoso.test")?.zone).toBe("dev.contoso.test");
    expect(zoneFor(zones, "_acme-challenge.ML.Contoso.Test.")?.zone).toBe("contoso.test");
    expect(zoneFor(zones, "dev.contoso.test")?.zone).toBe("dev.contoso.test");
    expect(zoneFor(zones, "notcontoso.test")).toBeUndefined();
    expect(zoneFor(zones, "contoso.example")).toBeUndefined();
  });
});

describe("createDnsSolver: present", () => {
  it("adds the value to the _acme-challenge record in the target's zone, waits until every authoritative server serves it, and returns the handle", async () => {
    const s = setup();

    const handle = await s.solver.present(RECORD, VALUE);

    expect(handle).toEqual({ recordFqdn: RECORD, value: VALUE, zone: "contoso.test" });
    expect(s.zone.txtAdds).toEqual([{ fqdn: RECORD, value: VALUE, ttl: 60 }]);
    expect(s.zone.txtValues(RECORD)).toEqual([VALUE]);
    const asked = new Set(s.lookup.txtQueries.filter((q) => q.name === RECORD).flatMap((q) => q.servers));
    expect(asked).toEqual(new Set(s.zone.servers));
    expect(s.zone.txtRemoves).toEqual([]);
  });

  it("normalises the record name (case, trailing dot) before writing", async () => {
    const s = setup();

    const handle = await s.solver.present("_ACME-Challenge.ML.contoso.test.", VALUE);

    expect(handle.recordFqdn).toBe(RECORD);
    expect(s.zone.txtAdds.map((a) => a.fqdn)).toEqual([RECORD]);
  });

  it("when the value reaches the name servers only after a while, keeps polling on the clock and then succeeds", async () => {
    const s = setup();
    s.lookup.propagationDelayMs = 5_000;

    await s.solver.present(RECORD, VALUE);

    // the propagation wait's growing gap (src/dns-check/propagation.ts): 100 ms, then a tenth of the time waited
    expect(s.clock.sleeps).toEqual([100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 110, 121, 133, 146, 161, 177, 195, 214, 236, 259, 285, 314, 345, 380, 418, 459]);
    expect(s.zone.txtRemoves).toEqual([]);
  });

  it("follows the _acme-challenge CNAME into a challenge zone and writes only there", async () => {
    const s = setup({ challengeZones: ["acme-validation.test"] });
    s.zone.seedCname(RECORD, "ml.acme-validation.test.");
    const [validation] = s.challengeZones;

    const handle = await s.solver.present(RECORD, VALUE);

    expect(handle).toEqual({ recordFqdn: "ml.acme-validation.test", value: VALUE, zone: "acme-validation.test" });
    expect(validation!.txtAdds).toEqual([{ fqdn: "ml.acme-validation.test", value: VALUE, ttl: 60 }]);
    expect(s.zone.txtAdds).toEqual([]);
    // propagation is checked at the challenge zone's own name servers
    const asked = new Set(s.lookup.txtQueries.flatMap((q) => q.servers));
    expect(asked).toEqual(new Set(validation!.servers));

    await s.solver.cleanup(handle);
    expect(validation!.txtRemoves).toEqual([{ fqdn: "ml.acme-validation.test", value: VALUE }]);
    expect(validation!.txtValues("ml.acme-validation.test")).toEqual([]);
    expect(s.zone.txtRemoves).toEqual([]);
  });

  it("follows a chain of CNAMEs across configured zones", async () => {
    const s = setup({ challengeZones: ["hop.test", "final.test"] });
    s.zone.seedCname(RECORD, "ml.hop.test");
    s.challengeZones[0]!.seedCname("ml.hop.test", "ml.final.test");

    const handle = await s.solver.present(RECORD, VALUE);

    expect(handle).toMatchObject({ recordFqdn: "ml.final.test", zone: "final.test" });
    expect(s.challengeZones[1]!.txtValues("ml.final.test")).toEqual([VALUE]);
    expect(s.zone.txtAdds).toEqual([]);
    expect(s.challengeZones[0]!.txtAdds).toEqual([]);
  });

  it("when the CNAME points into a zone that is not configured, fails with DNS_CNAME_UNRESOLVED naming the target, and writes nothing", async () => {
    const s = setup({ challengeZones: ["acme-validation.test"] });
    s.zone.seedCname(RECORD, "ml.elsewhere.example");

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "DNS_CNAME_UNRESOLVED", stage: "dns-challenge", exitCode: ExitCode.RenewalFailed, details: { record: "ml.elsewhere.example" } });
    expect(err.message).toContain("ml.elsewhere.example");
    expect(err.message).toContain("challengeZones");
    expect(err.message).toContain("contoso.test, acme-validation.test");
    expect(s.zone.txtAdds).toEqual([]);
    expect(s.challengeZones[0]!.txtAdds).toEqual([]);
  });

  it("when no configured zone holds the record, fails with DNS_CNAME_UNRESOLVED and writes nothing", async () => {
    const s = setup();

    const err = await amlcertFailure(s.solver.present("_acme-challenge.ml.fabrikam.test", VALUE));

    expect(err).toMatchObject({ code: "DNS_CNAME_UNRESOLVED", stage: "dns-challenge" });
    expect(err.message).toContain("_acme-challenge.ml.fabrikam.test");
    expect(s.zone.txtAdds).toEqual([]);
  });

  it("when the CNAMEs form a loop, fails with DNS_CNAME_UNRESOLVED instead of looping", async () => {
    const s = setup();
    s.zone.seedCname(RECORD, "a.contoso.test");
    s.zone.seedCname("a.contoso.test", RECORD);

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "DNS_CNAME_UNRESOLVED", stage: "dns-challenge" });
    expect(err.message).toContain("loop");
    expect(s.zone.txtAdds).toEqual([]);
  });

  it("when reading the CNAME fails, the error is attributed to the dns-challenge stage and nothing is written", async () => {
    const s = setup();
    s.zone.getCname = async () => {
      throw new Error("ARM answered 500");
    };

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ stage: "dns-challenge", exitCode: 3 });
    expect(err.message).toContain("ARM answered 500");
    expect(s.zone.txtAdds).toEqual([]);
  });

  it("when adding the value fails, the adapter's code is kept and the stage is dns-challenge", async () => {
    const s = setup();
    s.zone.failAdd = new AmlcertError("AZURE_FORBIDDEN", "preflight", "DNS Zone Contributor is missing on contoso.test");

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "AZURE_FORBIDDEN", stage: "dns-challenge", exitCode: 3 });
    expect(s.lookup.txtQueries).toEqual([]);
  });

  it("when two values are presented at the same name (example.com and *.example.com), both are added and removing one keeps the other", async () => {
    const s = setup();
    const other = "second-value-for-the-wildcard-authorization";

    const [a, b] = await Promise.all([s.solver.present(RECORD, VALUE), s.solver.present(RECORD, other)]);
    expect(s.zone.txtValues(RECORD).sort()).toEqual([VALUE, other].sort());

    await s.solver.cleanup(a);
    expect(s.zone.txtValues(RECORD)).toEqual([other]);
    await s.solver.cleanup(b);
    expect(s.zone.txtValues(RECORD)).toEqual([]);
  });

  it("never logs the whole challenge value", async () => {
    const s = setup();

    const handle = await s.solver.present(RECORD, VALUE);
    await s.solver.cleanup(handle);

    expect(s.log.entries.length).toBeGreaterThan(0);
    expect(JSON.stringify(s.log.entries)).not.toContain(VALUE);
  });
});

describe("createDnsSolver: propagation failure", () => {
  it("when a name server never serves the value, fails with DNS_PROPAGATION_TIMEOUT at stage propagation, after removing the value it added", async () => {
    const s = setup();
    s.zone.seedTxt(RECORD, "someone-elses-value");
    const lagging = s.zone.servers[1]!;
    s.lookup.laggingServers.add(lagging);

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation", exitCode: ExitCode.RenewalFailed });
    expect(err.message).toContain(lagging);
    expect(err.message).not.toContain(s.zone.servers[0]!);
    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.zone.txtValues(RECORD)).toEqual(["someone-elses-value"]);
    // bounded by the configured timeout on the injected clock
    expect(s.clock.sleeps.reduce((a, b) => a + b, 0)).toBe(30_000);
  });

  it("when the removal after a timeout fails too, the timeout is what propagates and the failed removal is logged", async () => {
    const s = setup();
    s.lookup.laggingServers.add(s.zone.servers[0]!);
    s.zone.failRemove = new Error("ARM answered 503");

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.log.messages("warn")).toEqual([expect.stringContaining("remove it by hand")]);
  });

  it("when the zone's name servers cannot be read, the value is removed and the error is attributed to propagation", async () => {
    const s = setup();
    s.zone.failNameServers = new Error("ARM answered 500");

    const err = await amlcertFailure(s.solver.present(RECORD, VALUE));

    expect(err).toMatchObject({ stage: "propagation", exitCode: 3 });
    expect(err.message).toContain("ARM answered 500");
    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.zone.txtValues(RECORD)).toEqual([]);
  });

  it("when the run is stopped while waiting for the name servers, the wait ends at once, the value is removed and the stop's reason propagates", async () => {
    const s = setup();
    s.lookup.laggingServers.add(s.zone.servers[0]!);
    const stop = new AbortController();
    const sleep = s.clock.sleep.bind(s.clock);
    s.clock.sleep = (ms, signal) => (stop.abort(new Error("SIGTERM")), sleep(ms, signal));

    const err = await s.solver.present(RECORD, VALUE, stop.signal).then(() => undefined, (e: unknown) => e);

    expect(err).toEqual(new Error("SIGTERM"));
    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.zone.txtValues(RECORD)).toEqual([]);
  });

  it("when present is called detached from the solver object, a timeout still removes the value", async () => {
    const s = setup();
    s.lookup.laggingServers.add(s.zone.servers[0]!);
    const { present } = s.solver;

    const err = await amlcertFailure(present(RECORD, VALUE));

    expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
    expect(s.zone.txtValues(RECORD)).toEqual([]);
  });
});

describe("createDnsSolver: cleanup", () => {
  it("removes exactly the presented value from the zone that holds it", async () => {
    const s = setup();
    s.zone.seedTxt(RECORD, "someone-elses-value");
    const handle = await s.solver.present(RECORD, VALUE);

    await s.solver.cleanup(handle);

    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.zone.txtValues(RECORD)).toEqual(["someone-elses-value"]);
  });

  it("when the removal fails, logs a warning naming the record and does not throw", async () => {
    const s = setup();
    const handle = await s.solver.present(RECORD, VALUE);
    s.zone.failRemove = new AmlcertError("AZURE_THROTTLED", "dns-challenge", "429 Too Many Requests");

    await expect(s.solver.cleanup(handle)).resolves.toBeUndefined();

    const warning = s.log.entries.find((e) => e.level === 40);
    expect(warning).toMatchObject({ msg: expect.stringContaining("remove it by hand"), record: RECORD });
    expect(s.zone.txtValues(RECORD)).toEqual([VALUE]);
  });

  it("for a handle whose zone is not configured, does nothing and does not throw", async () => {
    const s = setup();

    await expect(s.solver.cleanup({ recordFqdn: "_acme-challenge.x.other.test", value: VALUE, zone: "other.test" })).resolves.toBeUndefined();

    expect(s.zone.txtRemoves).toEqual([]);
  });

  it("after a value that was never added (a failed present), is safe: a missing record set is not an error", async () => {
    const s = setup();

    await s.solver.cleanup({ recordFqdn: RECORD, value: VALUE, zone: "contoso.test" });

    expect(s.zone.txtRemoves).toEqual([{ fqdn: RECORD, value: VALUE }]);
    expect(s.log.messages("warn")).toEqual([]);
  });
});

describe("createDnsSolver: cleanupOutstanding (shutdown)", () => {
  it("removes the values presented and not yet cleaned up, and only those", async () => {
    const s = setup();
    const first = await s.solver.present(RECORD, VALUE);
    await s.solver.present(`_acme-challenge.api.contoso.test`, `${VALUE}-2`);
    await s.solver.cleanup(first);

    await s.solver.cleanupOutstanding();

    expect(s.zone.txtRemoves).toEqual([
      { fqdn: RECORD, value: VALUE },
      { fqdn: "_acme-challenge.api.contoso.test", value: `${VALUE}-2` },
    ]);
    expect(s.zone.txtValues(RECORD)).toEqual([]);
    expect(s.zone.txtValues("_acme-challenge.api.contoso.test")).toEqual([]);
    await s.solver.cleanupOutstanding();
    expect(s.zone.txtRemoves).toHaveLength(2);
  });
});

describe("createDnsSolver: the run journal", () => {
  /** a journal that records, in one list with the zone's own writes, when it was told what */
  function journaled() {
    const order: string[] = [];
    const s = setup({
      deps: {
        journal: {
          placing: async (t) => void order.push(`journal+ ${t.recordFqdn} ${t.zone} ${t.value}`),
          removed: async (t) => void order.push(`journal- ${t.recordFqdn} ${t.zone} ${t.value}`),
        },
      },
    });
    const add = s.zone.addTxtValue.bind(s.zone);
    const remove = s.zone.removeTxtValue.bind(s.zone);
    s.zone.addTxtValue = async (fqdn, value, ttl) => {
      order.push(`add ${fqdn}`);
      return add(fqdn, value, ttl);
    };
    s.zone.removeTxtValue = async (fqdn, value) => {
      order.push(`remove ${fqdn}`);
      return remove(fqdn, value);
    };
    return { ...s, order };
  }

  it("records each value before adding it and drops it only after it was removed", async () => {
    const s = journaled();
    const handle = await s.solver.present(RECORD, VALUE);
    await s.solver.cleanup(handle);
    expect(s.order).toEqual([`journal+ ${RECORD} contoso.test ${VALUE}`, `add ${RECORD}`, `remove ${RECORD}`, `journal- ${RECORD} contoso.test ${VALUE}`]);
  });

  it("when the removal fails, the value stays in the journal for the next run to remove", async () => {
    const s = journaled();
    const handle = await s.solver.present(RECORD, VALUE);
    s.zone.failRemove = new AmlcertError("AZURE_ERROR", "dns-challenge", "ARM unavailable");
    await s.solver.cleanup(handle);
    expect(s.order).toEqual([`journal+ ${RECORD} contoso.test ${VALUE}`, `add ${RECORD}`, `remove ${RECORD}`]);
  });

  it("when the value cannot be added, it stays in the journal (the add may have landed) and the error propagates", async () => {
    const s = journaled();
    s.zone.failAdd = new AmlcertError("AZURE_ERROR", "dns-challenge", "ARM timed out");
    await expect(s.solver.present(RECORD, VALUE)).rejects.toMatchObject({ code: "AZURE_ERROR", stage: "dns-challenge" });
    expect(s.order).toEqual([`journal+ ${RECORD} contoso.test ${VALUE}`, `add ${RECORD}`]);
  });
});
