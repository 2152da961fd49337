/**
 * The DnsLookup port (src/ports.ts) as DNS on the wire shows it, asking given authoritative servers: TXT values that
 * every server asked serves, NXDOMAIN/NODATA as an empty answer (not a failure), REFUSED for a name the servers are not
 * authoritative for, and CNAME chains followed hop by hop. The fake (FakeLookup over FakeZones) and the real adapter
 * (dns-lookup.ts on node:dns against two authoritative DNS stand-ins) both pass it. (The system resolver, `servers`
 * undefined, is not part of it: a test cannot point the system resolver at loopback.)
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { DnsLookup } from "../../src/ports.js";

/** the zones both servers are authoritative for */
export const ZONES = ["example.test", "example.net"] as const;

export interface DnsLookupSubject {
  lookup: DnsLookup;
  /** two authoritative servers of both ZONES, as query targets */
  servers: [string, string];
  /** both servers serve these TXT values at `name` */
  seedTxt(name: string, values: string[]): void;
  /** only the first server serves `value` at `name` (the second lags behind) */
  seedTxtOnFirstOnly(name: string, value: string): void;
  seedA(name: string, addresses: string[]): void;
  seedCname(name: string, target: string): void;
  /** the NS record set the servers hold at the apex of ZONES[0] (host names) */
  apexNameServers: string[];
}

const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: unknown) => (e as { code?: string }).code ?? String(e));

export function describeContract(name: string, makeSubject: () => Promise<DnsLookupSubject>): void {
  describe(`DnsLookup contract: ${name}`, () => {
    let s: DnsLookupSubject;
    beforeEach(async () => {
      s = await makeSubject();
    });

    it("txt returns every value at the name, asked of the given servers", async () => {
      s.seedTxt("_acme-challenge.www.example.test", ["value-a", "value-b"]);
      expect((await s.lookup.txt("_acme-challenge.www.example.test", s.servers)).sort()).toEqual(["value-a", "value-b"]);
    });

    it("txt treats the name without regard to case or a trailing dot", async () => {
      s.seedTxt("_acme-challenge.www.example.test", ["v"]);
      expect(await s.lookup.txt("_ACME-Challenge.WWW.example.test.", s.servers)).toEqual(["v"]);
    });

    it("when one server lacks a value, txt asked of both returns only the values both serve; asked of the first alone, all of them", async () => {
      s.seedTxt("_acme-challenge.lag.example.test", ["old"]);
      s.seedTxtOnFirstOnly("_acme-challenge.lag.example.test", "new");
      expect(await s.lookup.txt("_acme-challenge.lag.example.test", s.servers)).toEqual(["old"]);
      expect((await s.lookup.txt("_acme-challenge.lag.example.test", [s.servers[0]])).sort()).toEqual(["new", "old"]);
    });

    it("when the name does not exist (NXDOMAIN) or holds no TXT (NODATA), txt returns an empty list", async () => {
      s.seedA("www.example.test", ["192.0.2.10"]);
      expect(await s.lookup.txt("_acme-challenge.absent.example.test", s.servers)).toEqual([]);
      expect(await s.lookup.txt("www.example.test", s.servers)).toEqual([]);
    });

    it("when the servers are not authoritative for the name, txt rejects with EREFUSED (not an empty answer)", async () => {
      expect(await code(s.lookup.txt("_acme-challenge.www.example.org", s.servers))).toBe("EREFUSED");
    });

    it("when no server is given, txt rejects with NO_SERVERS", async () => {
      expect(await code(s.lookup.txt("_acme-challenge.www.example.test", []))).toBe("NO_SERVERS");
    });

    it("resolve returns the addresses of a name without a CNAME, and an empty chain", async () => {
      s.seedA("ml.example.test", ["192.0.2.10", "192.0.2.11"]);
      const r = await s.lookup.resolve("ml.example.test", s.servers);
      expect({ ...r, addresses: [...r.addresses].sort() }).toEqual({ addresses: ["192.0.2.10", "192.0.2.11"], cnames: [] });
    });

    it("resolve follows a CNAME chain across the servers' zones and returns the chain in order and the final addresses", async () => {
      s.seedCname("ml.example.test", "lb.example.net");
      s.seedCname("lb.example.net", "final.example.net");
      s.seedA("final.example.net", ["198.51.100.7"]);
      expect(await s.lookup.resolve("ML.example.test.", s.servers)).toEqual({ addresses: ["198.51.100.7"], cnames: ["lb.example.net", "final.example.net"] });
    });

    it("when the chain ends at a name that does not exist, resolve returns the chain so far and no addresses", async () => {
      s.seedCname("gone.example.test", "nothing.example.net");
      expect(await s.lookup.resolve("gone.example.test", s.servers)).toEqual({ addresses: [], cnames: ["nothing.example.net"] });
    });

    it("when the name does not exist, resolve returns no addresses and no chain", async () => {
      expect(await s.lookup.resolve("absent.example.test", s.servers)).toEqual({ addresses: [], cnames: [] });
    });

    it("when CNAMEs loop, resolve rejects with CNAME_LOOP instead of spinning", async () => {
      s.seedCname("loop-a.example.test", "loop-b.example.test");
      s.seedCname("loop-b.example.test", "loop-a.example.test");
      expect(await code(s.lookup.resolve("loop-a.example.test", s.servers))).toBe("CNAME_LOOP");
    });

    it("when a CNAME leads out of the servers' zones, the authoritative servers refuse the next hop: resolve rejects with EREFUSED", async () => {
      s.seedCname("ml.example.test", "lb.cloudapp.example.org");
      expect(await code(s.lookup.resolve("ml.example.test", s.servers))).toBe("EREFUSED");
    });

    it("ns answers the NS record set at a zone's apex, in lower case without the trailing dot", async () => {
      expect((await s.lookup.ns(ZONES[0].toUpperCase(), s.servers)).sort()).toEqual([...s.apexNameServers].sort());
    });

    it("when a name holds no NS record set, ns answers no servers", async () => {
      expect(await s.lookup.ns(`www.${ZONES[0]}`, s.servers)).toEqual([]);
    });

    it("hostAddresses passes an IP literal through", async () => {
      expect(await s.lookup.hostAddresses("127.0.0.1")).toEqual(["127.0.0.1"]);
      expect(await s.lookup.hostAddresses("::1")).toEqual(["::1"]);
    });
  });
}
