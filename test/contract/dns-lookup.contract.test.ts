/**
 * The DnsLookup contract against the fake (FakeLookup over FakeZones) and against the real adapter (node:dns) on two
 * authoritative DNS stand-ins, each with its own ZoneStore so that one can lag behind the other. One pair per file.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { createDnsLookup } from "../../src/dns-check/dns-lookup.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { ZoneStore, type Zone } from "../servers/zone-store.js";
import { FakeClock, FakeLookup, FakeZone } from "../support/fakes.js";
import { describeContract, ZONES } from "./dns-lookup.contract.js";

describeContract("in-process fake (FakeLookup)", async () => {
  const clock = new FakeClock(new Date("2026-05-01T12:00:00Z"));
  const servers: [string, string] = ["ns1-01.azure-dns.test:53", "ns2-01.azure-dns.test:53"];
  const zones = ZONES.map((z) => new FakeZone(z, clock, [...servers]));
  const lookup = new FakeLookup(zones, clock);
  const zoneOf = (name: string) => zones.find((z) => z.holds(name))!;
  return {
    lookup,
    servers,
    seedTxt: (name, values) => values.forEach((v) => zoneOf(name).seedTxt(name, v)),
    seedTxtOnFirstOnly: (name, value) => {
      // the second server never sees values written after it started lagging
      lookup.laggingServers.add(servers[1]);
      void zoneOf(name).addTxtValue(name, value, 60);
    },
    seedA: (name, addresses) => zoneOf(name).seedA(name, addresses),
    seedCname: (name, target) => zoneOf(name).seedCname(name, target),
    apexNameServers: ["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"],
  };
});

describe("on two authoritative DNS stand-ins", () => {
  const stores = [new ZoneStore(), new ZoneStore()] as const;
  let dns: DnsServer[] = [];

  beforeAll(async () => {
    dns = [await startDnsServer({ zones: stores[0] }), await startDnsServer({ zones: stores[1] })];
  });
  afterAll(async () => {
    await Promise.all(dns.map((d) => d.close()));
  });

  describeContract("dns-lookup.ts (node:dns, a fresh resolver per query)", async () => {
    // fresh zones for each test: addZone replaces a zone of the same name (a lookup first applies pending writes)
    for (const store of stores) store.lookup("drain.example.test", "TXT");
    const zones: Zone[][] = stores.map((store) => ZONES.map((z) => store.addZone("sub", "rg", z)));
    const put = (which: number[], name: string, type: "TXT" | "A" | "CNAME", data: Parameters<ZoneStore["putRecordSet"]>[3]) => {
      for (const i of which) {
        const zone = zones[i]!.find((z) => name === z.name || name.endsWith(`.${z.name}`))!;
        stores[i]!.putRecordSet(zone, type, name === zone.name ? "@" : name.slice(0, -(zone.name.length + 1)), data);
      }
    };
    const txtOf = (i: number, name: string) => {
      const zone = zones[i]!.find((z) => name.endsWith(`.${z.name}`))!;
      return stores[i]!.getRecordSet(zone, "TXT", name.slice(0, -(zone.name.length + 1)))?.txt ?? [];
    };
    return {
      lookup: createDnsLookup({ timeoutMs: 500, tries: 2 }),
      servers: [dns[0]!.address, dns[1]!.address],
      seedTxt: (name, values) => put([0, 1], name, "TXT", { ttl: 60, txt: values.map((v) => [v]) }),
      seedTxtOnFirstOnly: (name, value) => put([0], name, "TXT", { ttl: 60, txt: [...txtOf(0, name), [value]] }),
      seedA: (name, addresses) => put([0, 1], name, "A", { ttl: 300, addresses }),
      seedCname: (name, target) => put([0, 1], name, "CNAME", { ttl: 60, cname: target }),
      // ZoneStore.addZone's default name servers, which the stand-in serves at the apex
      apexNameServers: ["ns1-01.azure-dns.com", "ns2-01.azure-dns.net"],
    };
  });
});
