/**
 * The DnsZone port (src/ports.ts) as Azure DNS shows it through ARM: what every implementation must do, the in-process
 * fake (FakeZone) and the real adapter (azure-dns-zone.ts on the ARM stand-in) alike. Names are absolute; the subject
 * holds one zone, `zone.zone`, and reads the zone's state beside the port (the stand-in's record sets, the fake's maps).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { DnsZone } from "../../src/ports.js";

export interface DnsZoneSubject {
  /** the port under test, for an empty zone (no record sets but the apex NS/SOA) */
  zone: DnsZone;
  /** the name servers the zone was created with, as ARM reports them (host names, no trailing dot) */
  nameServers: string[];
  /** the TXT values of the record set at `fqdn` as the zone holds them; undefined when there is no such record set */
  txtRecordSet(fqdn: string): string[] | undefined;
  /** the A record set at `fqdn`; undefined when there is none */
  aRecordSet(fqdn: string): { addresses: string[]; ttl: number } | undefined;
  /** another writer puts a TXT value at `fqdn` (beside the port) */
  seedTxt(fqdn: string, value: string): void;
  /** a CNAME record set at `fqdn`, written beside the port, e.g. by whoever delegated the challenge */
  seedCname(fqdn: string, target: string): void;
}

export function describeContract(name: string, makeSubject: () => Promise<DnsZoneSubject>): void {
  describe(`DnsZone contract: ${name}`, () => {
    let s: DnsZoneSubject;
    let z: string;
    beforeEach(async () => {
      s = await makeSubject();
      z = s.zone.zone;
    });

    it("when a TXT value is added to a name without a record set, the record set is created holding that value", async () => {
      await s.zone.addTxtValue(`_acme-challenge.www.${z}`, "value-1", 60);
      expect(s.txtRecordSet(`_acme-challenge.www.${z}`)).toEqual(["value-1"]);
    });

    it("when a value is appended, the values already there (others' included) are kept", async () => {
      s.seedTxt(`_acme-challenge.${z}`, "someone-elses");
      await s.zone.addTxtValue(`_acme-challenge.${z}`, "ours-1", 60);
      await s.zone.addTxtValue(`_acme-challenge.${z}`, "ours-2", 60);
      expect(s.txtRecordSet(`_acme-challenge.${z}`)?.sort()).toEqual(["ours-1", "ours-2", "someone-elses"]);
    });

    it("when four values are appended to one name at once, every value survives", async () => {
      const values = ["auth-a", "auth-b", "auth-c", "auth-d"];
      await Promise.all(values.map((v) => s.zone.addTxtValue(`_acme-challenge.${z}`, v, 60)));
      expect(s.txtRecordSet(`_acme-challenge.${z}`)?.sort()).toEqual(values);
    });

    it("when a value already present is added again, the record set holds it once", async () => {
      await s.zone.addTxtValue(`_acme-challenge.${z}`, "same", 60);
      await s.zone.addTxtValue(`_acme-challenge.${z}`, "same", 60);
      expect(s.txtRecordSet(`_acme-challenge.${z}`)).toEqual(["same"]);
    });

    it("when names are given in upper case or with a trailing dot, the same record set is meant", async () => {
      await s.zone.addTxtValue(`_ACME-Challenge.WWW.${z.toUpperCase()}.`, "v", 60);
      expect(s.txtRecordSet(`_acme-challenge.www.${z}`)).toEqual(["v"]);
      await s.zone.removeTxtValue(`_acme-challenge.www.${z}.`, "v");
      expect(s.txtRecordSet(`_acme-challenge.www.${z}`)).toBeUndefined();
    });

    it("when our value is removed, only it goes; when the last value goes, the record set is deleted", async () => {
      s.seedTxt(`_acme-challenge.${z}`, "someone-elses");
      await s.zone.addTxtValue(`_acme-challenge.${z}`, "ours", 60);
      await s.zone.removeTxtValue(`_acme-challenge.${z}`, "ours");
      expect(s.txtRecordSet(`_acme-challenge.${z}`)).toEqual(["someone-elses"]);
      await s.zone.removeTxtValue(`_acme-challenge.${z}`, "someone-elses");
      expect(s.txtRecordSet(`_acme-challenge.${z}`)).toBeUndefined();
    });

    it("when the record set is missing, or does not hold the value, removing is not an error and changes nothing", async () => {
      await expect(s.zone.removeTxtValue(`_acme-challenge.nothing.${z}`, "v")).resolves.toBeUndefined();
      expect(s.txtRecordSet(`_acme-challenge.nothing.${z}`)).toBeUndefined();
      s.seedTxt(`_acme-challenge.${z}`, "other");
      await expect(s.zone.removeTxtValue(`_acme-challenge.${z}`, "not-there")).resolves.toBeUndefined();
      expect(s.txtRecordSet(`_acme-challenge.${z}`)).toEqual(["other"]);
    });

    it("when the apex itself is named, its TXT record set is written", async () => {
      await s.zone.addTxtValue(z, "apex-value", 60);
      expect(s.txtRecordSet(z)).toEqual(["apex-value"]);
    });

    it("when a name outside the zone is given, the write is refused with INTERNAL and nothing is written", async () => {
      for (const call of [() => s.zone.addTxtValue("_acme-challenge.other.example", "v", 60), () => s.zone.removeTxtValue("_acme-challenge.other.example", "v")]) {
        const err = await call().then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(AmlcertError);
        expect(err).toMatchObject({ code: "INTERNAL" });
        expect((err as Error).message).toContain(z);
      }
      expect(s.txtRecordSet("_acme-challenge.other.example")).toBeUndefined();
    });

    it("getCname returns the CNAME target in lower case without the trailing dot, and undefined where there is no CNAME", async () => {
      s.seedCname(`_acme-challenge.api.${z}`, "_ACME-Challenge.API.Validation.Example.NET.");
      expect(await s.zone.getCname(`_acme-challenge.api.${z}`)).toBe("_acme-challenge.api.validation.example.net");
      expect(await s.zone.getCname(`_acme-challenge.www.${z}`)).toBeUndefined();
    });

    it("upsertA creates a missing set, leaves an identical one alone (addresses in any order), and updates a different one", async () => {
      const ml = `ml.${z}`;
      expect(await s.zone.upsertA(ml, ["10.0.0.4", "10.0.0.5"], 300)).toBe("created");
      expect(s.aRecordSet(ml)).toEqual({ addresses: ["10.0.0.4", "10.0.0.5"], ttl: 300 });
      expect(await s.zone.upsertA(ml, ["10.0.0.5", "10.0.0.4"], 300)).toBe("unchanged");
      expect(await s.zone.upsertA(ml, ["10.0.0.6"], 300)).toBe("updated");
      expect(s.aRecordSet(ml)).toEqual({ addresses: ["10.0.0.6"], ttl: 300 });
    });

    it("upsertA with the same addresses and another TTL updates the set to that TTL", async () => {
      const ml = `ml.${z}`;
      await s.zone.upsertA(ml, ["10.0.0.4"], 300);
      expect(await s.zone.upsertA(ml, ["10.0.0.4"], 60)).toBe("updated");
      expect(s.aRecordSet(ml)).toEqual({ addresses: ["10.0.0.4"], ttl: 60 });
    });

    it("upsertA sets exactly the addresses asked for, each once", async () => {
      const ml = `ml.${z}`;
      await s.zone.upsertA(ml, ["10.0.0.9", "10.0.0.7", "10.0.0.9"], 300);
      expect(s.aRecordSet(ml)).toEqual({ addresses: ["10.0.0.7", "10.0.0.9"], ttl: 300 });
    });

    it("nameServers returns the zone's name servers as ARM reports them, without trailing dots", async () => {
      expect(await s.zone.nameServers()).toEqual(s.nameServers);
    });
  });
}
