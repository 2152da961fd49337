import { describe, expect, it } from "vitest";
import { checkDns, precheckDns } from "../../src/renewal/verify-dns.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import { makeDeps, recordingLogger } from "../support/fakes.js";

const FQDN = "ml.contoso.test";
const IP = "20.30.40.50";
const settings = { fqdn: FQDN, names: [FQDN], manageRecord: false } as unknown as RenewSettings;

describe("checkDns: does the FQDN resolve to azureml-fe?", () => {
  it("when the A record holds exactly azureml-fe's address, the check passes through both the authoritative servers and the resolver", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns).toEqual({ ok: true, expected: [IP], authoritative: [IP], system: [IP], problems: [] });
  });

  it("when a stale extra A record stands beside the right address, the check fails naming both addresses (some clients would go elsewhere)", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.seedA(FQDN, [IP, "10.9.9.9"]);

    const dns = await checkDns(w.deps, settings, [IP]);

    expect(dns.ok).toBe(false);
    expect(dns.problems).toEqual([
      `authoritative servers answer ${IP}, 10.9.9.9 for ${FQDN}, expected ${IP}`,
      `the resolver answers ${IP}, 10.9.9.9 for ${FQDN}, expected ${IP}`,
    ]);
  });

  it("when the A record points elsewhere, the check fails naming what was found", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.seedA(FQDN, ["10.9.9.9"]);
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns.problems).toEqual([
      `authoritative servers answer 10.9.9.9 for ${FQDN}, expected ${IP}`,
      `the resolver answers 10.9.9.9 for ${FQDN}, expected ${IP}`,
    ]);
  });

  it("when azureml-fe has no address at all, the check fails saying so", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    const dns = await checkDns(w.deps, settings, []);
    expect(dns.problems).toEqual(["no expected address: azureml-fe has no ingress and expectedAddress is not set"]);
  });
});

const LB = "amlfe.westeurope.cloudapp.azure.com";
type World = ReturnType<typeof makeDeps>;
/** the lookup answers `answer` (or throws it) for queries to the given kind of server, the fake zones otherwise */
function answer(w: World, to: "authoritative" | "resolver", result: Error | { addresses: string[]; cnames: string[] }) {
  const real = w.lookup.resolve.bind(w.lookup);
  w.lookup.resolve = async (name, servers) => {
    if ((servers !== undefined) === (to === "authoritative")) {
      if (result instanceof Error) throw result;
      return result;
    }
    return real(name, servers);
  };
}
const dnsError = (code: string, query: string | undefined, message: string) => Object.assign(new Error(message), { code, query });

describe("checkDns: CNAMEs, hostnames and failing servers", () => {
  it("when the FQDN is a CNAME leaving the zone, the zone's servers refusing the hop is no mismatch and the resolver decides", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.a.delete(FQDN);
    w.zone.seedCname(FQDN, LB);
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: [IP], cnames: [LB] }]);
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns).toEqual({ ok: true, expected: [IP], authoritative: [], system: [IP, LB], problems: [] });
  });

  it("when the zone's servers refuse the FQDN itself, that is a problem of the authoritative servers", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    answer(w, "authoritative", dnsError("EREFUSED", FQDN, "refused"));
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns.problems).toEqual(["authoritative servers: refused", `authoritative servers answer nothing for ${FQDN}, expected ${IP}`]);
  });

  it("when the zone's servers refuse without naming the query, or fail otherwise on a hop, that is a problem", async () => {
    for (const err of [dnsError("EREFUSED", undefined, "refused"), dnsError("ESERVFAIL", LB, "server failure")]) {
      const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
      answer(w, "authoritative", err);
      const dns = await checkDns(w.deps, settings, [IP]);
      expect(dns.problems).toEqual([`authoritative servers: ${err.message}`, `authoritative servers answer nothing for ${FQDN}, expected ${IP}`]);
      expect(dns.authoritative).toEqual([]);
    }
  });

  it("when the resolver refuses a hop, that is a problem (only the zone's own servers may refuse to leave the zone)", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    answer(w, "resolver", dnsError("EREFUSED", LB, "refused by the resolver"));
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns).toEqual({ ok: false, expected: [IP], authoritative: [IP], system: [], problems: ["resolver: refused by the resolver", `the resolver answers nothing for ${FQDN}, expected ${IP}`] });
  });

  it("when the zone's name servers cannot be read, that is a problem and only the resolver is asked", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.failNameServers = new Error("ARM 403");
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns).toEqual({ ok: false, expected: [IP], authoritative: [], system: [IP], problems: ["authoritative servers: ARM 403"] });
    expect(w.lookup.resolveQueries).toEqual([{ name: FQDN }]);
  });

  it("when azureml-fe is a hostname, a CNAME chain reaching it passes whatever addresses it ends at", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    answer(w, "authoritative", { addresses: ["9.9.9.9"], cnames: [LB] });
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: ["9.9.9.9"], cnames: [LB] }]);
    expect((await checkDns(w.deps, settings, [LB])).problems).toEqual([]);
    // a hostname among the expected addresses is enough for extra addresses to be allowed
    expect((await checkDns(w.deps, settings, [LB, IP])).problems).toEqual([]);
  });

  it("when several addresses are expected and another is found, the problems list all of them", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.seedA(FQDN, ["10.9.9.9"]);
    const dns = await checkDns(w.deps, settings, [IP, "20.30.40.51"]);
    expect(dns.problems).toEqual([
      `authoritative servers answer 10.9.9.9 for ${FQDN}, expected ${IP}, 20.30.40.51`,
      `the resolver answers 10.9.9.9 for ${FQDN}, expected ${IP}, 20.30.40.51`,
    ]);
  });
});

describe("precheckDns: before issuing, with and without manageRecord", () => {
  const managed = { ...settings, manageRecord: true, recordTtlSeconds: 120 } as RenewSettings;
  const wrongRecord = () => {
    const log = recordingLogger();
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP, logger: log.logger });
    w.zone.seedA(FQDN, ["10.9.9.9"]);
    const fields = () => log.entries.map(({ time: _t, pid: _p, hostname: _h, err, ...rest }) => ({ ...rest, ...(err ? { err: (err as { message: string }).message } : {}) }));
    return { w, fields };
  };

  it("when DNS is wrong and manageRecord is off, each problem is a warning and nothing is written", async () => {
    const { w, fields } = wrongRecord();
    const dns = await precheckDns(w.deps, settings, [IP]);
    expect(dns.ok).toBe(false);
    expect(w.zone.aUpserts).toEqual([]);
    expect(fields()).toEqual([
      { level: 40, stage: "verify-dns", fqdn: FQDN, msg: `DNS check before issuing: authoritative servers answer 10.9.9.9 for ${FQDN}, expected ${IP}` },
      { level: 40, stage: "verify-dns", fqdn: FQDN, msg: `DNS check before issuing: the resolver answers 10.9.9.9 for ${FQDN}, expected ${IP}` },
    ]);
  });

  it("when DNS is wrong and manageRecord is on, the A record is set to the IPv4 addresses only, logged, and checked again", async () => {
    const { w, fields } = wrongRecord();
    const dns = await precheckDns(w.deps, managed, [IP, "2001:db8::1", LB]);
    expect(w.zone.aUpserts).toEqual([{ fqdn: FQDN, addresses: [IP], ttl: 120, outcome: "updated" }]);
    expect(dns.ok).toBe(true);
    expect(fields()).toEqual([{ level: 30, stage: "preflight", fqdn: FQDN, addresses: [IP], outcome: "updated", msg: "A record managed" }]);
  });

  it("when DNS is right, manageRecord writes nothing", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    expect((await precheckDns(w.deps, managed, [IP])).ok).toBe(true);
    expect(w.zone.aUpserts).toEqual([]);
  });

  it("when there is no IPv4 address to point at, manageRecord warns and writes nothing", async () => {
    const { w, fields } = wrongRecord();
    await precheckDns(w.deps, managed, [LB]);
    expect(w.zone.aUpserts).toEqual([]);
    expect(fields()[0]).toEqual({ level: 40, stage: "preflight", fqdn: FQDN, msg: "manageRecord is on but there is no IPv4 address to point the A record at" });
  });

  it("when the FQDN is a CNAME, manageRecord does not replace it and warns", async () => {
    const { w, fields } = wrongRecord();
    w.zone.seedCname(FQDN, LB);
    await precheckDns(w.deps, managed, [IP]);
    expect(w.zone.aUpserts).toEqual([]);
    expect(fields()[0]).toEqual({ level: 40, stage: "preflight", fqdn: FQDN, msg: `manageRecord is on but ${FQDN} is a CNAME to ${LB}; amlcert does not replace a CNAME with an A record` });
  });

  it("when the A record cannot be written, manageRecord warns with the error and the check's problems stand", async () => {
    const { w, fields } = wrongRecord();
    w.zone.failUpsert = new Error("ARM 409");
    const dns = await precheckDns(w.deps, managed, [IP]);
    expect(dns.ok).toBe(false);
    expect(fields()[0]).toEqual({ level: 40, stage: "preflight", fqdn: FQDN, err: "ARM 409", msg: "manageRecord: could not update the A record" });
  });
});
