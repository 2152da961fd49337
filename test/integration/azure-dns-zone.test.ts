import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { DnsManagementClient } from "@azure/arm-dns";
import type { AzureDnsZoneOptions } from "../../src/azure-dns/azure-dns-zone.js";
import { armClientOptions } from "../../src/azure/request-policy.js";
import { AmlcertError } from "../../src/errors.js";
import type { DnsZone } from "../../src/ports.js";
import { DNS_RG, SP, SUBSCRIPTION, ZONE, fixtureDnsZone, startAzureFixture, type AzureFixture } from "./azure-fixture.js";
import { amlcertFailure } from "../support/assertions.js";

const DNS_ROLE = join(import.meta.dirname, "../../deploy/azure/amlcert-dns-role.json");
const ZONE_SCOPE = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnszones/${ZONE}`;

let fx: AzureFixture;
beforeAll(async () => {
  fx = await startAzureFixture();
});
afterAll(async () => {
  await fx?.close();
});
afterEach(() => {
  fx.arm.beforeHandle = undefined;
  fx.logLines.length = 0;
  fx.arm.faults.clear();
  fx.arm.clearAuthorization();
  fx.arm.requests.length = 0;
  for (const rs of fx.zones.listRecordSets(fx.zones.getZone(SUBSCRIPTION, DNS_RG, ZONE)!)) {
    fx.zones.deleteRecordSet(fx.zones.getZone(SUBSCRIPTION, DNS_RG, ZONE)!, rs.type, rs.name);
  }
});

function dnsZone(overrides: Partial<AzureDnsZoneOptions> = {}): DnsZone {
  return fixtureDnsZone(fx, overrides);
}

const zoneRecord = () => fx.zones.getZone(SUBSCRIPTION, DNS_RG, ZONE)!;
const txtValues = (rel: string) => (fx.zones.getRecordSet(zoneRecord(), "TXT", rel)?.txt ?? []).map((v) => v.join(""));
const etagOf = (type: "TXT" | "A", rel: string) => fx.zones.getRecordSet(zoneRecord(), type, rel)!.etag;
const unquote = (etag: string | undefined) => etag?.replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
const statuses = () => fx.arm.requests.map((r) => `${r.method} ${r.status}`);
/** the adapter's log lines (JSON), without pino's own fields */
const adapterLogs = () =>
  fx.logLines
    .flatMap((chunk) => chunk.split("\n").filter(Boolean))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.component === "azure-dns")
    .map(({ level, time, pid, hostname, ...rest }) => rest);

/** Play another writer that rewrites the TXT set `rel` (new ETag) right before the first request with this method. */
function concurrentWriterBefore(method: string, rel: string, values: string[]): void {
  let played = false;
  fx.arm.beforeHandle = (r) => {
    if (played || r.method !== method) return;
    played = true;
    fx.zones.putRecordSet(zoneRecord(), "TXT", rel, { ttl: 60, txt: values.map((v) => [v]) });
  };
}


describe("TXT values", () => {
  test("when one value is added, the record set is created with If-None-Match: * and the TTL asked for", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.www.${ZONE}`, "value-1", 60);
    expect(txtValues("_acme-challenge.www")).toEqual(["value-1"]);
    expect(fx.zones.getRecordSet(zoneRecord(), "TXT", "_acme-challenge.www")?.ttl).toBe(60);
    const put = fx.arm.requests.find((r) => r.method === "PUT");
    expect(put).toMatchObject({ status: 201, ifNoneMatch: "*", apiVersion: "2018-05-01", principalOid: SP.objectId });
  });

  test("when four values are appended to one name concurrently, every value survives", async () => {
    const z = dnsZone();
    const values = ["auth-a", "auth-b", "auth-c", "auth-d"];
    await Promise.all(values.map((v) => z.addTxtValue(`_acme-challenge.${ZONE}`, v, 60)));
    expect(txtValues("_acme-challenge").sort()).toEqual(values);
    // every write was conditional: creates with If-None-Match, updates with If-Match
    const writes = fx.arm.requests.filter((r) => r.method === "PUT");
    expect(writes.filter((r) => r.status === 201)).toEqual([expect.objectContaining({ ifNoneMatch: "*" })]);
    const kind = (w: (typeof writes)[number]) =>
      w.ifNoneMatch === "*" && w.ifMatch === undefined ? "create" : w.ifNoneMatch === undefined && /\S/.test(w.ifMatch ?? "") ? "update" : "unconditional";
    expect(writes.map(kind).filter((k) => k === "unconditional")).toEqual([]);
    expect(writes.filter((r) => r.status === 200 || r.status === 201)).toHaveLength(4);
  });

  test("when a value is already present, adding it again writes nothing", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "same", 60);
    fx.arm.requests.length = 0;
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "same", 60);
    expect(fx.arm.requests.map((r) => r.method)).toEqual(["GET"]);
    expect(txtValues("_acme-challenge")).toEqual(["same"]);
  });

  test("when ARM answers 412 to a write, the adapter reads the set again and retries with the new ETag", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "first", 60);
    fx.arm.requests.length = 0;
    const fault = fx.arm.faults.add({ method: "PUT", status: 412, code: "PreconditionFailed", message: "The Record set _acme-challenge has been modified (etag mismatch)." });
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "second", 60);
    expect(fault.hits).toBe(1);
    expect(fx.arm.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["GET 200", "PUT 412", "GET 200", "PUT 200"]);
    expect(txtValues("_acme-challenge").sort()).toEqual(["first", "second"]);
  });

  test("when another writer changed the set after our read, the stale ETag gets 412 and our retry keeps their value", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "ours-1", 60);
    let played = false;
    fx.arm.beforeHandle = (r) => {
      // a concurrent writer rewrites the set (new ETag) between our read and our first write
      if (played || r.method !== "PUT") return;
      played = true;
      const current = fx.zones.getRecordSet(zoneRecord(), "TXT", "_acme-challenge")!;
      fx.zones.putRecordSet(zoneRecord(), "TXT", "_acme-challenge", { ttl: current.ttl, txt: [...(current.txt ?? []), ["theirs"]] });
    };
    try {
      fx.arm.requests.length = 0;
      await z.addTxtValue(`_acme-challenge.${ZONE}`, "ours-2", 60);
    } finally {
      fx.arm.beforeHandle = undefined;
    }
    expect(fx.arm.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["GET 200", "PUT 412", "GET 200", "PUT 200"]);
    expect(txtValues("_acme-challenge").sort()).toEqual(["ours-1", "ours-2", "theirs"]);
  });

  test("when one of two values is removed, the other stays; when the last is removed, the record set is deleted with If-Match", async () => {
    const z = dnsZone();
    await Promise.all([z.addTxtValue(`_acme-challenge.${ZONE}`, "keep", 60), z.addTxtValue(`_acme-challenge.${ZONE}`, "drop", 60)]);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "drop");
    expect(txtValues("_acme-challenge")).toEqual(["keep"]);
    fx.arm.requests.length = 0;
    const etag = etagOf("TXT", "_acme-challenge");
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "keep");
    expect(fx.zones.getRecordSet(zoneRecord(), "TXT", "_acme-challenge")).toBeUndefined();
    expect(statuses()).toEqual(["GET 200", "DELETE 200"]);
    expect(unquote(fx.arm.requests[1]!.ifMatch)).toBe(etag);
  });

  test("when the record set or the value is missing, removing is not an error and writes nothing", async () => {
    const z = dnsZone();
    await z.removeTxtValue(`_acme-challenge.nothing.${ZONE}`, "v");
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "other", 60);
    fx.arm.requests.length = 0;
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "not-there");
    expect(fx.arm.requests.map((r) => r.method)).toEqual(["GET"]);
    expect(txtValues("_acme-challenge")).toEqual(["other"]);
  });

  test("when the apex itself is asked for, the relative name @ is used", async () => {
    const z = dnsZone();
    await z.addTxtValue(ZONE, "apex-value", 60);
    expect(txtValues("@")).toEqual(["apex-value"]);
    expect(fx.arm.requests.map((r) => `${r.method} ${r.path.replace(/^.*\/dns[zZ]ones\/[^/]+/, "")}`)).toEqual(["GET /TXT/@", "PUT /TXT/@"]);
  });
});

describe("other record types and the zone", () => {
  test("getCname returns the CNAME target without the trailing dot, and undefined where there is none", async () => {
    fx.zones.putRecordSet(zoneRecord(), "CNAME", "_acme-challenge.api", { ttl: 300, cname: "_acme-challenge.api.validation.example.net" });
    const z = dnsZone();
    expect(await z.getCname(`_acme-challenge.api.${ZONE}`)).toBe("_acme-challenge.api.validation.example.net");
    expect(await z.getCname(`_acme-challenge.www.${ZONE}`)).toBeUndefined();
  });

  test("upsertA creates, then leaves an identical set alone, then updates a different one", async () => {
    const z = dnsZone();
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300)).toBe("created");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300)).toBe("unchanged");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.5", "10.0.0.4"], 300)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.4", "10.0.0.5"]);
  });

  test("nameServers returns the zone's name servers from ARM without trailing dots", async () => {
    expect(await dnsZone().nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
  });

  test("when the zone does not exist, the error is AZURE_NOT_FOUND naming subscription, resource group and zone", async () => {
    const z = dnsZone({ zone: "missing.test" });
    for (const call of [() => z.addTxtValue("_acme-challenge.missing.test", "v", 60), () => z.nameServers(), () => z.removeTxtValue("_acme-challenge.missing.test", "v")]) {
      const err = await amlcertFailure(call());
      expect(err.code).toBe("AZURE_NOT_FOUND");
      expect(err.stage).toBe("dns-challenge");
      expect(err.message).toContain("missing.test");
      expect(err.message).toContain(DNS_RG);
      expect(err.message).toContain(SUBSCRIPTION);
    }
  });
});

describe("failures", () => {
  test("when the identity may not write TXT record sets, the 403 names the action, the scope and the role to assign", async () => {
    fx.arm.deny({ principalOid: SP.objectId, action: "Microsoft.Network/dnszones/TXT/write" });
    const err = await amlcertFailure(dnsZone().addTxtValue(`_acme-challenge.www.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.stage).toBe("dns-challenge");
    expect(err.message).toContain("Microsoft.Network/dnszones/TXT/write");
    // ARM echoes the scope as the request spelled it (the SDK writes "dnsZones")
    expect(err.message.toLowerCase()).toContain(`${ZONE_SCOPE}/TXT/_acme-challenge.www`.toLowerCase());
    expect(err.message).toContain("DNS Zone Contributor");
    expect(err.message).toContain("deploy/azure/amlcert-dns-role.json");
    expect(err.message).toContain(SP.objectId);
  });

  test("when ARM keeps answering 429 beyond the SDK's retries, the error is AZURE_THROTTLED", async () => {
    const fault = fx.arm.faults.add({ status: 429, times: Infinity, retryAfterSeconds: 0 });
    const err = await amlcertFailure(dnsZone().addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(fault.hits).toBe(3); // the first try and maxRetries=2 retries, each honouring Retry-After
  });

  test("when ARM answers 429 with Retry-After fewer times than the retry budget, the write goes through", async () => {
    const fault = fx.arm.faults.add({ status: 429, times: 2, retryAfterSeconds: 0 });
    await dnsZone().addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
    expect(fault.hits).toBe(2);
    expect(txtValues("_acme-challenge")).toEqual(["v"]);
  });

  test("when ARM has a transient 500, the SDK retries and the write goes through", async () => {
    const fault = fx.arm.faults.add({ method: "PUT", status: 500, times: 1 });
    await dnsZone().addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
    expect(fault.hits).toBe(1);
    expect(txtValues("_acme-challenge")).toEqual(["v"]);
  });

  test("when every write conflicts, the adapter gives up after its bound with AZURE_CONFLICT", async () => {
    fx.arm.faults.add({ method: "PUT", status: 412, times: Infinity });
    const err = await amlcertFailure(dnsZone({ maxConflictRetries: 3 }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_CONFLICT");
    expect(err.message).toBe(`gave up to add a TXT value to _acme-challenge.${ZONE} after 3 concurrent modifications (HTTP 412) of the record set`);
    expect(fx.arm.requests.filter((r) => r.method === "PUT")).toHaveLength(3);
    expect(adapterLogs().filter((l) => l.msg === "record set changed concurrently (412); reading it again")).toEqual(
      [1, 2, 3].map((attempt) => ({ component: "azure-dns", zone: ZONE, what: `add a TXT value to _acme-challenge.${ZONE}`, attempt, msg: "record set changed concurrently (412); reading it again" })),
    );
  });

  test("when a name outside the zone is given, the adapter refuses it without calling ARM", async () => {
    const err = await amlcertFailure(dnsZone().addTxtValue("_acme-challenge.other.test", "v", 60));
    expect(err.code).toBe("INTERNAL");
    expect(err.stage).toBe("dns-challenge");
    expect(err.message).toBe("_acme-challenge.other.test is not inside the DNS zone example.test");
    expect(fx.arm.requests).toHaveLength(0);
  });
});

describe("long TXT values (split by ARM into strings of at most 255 characters)", () => {
  test("a value stored as several strings is recognised whole: adding it again writes nothing, removing it removes it", async () => {
    const long = "x".repeat(255) + "y".repeat(45);
    fx.zones.putRecordSet(zoneRecord(), "TXT", "_acme-challenge", { ttl: 60, txt: [["x".repeat(255), "y".repeat(45)], ["other"]] });
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, long, 60);
    expect(statuses()).toEqual(["GET 200"]);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, long);
    expect(txtValues("_acme-challenge")).toEqual(["other"]);
  });
});

describe("requests are observed", () => {
  test("every ARM response is reported to the request observer under system arm", async () => {
    const seen: string[] = [];
    await dnsZone({ requests: (system, status) => seen.push(`${system} ${status}`) }).nameServers();
    expect(seen).toEqual(["arm 200"]);
  });
});

describe("removing a TXT value is conditional on the ETag that was read", () => {
  test("when another writer adds a value between our read and our delete of the last value, the delete gets 412 and their value survives", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "ours", 60);
    const etag = etagOf("TXT", "_acme-challenge");
    fx.arm.requests.length = 0;
    concurrentWriterBefore("DELETE", "_acme-challenge", ["ours", "theirs"]);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "ours");
    expect(statuses()).toEqual(["GET 200", "DELETE 412", "GET 200", "PUT 200"]);
    expect(unquote(fx.arm.requests[1]!.ifMatch)).toBe(etag);
    expect(txtValues("_acme-challenge")).toEqual(["theirs"]);
  });

  test("when another writer changes the set between our read and our rewrite, the rewrite gets 412 and the retry keeps their value", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "ours", 60);
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "keep", 60);
    const etag = etagOf("TXT", "_acme-challenge");
    fx.arm.requests.length = 0;
    concurrentWriterBefore("PUT", "_acme-challenge", ["ours", "keep", "theirs"]);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "ours");
    expect(statuses()).toEqual(["GET 200", "PUT 412", "GET 200", "PUT 200"]);
    expect(unquote(fx.arm.requests[1]!.ifMatch)).toBe(etag);
    expect(fx.arm.requests[1]!.ifNoneMatch).toBeUndefined();
    expect(txtValues("_acme-challenge")).toEqual(["keep", "theirs"]);
  });

  test("a rewrite keeps the TTL and metadata of the set", async () => {
    fx.zones.putRecordSet(zoneRecord(), "TXT", "_acme-challenge", { ttl: 120, metadata: { owner: "team-a" }, txt: [["ours"], ["keep"]] });
    await dnsZone().removeTxtValue(`_acme-challenge.${ZONE}`, "ours");
    expect(fx.zones.getRecordSet(zoneRecord(), "TXT", "_acme-challenge")).toMatchObject({ ttl: 120, metadata: { owner: "team-a" }, txt: [["keep"]] });
  });

  test("when every delete conflicts, the adapter gives up after its bound with AZURE_CONFLICT", async () => {
    const z = dnsZone({ maxConflictRetries: 2 });
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "ours", 60);
    fx.arm.faults.add({ method: "DELETE", status: 412, times: Infinity });
    const err = await amlcertFailure(z.removeTxtValue(`_acme-challenge.${ZONE}`, "ours"));
    expect(err.code).toBe("AZURE_CONFLICT");
    expect(err.message).toBe(`gave up to remove a TXT value from _acme-challenge.${ZONE} after 2 concurrent modifications (HTTP 412) of the record set`);
    expect(txtValues("_acme-challenge")).toEqual(["ours"]);
  });
});

describe("what the adapter logs", () => {
  test("adding, removing and deleting TXT values, and creating and updating the A record, are logged with the record and counts", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "a", 60);
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "b", 60);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "a");
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "b");
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300);
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.5"], 300);
    const record = `_acme-challenge.${ZONE}`;
    expect(adapterLogs()).toEqual([
      { component: "azure-dns", zone: ZONE, record, values: 1, created: true, msg: "TXT value added" },
      { component: "azure-dns", zone: ZONE, record, values: 2, created: false, msg: "TXT value added" },
      { component: "azure-dns", zone: ZONE, record, values: 1, msg: "TXT value removed" },
      { component: "azure-dns", zone: ZONE, record, msg: "TXT record set deleted (last value removed)" },
      { component: "azure-dns", zone: ZONE, record: `ml.${ZONE}`, addresses: ["10.0.0.4"], msg: "A record set created" },
      { component: "azure-dns", zone: ZONE, record: `ml.${ZONE}`, addresses: ["10.0.0.5"], msg: "A record set updated" },
    ]);
  });
});

describe("the A record", () => {
  test("a create is conditional on the set not existing (If-None-Match: *), an update on the ETag read (If-Match)", async () => {
    const z = dnsZone();
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300);
    const etag = etagOf("A", "ml");
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.5"], 300);
    const puts = fx.arm.requests.filter((r) => r.method === "PUT");
    expect(puts.map((r) => [r.status, r.ifNoneMatch, unquote(r.ifMatch)])).toEqual([
      [201, "*", undefined],
      [200, undefined, etag],
    ]);
  });

  test("addresses are compared as a set: the same ones in another order or repeated are unchanged; another TTL or one more address is an update", async () => {
    const z = dnsZone();
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.5", "10.0.0.4"], 300)).toBe("created");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4", "10.0.0.5", "10.0.0.4"], 300)).toBe("unchanged");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4", "10.0.0.5"], 600)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.ttl).toBe(600);
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 600)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.4"]);
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.9"], 600)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.9"]);
  });

  test("an existing set is compared whatever the order ARM keeps its addresses in, and one different address of two is an update", async () => {
    fx.zones.putRecordSet(zoneRecord(), "A", "ml", { ttl: 300, addresses: ["10.0.0.5", "10.0.0.4"] });
    const z = dnsZone();
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4", "10.0.0.5"], 300)).toBe("unchanged");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.4", "10.0.0.6"], 300)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.4", "10.0.0.6"]);
  });

  test("a stale extra address beside the right one is an update, not unchanged", async () => {
    fx.zones.putRecordSet(zoneRecord(), "A", "ml", { ttl: 300, addresses: ["10.0.0.4", "10.0.0.99"] });
    expect(await dnsZone().upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300)).toBe("updated");
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.4"]);
  });

  test("when another writer changed the A set after our read, the stale ETag gets 412 and the retry writes ours", async () => {
    const z = dnsZone();
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300);
    fx.arm.requests.length = 0;
    let played = false;
    fx.arm.beforeHandle = (r) => {
      if (played || r.method !== "PUT") return;
      played = true;
      fx.zones.putRecordSet(zoneRecord(), "A", "ml", { ttl: 300, addresses: ["10.0.0.7"] });
    };
    expect(await z.upsertA(`ml.${ZONE}`, ["10.0.0.5"], 300)).toBe("updated");
    expect(statuses()).toEqual(["GET 200", "PUT 412", "GET 200", "PUT 200"]);
    expect(fx.zones.getRecordSet(zoneRecord(), "A", "ml")?.addresses).toEqual(["10.0.0.5"]);
  });

  test("when every A write conflicts, the adapter gives up with AZURE_CONFLICT naming the record set", async () => {
    fx.arm.faults.add({ method: "PUT", status: 412, times: Infinity });
    const err = await amlcertFailure(dnsZone({ maxConflictRetries: 2 }).upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300));
    expect(err.code).toBe("AZURE_CONFLICT");
    expect(err.message).toBe(`gave up to set the A record set ml.${ZONE} after 2 concurrent modifications (HTTP 412) of the record set`);
  });

  test("getCname of a CNAME set without a target is undefined", async () => {
    fx.zones.putRecordSet(zoneRecord(), "CNAME", "_acme-challenge.empty", { ttl: 300 });
    expect(await dnsZone().getCname(`_acme-challenge.empty.${ZONE}`)).toBeUndefined();
  });
});

describe("errors name what was being done, the action and the scope", () => {
  const denied = () => fx.arm.faults.add({ status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
  const hint = 'Assign it "DNS Zone Contributor" or the custom role in deploy/azure/amlcert-dns-role.json on that scope (or a parent). ARM said: AuthorizationFailed';

  test.each([
    ["add a TXT value (read)", (z: DnsZone) => z.addTxtValue(`_acme-challenge.www.${ZONE}`, "v", 60), "GET", "Microsoft.Network/dnszones/TXT/read", `${ZONE_SCOPE}/TXT/_acme-challenge.www`, `read the TXT record set _acme-challenge.www in zone ${ZONE}`],
    ["add a TXT value (write)", (z: DnsZone) => z.addTxtValue(`_acme-challenge.www.${ZONE}`, "v", 60), "PUT", "Microsoft.Network/dnszones/TXT/write", `${ZONE_SCOPE}/TXT/_acme-challenge.www`, `write TXT record set _acme-challenge.www in zone ${ZONE}`],
    ["read a CNAME", (z: DnsZone) => z.getCname(`_acme-challenge.api.${ZONE}`), "GET", "Microsoft.Network/dnszones/CNAME/read", `${ZONE_SCOPE}/CNAME/_acme-challenge.api`, `read the CNAME record set _acme-challenge.api in zone ${ZONE}`],
    ["write the A record", (z: DnsZone) => z.upsertA(`ml.${ZONE}`, ["10.0.0.4"], 300), "PUT", "Microsoft.Network/dnszones/A/write", `${ZONE_SCOPE}/A/ml`, `write A record set ml in zone ${ZONE}`],
    ["read the zone", (z: DnsZone) => z.nameServers(), "GET", "Microsoft.Network/dnszones/read", ZONE_SCOPE, `read DNS zone ${ZONE}`],
  ])("when ARM refuses to %s without naming the action, the error names ours", async (_what, call, method, action, scope, doing) => {
    fx.arm.faults.add({ method, status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(call(dnsZone()));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toBe(`Azure denied the identity amlcert signed in with the action ${action} on ${scope} while trying to ${doing}. ${hint}`);
    expect(err.details).toMatchObject({ action, scope, status: 403, armCode: "AuthorizationFailed" });
  });

  test("when ARM refuses to delete the last TXT value, the error names the delete action and scope", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
    fx.arm.faults.add({ method: "DELETE", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(z.removeTxtValue(`_acme-challenge.${ZONE}`, "v"));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toBe(
      `Azure denied the identity amlcert signed in with the action Microsoft.Network/dnszones/TXT/delete on ${ZONE_SCOPE}/TXT/_acme-challenge while trying to delete TXT record set _acme-challenge in zone ${ZONE}. ${hint}`,
    );
  });

  test("when ARM refuses to rewrite a set after removing one of its values, the error names the write action", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "a", 60);
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "b", 60);
    fx.arm.faults.add({ method: "PUT", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(z.removeTxtValue(`_acme-challenge.${ZONE}`, "a"));
    expect(err.message).toBe(
      `Azure denied the identity amlcert signed in with the action Microsoft.Network/dnszones/TXT/write on ${ZONE_SCOPE}/TXT/_acme-challenge while trying to write TXT record set _acme-challenge in zone ${ZONE}. ${hint}`,
    );
    expect(txtValues("_acme-challenge").sort()).toEqual(["a", "b"]);
  });

  test("when the adapter is built for another stage, its errors carry that stage", async () => {
    denied();
    const err = await amlcertFailure(dnsZone({ stage: "verify-dns" }).nameServers());
    expect(err.stage).toBe("verify-dns");
  });
});

describe("shipped custom role", () => {
  test("when the identity holds only deploy/azure/amlcert-dns-role.json on the zone, every adapter call is allowed", async () => {
    fx.arm.assignRole({ principalOid: SP.objectId, roleFile: DNS_ROLE, scope: ZONE_SCOPE });
    fx.zones.putRecordSet(zoneRecord(), "CNAME", "_acme-challenge.api", { ttl: 300, cname: "x.example.net" });
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "a", 60);
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "b", 60);
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "a");
    await z.removeTxtValue(`_acme-challenge.${ZONE}`, "b");
    expect(await z.getCname(`_acme-challenge.api.${ZONE}`)).toBe("x.example.net");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.1.2.3"], 300)).toBe("created");
    expect(await z.upsertA(`ml.${ZONE}`, ["10.1.2.4"], 300)).toBe("updated");
    expect(await z.nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    expect(fx.arm.requests.filter((r) => r.status === 403)).toEqual([]);
    const actions = new Set(fx.arm.requests.map((r) => r.action));
    const role = JSON.parse(readFileSync(DNS_ROLE, "utf8")) as { Actions: string[] };
    // the role grants what the adapter uses, and nothing it does not use
    expect([...actions].sort()).toEqual([...role.Actions].sort());
  });

  test("when the role lacks TXT/write, adding a TXT value fails with a 403 naming that action", async () => {
    const role = JSON.parse(readFileSync(DNS_ROLE, "utf8")) as { Actions: string[] };
    const reduced = join(fx.dir, "dns-role-without-txt-write.json");
    writeFileSync(reduced, JSON.stringify({ ...role, Actions: role.Actions.filter((a) => a !== "Microsoft.Network/dnszones/TXT/write") }));
    fx.arm.assignRole({ principalOid: SP.objectId, roleFile: reduced, scope: ZONE_SCOPE });
    const err = await amlcertFailure(dnsZone().addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toContain("Microsoft.Network/dnszones/TXT/write");
  });

  test("when the role is assigned on another zone only, the calls on this zone are refused", async () => {
    fx.arm.assignRole({ principalOid: SP.objectId, roleFile: DNS_ROLE, scope: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnszones/other.test` });
    const err = await amlcertFailure(dnsZone().nameServers());
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toContain("Microsoft.Network/dnszones/read");
  });
});

describe("the ARM stand-in, seen through the SDK", () => {
  test("lists record sets by type and the whole zone with ARM's shapes (apex NS and SOA included)", async () => {
    const z = dnsZone();
    await z.addTxtValue(`_acme-challenge.${ZONE}`, "v1", 60);
    await z.upsertA(`ml.${ZONE}`, ["10.0.0.9"], 300);
    const client = new DnsManagementClient(fx.credential().credential, SUBSCRIPTION, { endpoint: fx.cloud.resourceManagerEndpoint, credentialScopes: [fx.cloud.tokenScope] });
    const txt = [];
    for await (const rs of client.recordSets.listByType(DNS_RG, ZONE, "TXT")) txt.push(rs);
    expect(txt).toHaveLength(1);
    expect(txt[0]).toMatchObject({ name: "_acme-challenge", type: "Microsoft.Network/dnszones/TXT", ttl: 60, fqdn: `_acme-challenge.${ZONE}.`, provisioningState: "Succeeded", txtRecords: [{ value: ["v1"] }] });
    expect(txt[0]!.etag).toBeTruthy();
    const all = [];
    for await (const rs of client.recordSets.listByDnsZone(DNS_RG, ZONE)) all.push(`${rs.type?.split("/").pop()} ${rs.name}`);
    expect(all.sort()).toEqual(["A ml", "NS @", "SOA @", "TXT _acme-challenge"]);
    const zone = await client.zones.get(DNS_RG, ZONE);
    expect(zone).toMatchObject({ numberOfRecordSets: 4, nameServers: ["ns1-01.azure-dns.test.", "ns2-01.azure-dns.test."], zoneType: "Public" });
  });
});


describe("every ARM request is bounded: per-try timeout, capped Retry-After, jittered backoff (issue 7)", () => {
  /** the waits the retry policy asked for, recorded instead of slept; jitter draws 0.5 */
  function recordedTiming() {
    const waits: number[] = [];
    return { waits, timing: { sleep: async (ms: number) => void waits.push(ms), random: () => 0.5 } };
  }

  test("when ARM asks to retry after longer than azure.maxRetryAfter, the write fails at once with AZURE_THROTTLED naming the wait, the cap and the record set", async () => {
    const fault = fx.arm.faults.add({ method: "PUT", status: 429, times: Infinity, retryAfterSeconds: 600 });
    const { waits, timing } = recordedTiming();
    const err = await amlcertFailure(dnsZone({ retry: { maxRetries: 4, retryDelayMs: 10, maxRetryDelayMs: 40, maxRetryAfterMs: 60_000 }, retryTiming: timing }).addTxtValue(`_acme-challenge.www.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(err.stage).toBe("dns-challenge");
    expect(err.message).toBe(
      `Azure Resource Manager is throttling requests while trying to write TXT record set _acme-challenge.www in zone ${ZONE}: ARM answered 429 TooManyRequests and asked to retry after 600 s, longer than the 60 s amlcert waits (azure.maxRetryAfter)`,
    );
    expect(err.details).toMatchObject({ status: 429, armCode: "TooManyRequests", attempts: 1, why: "retry-after-too-long", retryAfterSeconds: 600, maxRetryAfterSeconds: 60, resource: `${ZONE_SCOPE}/TXT/_acme-challenge.www` });
    expect(Date.parse(String(err.details.retryAt))).toBeGreaterThan(Date.now() + 590_000);
    expect(fault.hits).toBe(1);
    expect(waits).toEqual([]);
  });

  test("when ARM asks to retry after a short time, the policy waits that long plus at most a second of jitter, and the write goes through", async () => {
    const fault = fx.arm.faults.add({ method: "PUT", status: 429, times: 2, retryAfterSeconds: 2 });
    const { waits, timing } = recordedTiming();
    await dnsZone({ retry: { maxRetries: 4, retryDelayMs: 100, maxRetryDelayMs: 1000 }, retryTiming: timing }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
    expect(fault.hits).toBe(2);
    expect(waits).toEqual([2050, 2050]);
    expect(txtValues("_acme-challenge")).toEqual(["v"]);
  });

  test("every retry is told to onRetry before its wait: what ARM did, the request, the wait and the try", async () => {
    fx.arm.faults.add({ method: "PUT", status: 429, times: 1, retryAfterSeconds: 2 });
    const hung = fx.arm.faults.add({ method: "PUT", status: 0, hang: true, times: 1 });
    const notices: unknown[] = [];
    try {
      const { timing } = recordedTiming();
      await dnsZone({ retry: { maxRetries: 4, retryDelayMs: 100, maxRetryDelayMs: 1000, timeoutMs: 1000, onRetry: (n) => notices.push(n) }, retryTiming: timing }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
    } finally {
      hung.release();
    }
    const path = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnsZones/${ZONE}/TXT/_acme-challenge`;
    expect(notices).toEqual([
      { message: `PUT ${path}: ARM answered 429 TooManyRequests (Retry-After 2 s); retrying in 2.1 s (try 2 of 5)`, method: "PUT", path, attempt: 1, attempts: 5, waitMs: 2050, status: 429, retryAfterMs: 2000 },
      { message: `PUT ${path}: ARM did not answer within 1 s (azure.requestTimeout); retrying in 0.1 s (try 3 of 5)`, method: "PUT", path, attempt: 2, attempts: 5, waitMs: 100, error: "timeout" },
    ]);
    expect(txtValues("_acme-challenge")).toEqual(["v"]);
  });

  test("when ARM answers 503 without Retry-After, each retry waits a jittered exponential backoff up to its ceiling", async () => {
    const fault = fx.arm.faults.add({ method: "GET", status: 503, times: 4 });
    const { waits, timing } = recordedTiming();
    expect(await dnsZone({ retry: { maxRetries: 4, retryDelayMs: 100, maxRetryDelayMs: 300 }, retryTiming: timing }).nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    expect(fault.hits).toBe(4);
    // full jitter at 0.5 of min(300, 100 × 2^(n-1))
    expect(waits).toEqual([50, 100, 150, 150]);
  });

  test("when ARM answers 429 to every try, AZURE_THROTTLED says how many tries were made", async () => {
    const fault = fx.arm.faults.add({ method: "PUT", status: 429, times: Infinity, retryAfterSeconds: 1 });
    const { waits, timing } = recordedTiming();
    const err = await amlcertFailure(dnsZone({ retry: { maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 40 }, retryTiming: timing }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(err.message).toBe(
      `Azure Resource Manager is throttling requests while trying to write TXT record set _acme-challenge in zone ${ZONE}: ARM answered 429 TooManyRequests to all 3 tries (azure.maxRetries 2); it last asked to retry after 1 s`,
    );
    expect(err.details).toMatchObject({ attempts: 3, why: "attempts", retryAfterSeconds: 1 });
    expect(fault.hits).toBe(3);
    expect(waits).toEqual([1005, 1005]);
  });

  test("when a try hangs, it is abandoned after azure.requestTimeout and the retry writes the value", async () => {
    const hung = fx.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 0, hang: true, times: 1 });
    try {
      await dnsZone({ retry: { maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 40, timeoutMs: 1000 } }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60);
      expect(hung.hits).toBe(1);
      expect(txtValues("_acme-challenge")).toEqual(["v"]);
      expect(fx.arm.requests.filter((r) => r.method === "PUT")).toHaveLength(2);
    } finally {
      hung.release();
    }
  });

  test("when every try hangs, the error names the request, the bound, the tries and the record set, and nothing was written", async () => {
    const hung = fx.arm.faults.add({ method: "GET", status: 0, hang: true, times: Infinity });
    try {
      const err = await amlcertFailure(dnsZone({ retry: { maxRetries: 1, retryDelayMs: 10, maxRetryDelayMs: 40, timeoutMs: 1000 } }).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
      expect(err.code).toBe("AZURE_ERROR");
      expect(err.stage).toBe("dns-challenge");
      expect(err.message).toMatch(
        new RegExp(`^could not read the TXT record set _acme-challenge in zone ${ZONE.replace(".", "\\.")}: ARM did not answer GET /subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft\\.Network/dnsZones/${ZONE.replace(".", "\\.")}/TXT/_acme-challenge within 1 s \\(azure\\.requestTimeout\\), 2 tries$`),
      );
      expect(err.details).toMatchObject({ timeout: true, timeoutSeconds: 1, attempts: 2, method: "GET", resource: `${ZONE_SCOPE}/TXT/_acme-challenge` });
      expect(hung.hits).toBe(2);
      expect(fx.arm.requests.filter((r) => r.method === "PUT")).toEqual([]);
    } finally {
      hung.release();
    }
  });

  test("when the run is cancelled while a try hangs, the call ends with the cancellation and is not retried", async () => {
    const hung = fx.arm.faults.add({ method: "GET", status: 0, hang: true, times: Infinity });
    const client = new DnsManagementClient(fx.credential().credential, SUBSCRIPTION, {
      endpoint: fx.cloud.resourceManagerEndpoint,
      credentialScopes: [fx.cloud.tokenScope],
      ...armClientOptions({ maxRetries: 3, timeoutMs: 60_000 }, undefined),
    });
    const cancel = new AbortController();
    try {
      const call = client.zones.get(DNS_RG, ZONE, { abortSignal: cancel.signal });
      await expect.poll(() => hung.hits, { timeout: 10_000, interval: 20 }).toBe(1);
      cancel.abort();
      await expect(call).rejects.toMatchObject({ name: "AbortError" });
      expect(hung.hits).toBe(1);
    } finally {
      hung.release();
    }
  });
});
