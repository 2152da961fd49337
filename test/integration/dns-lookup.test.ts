/**
 * amlcert's DNS adapter (node:dns) and propagation check against real DNS servers on loopback: two authoritative
 * stand-ins for the same zone, each with its own ZoneStore so one can lag behind the other.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDnsLookup, DnsLookupError } from "../../src/dns-check/dns-lookup.js";
import { authoritativeServers } from "../../src/dns-check/name-servers.js";
import { waitForTxt, waitForTxtGone } from "../../src/dns-check/propagation.js";
import { AmlcertError } from "../../src/errors.js";
import type { DnsZone } from "../../src/ports.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { ZoneStore, type Zone } from "../servers/zone-store.js";
import { VirtualClock } from "../support/virtual-clock.js";

const silent = { debug: () => {}, info: () => {} };

function fakeZone(zone: string, nameServers: string[]): DnsZone {
  const unused = () => Promise.reject(new Error("not used in this test"));
  return { zone, nameServers: async () => nameServers, addTxtValue: unused, removeTxtValue: unused, getCname: unused, upsertA: unused };
}

describe("DNS lookup adapter and propagation check, over real DNS", () => {
  // The stores' propagation delays and the propagation wait run on one virtual clock that moves only when the wait
  // sleeps: a record is served once the wait has slept past its delay, never because real time passed.
  const clock = new VirtualClock(new Date("2025-03-01T12:00:00Z"));
  const storeA = new ZoneStore({ now: () => clock.now().getTime() });
  const storeB = new ZoneStore({ now: () => clock.now().getTime() });
  let a: DnsServer;
  let b: DnsServer;
  let zoneA: Zone;
  let zoneB: Zone;
  let otherA: Zone;
  // servers that answer are given ample time: no test depends on an answer arriving before a short real timeout
  const lookup = createDnsLookup({ timeoutMs: 5_000, tries: 2 });

  /** Write the same record set to both servers' stores. */
  function putBoth(type: "TXT" | "A" | "AAAA" | "CNAME", rel: string, data: Parameters<ZoneStore["putRecordSet"]>[3]) {
    storeA.putRecordSet(zoneA, type, rel, data);
    storeB.putRecordSet(zoneB, type, rel, data);
  }

  beforeAll(async () => {
    zoneA = storeA.addZone("sub", "rg", "example.com");
    zoneB = storeB.addZone("sub", "rg", "example.com");
    otherA = storeA.addZone("sub", "rg", "other.net");
    putBoth("TXT", "both", { ttl: 60, txt: [["shared"], ["split-", "in-two"]] });
    storeA.putRecordSet(zoneA, "TXT", "lagging", { ttl: 60, txt: [["old"], ["new"]] });
    storeB.putRecordSet(zoneB, "TXT", "lagging", { ttl: 60, txt: [["old"]] });
    putBoth("A", "www", { ttl: 300, addresses: ["192.0.2.10"] });
    putBoth("AAAA", "www", { ttl: 300, addresses: ["2001:db8::10"] });
    // endpoint.example.com -> lb.other.net -> final addresses (only server A serves other.net)
    storeA.putRecordSet(zoneA, "CNAME", "endpoint", { ttl: 60, cname: "lb.other.net" });
    storeA.putRecordSet(otherA, "CNAME", "lb", { ttl: 60, cname: "final.other.net" });
    storeA.putRecordSet(otherA, "A", "final", { ttl: 60, addresses: ["198.51.100.7"] });
    storeA.putRecordSet(zoneA, "CNAME", "loop-a", { ttl: 60, cname: "loop-b.example.com" });
    storeA.putRecordSet(zoneA, "CNAME", "loop-b", { ttl: 60, cname: "loop-a.example.com" });
    storeA.putRecordSet(zoneA, "CNAME", "gone", { ttl: 60, cname: "nothing.other.net" });
    a = await startDnsServer({ zones: storeA });
    b = await startDnsServer({ zones: storeB });
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  afterEach(() => {
    storeA.propagationDelayMs = 0;
    storeB.propagationDelayMs = 0;
    for (const s of [a, b]) {
      s.dropNextQueries(0);
      s.failNextQueries(0);
    }
  });

  describe("txt", () => {
    it("when every server serves the values, returns them with each record's strings joined", async () => {
      expect((await lookup.txt("both.example.com", [a.address, b.address])).sort()).toEqual(["shared", "split-in-two"]);
    });

    it("when one server lags, returns only the values every server serves, and asks each of them", async () => {
      a.queries.length = 0;
      b.queries.length = 0;
      expect(await lookup.txt("lagging.example.com", [a.address, b.address])).toEqual(["old"]);
      expect(await lookup.txt("lagging.example.com", [a.address])).toEqual(["old", "new"]);
      expect(a.queries.filter((q) => q.name === "lagging.example.com").length).toBeGreaterThanOrEqual(2);
      expect(b.queries.filter((q) => q.name === "lagging.example.com").length).toBeGreaterThanOrEqual(1);
    });

    it("when the name does not exist (NXDOMAIN) or has no TXT (NODATA), returns an empty list", async () => {
      expect(await lookup.txt("absent.example.com", [a.address, b.address])).toEqual([]);
      expect(await lookup.txt("www.example.com", [a.address, b.address])).toEqual([]);
    });

    it("when a server answers SERVFAIL, throws a DnsLookupError naming that server", async () => {
      b.failNextQueries(10);
      const err = await lookup.txt("both.example.com", [a.address, b.address]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DnsLookupError);
      expect(err).toMatchObject({ code: "ESERVFAIL", server: b.address, query: "both.example.com", rrtype: "TXT" });
      expect((err as Error).message).toBe(
        `DNS TXT query for both.example.com to ${b.address} failed: ESERVFAIL: the server answered SERVFAIL (it is reachable but could not answer for this name: a broken delegation, a DNSSEC failure or an unreachable upstream)`,
      );
    });

    it("when a server does not answer at all, throws a DnsLookupError (timeout) naming that server, the bound and the tries, not a SERVFAIL", async () => {
      a.dropNextQueries(1000);
      // the server never answers, so a short timeout is safe here
      const err = await createDnsLookup({ timeoutMs: 300, tries: 2 }).txt("both.example.com", [a.address]).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: "DnsLookupError", code: "ETIMEOUT", server: a.address });
      expect((err as Error).message).toBe(`DNS TXT query for both.example.com to ${a.address} failed: ETIMEOUT: no answer (timed out after 2 tries of 300 ms; dns.queryTimeout, dns.queryTries)`);
    });

    it("when a server refuses the query, the message says REFUSED, neither a timeout nor a SERVFAIL", async () => {
      b.failNextQueries(10, "REFUSED");
      const err = await lookup.txt("both.example.com", [b.address]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "EREFUSED", server: b.address });
      expect((err as Error).message).toBe(`DNS TXT query for both.example.com to ${b.address} failed: EREFUSED: the server answered REFUSED (it does not serve this zone, or does not answer this client)`);
    });

    it("when the name is outside the server's zones, throws (REFUSED is not an empty answer)", async () => {
      await expect(lookup.txt("www.example.org", [a.address])).rejects.toMatchObject({ code: "EREFUSED" });
    });

    it("when a single lost packet is retried, the answer still arrives", async () => {
      a.dropNextQueries(1);
      // the first try waits out its timeout; the retries that follow are answered, with a second or more each to spare
      const retrying = createDnsLookup({ timeoutMs: 1_000, tries: 3 });
      expect((await retrying.txt("both.example.com", [a.address])).sort()).toEqual(["shared", "split-in-two"]);
      expect(a.queries.some((q) => q.dropped)).toBe(true);
    });
  });

  describe("resolve", () => {
    it("when the name has addresses and no CNAME, returns its A and AAAA addresses and an empty chain", async () => {
      expect(await lookup.resolve("www.example.com", [a.address])).toEqual({ addresses: ["192.0.2.10", "2001:db8::10"], cnames: [] });
    });

    it("follows a CNAME chain across two zones hop by hop and returns the chain and the final addresses", async () => {
      a.queries.length = 0;
      expect(await lookup.resolve("endpoint.example.com", [a.address])).toEqual({
        addresses: ["198.51.100.7"],
        cnames: ["lb.other.net", "final.other.net"],
      });
      const cnameQueries = a.queries.filter((q) => q.type === "CNAME").map((q) => q.name);
      expect(cnameQueries).toEqual(["endpoint.example.com", "lb.other.net", "final.other.net"]);
    });

    it("when the chain ends at a missing name, returns no addresses and the chain so far", async () => {
      expect(await lookup.resolve("gone.example.com", [a.address])).toEqual({ addresses: [], cnames: ["nothing.other.net"] });
    });

    it("when CNAMEs loop, throws a CNAME_LOOP error instead of spinning", async () => {
      const err = await lookup.resolve("loop-a.example.com", [a.address]).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: "DnsLookupError", code: "CNAME_LOOP" });
      expect((err as Error).message).toContain("loop-a.example.com -> loop-b.example.com -> loop-a.example.com");
    });

    it("when the chain is longer than the bound, throws CNAME_CHAIN_TOO_LONG", async () => {
      const short = createDnsLookup({ timeoutMs: 5_000, tries: 2, maxCnameHops: 1 });
      await expect(short.resolve("endpoint.example.com", [a.address])).rejects.toMatchObject({ code: "CNAME_CHAIN_TOO_LONG" });
    });
  });

  describe("hostAddresses", () => {
    it("resolves a host name through the operating system and passes IP literals through", async () => {
      const local = await lookup.hostAddresses("localhost");
      expect(local.some((ip) => ip === "127.0.0.1" || ip === "::1")).toBe(true);
      expect(await lookup.hostAddresses("127.0.0.1")).toEqual(["127.0.0.1"]);
    });

    it("when the host does not resolve, throws a DnsLookupError naming it", async () => {
      await expect(lookup.hostAddresses("no-such-host.invalid")).rejects.toMatchObject({ name: "DnsLookupError", query: "no-such-host.invalid" });
    });
  });

  describe("authoritativeServers", () => {
    it("when an override is given, it wins over the zone's name servers and keeps ports", async () => {
      const zone = fakeZone("example.com", ["ns1-01.azure-dns.com"]);
      expect(await authoritativeServers({ zone, lookup, override: [a.address, "[::1]:5353", "::1", "localhost:5300"] })).toEqual([
        a.address,
        "[::1]:5353",
        "[::1]:53",
        expect.stringMatching(/^(127\.0\.0\.1:5300|\[::1\]:5300)$/),
      ]);
    });

    it("without an override, resolves the zone's ARM name servers to addresses on port 53", async () => {
      const zone = fakeZone("example.com", ["localhost.", "127.0.0.1"]);
      const servers = await authoritativeServers({ zone, lookup });
      expect(servers[0]).toMatch(/^(127\.0\.0\.1|\[::1\]):53$/);
      expect(servers).toContain("127.0.0.1:53");
    });

    it("when an override entry is malformed, throws CONFIG_INVALID", async () => {
      await expect(authoritativeServers({ zone: fakeZone("example.com", []), lookup, override: ["127.0.0.1:99999"] })).rejects.toMatchObject({
        code: "CONFIG_INVALID",
      });
    });

    it("when a name server does not resolve, throws DNS_PROPAGATION_TIMEOUT naming it", async () => {
      const err = await authoritativeServers({ zone: fakeZone("example.com", ["ns.invalid"]), lookup }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
      expect((err as Error).message).toContain("ns.invalid");
    });
  });

  describe("propagation through real servers", () => {
    it("when a record is written with a propagation delay, it is not served at first and waitForTxt sees it arrive", async () => {
      storeA.propagationDelayMs = 300;
      storeB.propagationDelayMs = 300;
      const value = "propagating-value-1234567890";
      putBoth("TXT", "_acme-challenge.delayed", { ttl: 60, txt: [[value]] });
      const servers = [a.address, b.address];
      expect(await lookup.txt("_acme-challenge.delayed.example.com", servers)).toEqual([]);
      // checks at 0, 50, ..., 300 ms of the clock: served at the seventh
      const result = await waitForTxt({ lookup, name: "_acme-challenge.delayed.example.com", value, servers, timeoutMs: 10_000, intervalMs: 50, clock, logger: silent });
      expect(result).toEqual({ attempts: 7, elapsedMs: 300 });
      expect(await lookup.txt("_acme-challenge.delayed.example.com", servers)).toEqual([value]);

      storeA.deleteRecordSet(zoneA, "TXT", "_acme-challenge.delayed");
      storeB.deleteRecordSet(zoneB, "TXT", "_acme-challenge.delayed");
      expect(await lookup.txt("_acme-challenge.delayed.example.com", servers)).toEqual([value]);
      const gone = await waitForTxtGone({ lookup, name: "_acme-challenge.delayed.example.com", value, servers, timeoutMs: 10_000, intervalMs: 50, clock, logger: silent });
      expect(gone).toEqual({ attempts: 7, elapsedMs: 300 });
      expect(await lookup.txt("_acme-challenge.delayed.example.com", servers)).toEqual([]);
    });

    it("when one server never serves the value, waitForTxt times out naming that server and not the other", async () => {
      const err = await waitForTxt({ lookup, name: "lagging.example.com", value: "new", servers: [a.address, b.address], timeoutMs: 300, intervalMs: 50, clock, logger: silent }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
      const message = (err as Error).message;
      expect(message).toContain("lagging.example.com");
      expect(message).toContain(`: ${b.address}`);
      expect(message).not.toContain(a.address);
      expect(message).toContain("1 of 2");
      // checks at 0, 50, ..., 300 ms of the clock
      expect((err as AmlcertError).details).toMatchObject({ attempts: 7, timeoutMs: 300 });
    });
  });
});
