/** The DnsZone contract against the fake (FakeZone) and against the real adapter on the ARM stand-in (one per file). */
import { afterAll, beforeAll, describe } from "vitest";
import { DNS_RG, SUBSCRIPTION, ZONE, fixtureDnsZone, startAzureFixture, type AzureFixture } from "../integration/azure-fixture.js";
import { FakeClock, FakeZone } from "../support/fakes.js";
import { describeContract } from "./dns-zone.contract.js";

const NAME_SERVERS = ["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"];
const sorted = (xs: string[]) => [...xs].sort();

describeContract("in-process fake (FakeZone)", async () => {
  const zone = new FakeZone(ZONE, new FakeClock(new Date("2026-05-01T12:00:00Z")), [...NAME_SERVERS]);
  return {
    zone,
    nameServers: NAME_SERVERS,
    txtRecordSet: (fqdn) => (zone.txt.has(fqdn) ? sorted(zone.txtValues(fqdn)) : undefined),
    aRecordSet: (fqdn) => {
      const addresses = zone.a.get(fqdn);
      return addresses ? { addresses: sorted(addresses), ttl: zone.aTtl.get(fqdn)! } : undefined;
    },
    seedTxt: (fqdn, value) => zone.seedTxt(fqdn, value),
    seedCname: (fqdn, target) => zone.seedCname(fqdn, target),
  };
});

describe("on the ARM stand-in", () => {
  let fx: AzureFixture;
  beforeAll(async () => {
    fx = await startAzureFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });

  const relative = (fqdn: string) => (fqdn === ZONE ? "@" : fqdn.slice(0, -(ZONE.length + 1)));

  describeContract("azure-dns-zone.ts through @azure/arm-dns", async () => {
    const record = fx.zones.getZone(SUBSCRIPTION, DNS_RG, ZONE)!;
    for (const rs of fx.zones.listRecordSets(record)) fx.zones.deleteRecordSet(record, rs.type, rs.name);
    const zone = fixtureDnsZone(fx);
    return {
      zone,
      nameServers: NAME_SERVERS,
      txtRecordSet: (fqdn) => {
        const rs = fx.zones.getRecordSet(record, "TXT", relative(fqdn));
        return rs ? sorted((rs.txt ?? []).map((v) => v.join(""))) : undefined;
      },
      aRecordSet: (fqdn) => {
        const rs = fx.zones.getRecordSet(record, "A", relative(fqdn));
        return rs ? { addresses: sorted(rs.addresses ?? []), ttl: rs.ttl } : undefined;
      },
      seedTxt: (fqdn, value) => {
        const rs = fx.zones.getRecordSet(record, "TXT", relative(fqdn));
        fx.zones.putRecordSet(record, "TXT", relative(fqdn), { ttl: rs?.ttl ?? 60, txt: [...(rs?.txt ?? []), [value]] });
      },
      seedCname: (fqdn, target) => void fx.zones.putRecordSet(record, "CNAME", relative(fqdn), { ttl: 300, cname: target }),
    };
  });
});
