/**
 * Azure DNS (Microsoft.Network/dnszones, api-version 2018-05-01) for the ARM stand-in, over the shared ZoneStore:
 * the zone, A/AAAA/TXT/CNAME record sets (plus the apex NS and SOA, read-only) with ETags, If-Match and
 * If-None-Match (412 PreconditionFailed), PUT/PATCH/DELETE/GET and lists, 404 NotFound / ParentResourceNotFound.
 */
import { ArmHttpError, isObject, methodNotAllowed, sendJson, type ArmContext, type ArmRoute } from "./arm-http.js";
import type { RecordSet, RecordSetData, RecordType, Zone, ZoneStore } from "./zone-store.js";

const RECORD_TYPES = ["A", "AAAA", "TXT", "CNAME", "NS", "SOA", "MX", "PTR", "SRV", "CAA"] as const;
const WRITABLE_TYPES = new Set<string>(["A", "AAAA", "TXT", "CNAME"]);
const RECORD_PROPERTY: Record<string, string> = {
  A: "ARecords",
  AAAA: "AAAARecords",
  TXT: "TXTRecords",
  CNAME: "CNAMERecord",
  NS: "NSRecords",
  SOA: "SOARecord",
  MX: "MXRecords",
  PTR: "PTRRecords",
  SRV: "SRVRecords",
  CAA: "caaRecords",
};

const ZONE_RE = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Network\/dnszones\/([^/]+)(?:\/([^/]+)(?:\/([^/]+))?)?$/i;

const unquote = (etag: string) => etag.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1");

/** The DNS routes: `route(method, path)` is undefined for paths that are not Azure DNS. */
export function createDnsRoutes(zones: ZoneStore): { route(method: string, path: string): ArmRoute | undefined } {
  function findZone(sub: string, rg: string, name: string, nested: boolean): Zone {
    const zone = zones.getZone(sub, rg, name);
    if (!zone) {
      if (nested) {
        throw new ArmHttpError(404, "ParentResourceNotFound", `Can not perform requested operation on nested resource. Parent resource '${name}' not found.`);
      }
      throw new ArmHttpError(
        404,
        "ResourceNotFound",
        `The Resource 'Microsoft.Network/dnszones/${name}' under resource group '${rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
      );
    }
    return zone;
  }

  const zoneId = (z: Zone) => `/subscriptions/${z.subscriptionId}/resourceGroups/${z.resourceGroup}/providers/Microsoft.Network/dnszones/${z.name}`;

  function zoneJson(z: Zone) {
    return {
      id: zoneId(z),
      name: z.name,
      type: "Microsoft.Network/dnszones",
      etag: z.etag,
      location: "global",
      tags: {},
      properties: {
        maxNumberOfRecordSets: 10000,
        maxNumberOfRecordsPerRecordSet: 20,
        numberOfRecordSets: z.records.size + 2,
        nameServers: z.nameServers.map((n) => (n.endsWith(".") ? n : `${n}.`)),
        zoneType: "Public",
      },
    };
  }

  function apexSets(z: Zone): RecordSet[] {
    return [
      { name: "@", type: "NS", ttl: 172800, etag: z.etag, ns: z.nameServers },
      { name: "@", type: "SOA", ttl: 3600, etag: z.etag },
    ];
  }

  function recordSetJson(z: Zone, rs: RecordSet) {
    const fqdn = rs.name === "@" ? `${z.name}.` : `${rs.name}.${z.name}.`;
    const props: Record<string, unknown> = {
      ...(rs.metadata ? { metadata: rs.metadata } : {}),
      TTL: rs.ttl,
      fqdn,
      provisioningState: "Succeeded",
      targetResource: {},
    };
    switch (rs.type) {
      case "A":
        props.ARecords = (rs.addresses ?? []).map((ipv4Address) => ({ ipv4Address }));
        break;
      case "AAAA":
        props.AAAARecords = (rs.addresses ?? []).map((ipv6Address) => ({ ipv6Address }));
        break;
      case "TXT":
        props.TXTRecords = (rs.txt ?? []).map((value) => ({ value }));
        break;
      case "CNAME":
        if (rs.cname !== undefined) props.CNAMERecord = { cname: rs.cname };
        break;
      case "NS":
        props.NSRecords = (rs.ns ?? []).map((n) => ({ nsdname: n.endsWith(".") ? n : `${n}.` }));
        break;
      case "SOA":
        props.SOARecord = {
          host: `${(z.nameServers[0] ?? "ns1.example").replace(/\.$/, "")}.`,
          email: "azuredns-hostmaster.microsoft.com",
          serialNumber: 1,
          refreshTime: 3600,
          retryTime: 300,
          expireTime: 2419200,
          minimumTTL: 300,
        };
        break;
    }
    return { id: `${zoneId(z)}/${rs.type}/${rs.name}`, name: rs.name, type: `Microsoft.Network/dnszones/${rs.type}`, etag: rs.etag, properties: props };
  }

  function getZone(ctx: ArmContext, sub: string, rg: string, name: string): void {
    const z = findZone(sub, rg, name, false);
    sendJson(ctx.res, 200, zoneJson(z), { etag: z.etag });
  }

  function listRecordSets(ctx: ArmContext, sub: string, rg: string, name: string, type?: RecordType): void {
    const z = findZone(sub, rg, name, true);
    const top = Number(new URL(ctx.req.url ?? "/", ctx.baseUrl).searchParams.get("$top") ?? "0");
    let sets = [...(!type || type === "NS" || type === "SOA" ? apexSets(z).filter((s) => !type || s.type === type) : []), ...zones.listRecordSets(z, type)];
    if (top > 0) sets = sets.slice(0, top);
    sendJson(ctx.res, 200, { value: sets.map((s) => recordSetJson(z, s)) });
  }

  function parseRecordSetBody(type: string, body: unknown, existing: RecordSet | undefined, partial: boolean): RecordSetData {
    if (!isObject(body) || !isObject(body.properties)) {
      throw new ArmHttpError(400, "BadRequest", "The request body must contain a 'properties' object.");
    }
    const p = body.properties;
    for (const [t, prop] of Object.entries(RECORD_PROPERTY)) {
      if (t !== type && p[prop] !== undefined && p[prop] !== null) {
        throw new ArmHttpError(400, "BadRequest", `The record set is of type '${type}' but the request contains '${prop}'.`);
      }
    }
    const data: RecordSetData = partial && existing ? structuredClone(existingData(existing)) : { ttl: 3600 };
    if (p.TTL !== undefined) {
      if (typeof p.TTL !== "number" || !Number.isInteger(p.TTL) || p.TTL < 0 || p.TTL > 2147483647) {
        throw new ArmHttpError(400, "BadRequest", "The value of 'TTL' is invalid: it must be an integer between 0 and 2147483647.");
      }
      data.ttl = p.TTL;
    }
    if (p.metadata !== undefined && p.metadata !== null) {
      if (!isObject(p.metadata) || !Object.values(p.metadata).every((v) => typeof v === "string")) {
        throw new ArmHttpError(400, "BadRequest", "'metadata' must map names to strings.");
      }
      data.metadata = p.metadata as Record<string, string>;
    }
    const records = p[RECORD_PROPERTY[type]!];
    if (records === undefined || records === null) return data;
    const bad = (what: string) => new ArmHttpError(400, "BadRequest", `The value of '${RECORD_PROPERTY[type]}' is invalid: ${what}.`);
    switch (type) {
      case "A":
      case "AAAA": {
        const key = type === "A" ? "ipv4Address" : "ipv6Address";
        if (!Array.isArray(records)) throw bad("expected an array");
        data.addresses = records.map((r) => {
          const v = isObject(r) ? r[key] : undefined;
          if (typeof v !== "string" || (type === "A" ? !/^\d{1,3}(\.\d{1,3}){3}$/.test(v) : !v.includes(":"))) throw bad(`'${String(v)}' is not an ${type} address`);
          return v;
        });
        break;
      }
      case "TXT": {
        if (!Array.isArray(records)) throw bad("expected an array");
        data.txt = records.map((r) => {
          const v = isObject(r) ? r.value : undefined;
          if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === "string" && s.length <= 1024)) {
            throw bad("each TXT record needs 'value': a list of strings of at most 1024 characters");
          }
          return v as string[];
        });
        break;
      }
      case "CNAME": {
        const v = isObject(records) ? records.cname : undefined;
        if (typeof v !== "string" || v.length === 0) throw bad("'cname' must be a host name");
        data.cname = v.toLowerCase().replace(/\.$/, "");
        break;
      }
    }
    return data;
  }

  function existingData(rs: RecordSet): RecordSetData {
    const { ttl, addresses, txt, cname, ns, metadata } = rs;
    return { ttl, addresses, txt, cname, ns, metadata };
  }

  function recordSet(ctx: ArmContext, sub: string, rg: string, zoneName: string, type: string, relRaw: string): void {
    const z = findZone(sub, rg, zoneName, true);
    const rel = relRaw.toLowerCase().replace(/\.$/, "");
    if (type === "NS" || type === "SOA") {
      const apex = rel === "@" ? apexSets(z).find((s) => s.type === type) : undefined;
      if (ctx.method !== "GET") throw new ArmHttpError(400, "BadRequest", `This stand-in does not modify ${type} record sets.`);
      if (!apex) throw notFoundRecord(rel, z);
      sendJson(ctx.res, 200, recordSetJson(z, apex), { etag: apex.etag });
      return;
    }
    if (!WRITABLE_TYPES.has(type)) throw new ArmHttpError(400, "BadRequest", `Record type ${type} is not supported by this stand-in.`);
    const existing = zones.getRecordSet(z, type as RecordType, rel);
    const ifMatch = ctx.req.headers["if-match"];
    const ifNoneMatch = ctx.req.headers["if-none-match"];

    if (ctx.method === "GET") {
      if (!existing) throw notFoundRecord(rel, z);
      sendJson(ctx.res, 200, recordSetJson(z, existing), { etag: existing.etag });
      return;
    }
    if (ctx.method === "DELETE") {
      if (!existing) {
        sendJson(ctx.res, 204, undefined);
        return;
      }
      checkIfMatch(ifMatch, existing, rel);
      zones.deleteRecordSet(z, type as RecordType, rel);
      sendJson(ctx.res, 200, undefined);
      return;
    }
    // PUT / PATCH
    if (ctx.method === "PATCH" && !existing) throw notFoundRecord(rel, z);
    if (ifNoneMatch !== undefined && unquote(ifNoneMatch) === "*" && existing) {
      throw new ArmHttpError(412, "PreconditionFailed", `The Record set ${rel} exists already and hence cannot be created again.`);
    }
    if (ifMatch !== undefined) {
      if (!existing) throw new ArmHttpError(412, "PreconditionFailed", `The Record set ${rel} does not exist.`);
      checkIfMatch(ifMatch, existing, rel);
    }
    const data = parseRecordSetBody(type, ctx.body, existing, ctx.method === "PATCH");
    // CNAME exclusivity, as in DNS: a name with a CNAME holds nothing else
    const others = zones.listRecordSets(z).filter((r) => r.name === rel && r.type !== type);
    if (others.length > 0 && (type === "CNAME" || others.some((r) => r.type === "CNAME"))) {
      throw new ArmHttpError(
        409,
        "Conflict",
        `The record set ${rel} of type ${type} conflicts with the existing record set of type ${others[0]!.type} at the same name: a CNAME record set cannot share its name with other record sets.`,
      );
    }
    const rs = zones.putRecordSet(z, type as RecordType, rel, data);
    sendJson(ctx.res, existing ? 200 : 201, recordSetJson(z, rs), { etag: rs.etag });
  }

  function checkIfMatch(ifMatch: string | undefined, existing: RecordSet, rel: string): void {
    if (ifMatch === undefined) return;
    const wanted = unquote(ifMatch);
    if (wanted !== "*" && wanted !== existing.etag) {
      throw new ArmHttpError(412, "PreconditionFailed", `The Record set ${rel} has been modified (etag mismatch).`);
    }
  }

  const notFoundRecord = (rel: string, z: Zone) =>
    new ArmHttpError(404, "NotFound", `The resource record '${rel}' does not exist in resource group '${z.resourceGroup}' of subscription '${z.subscriptionId}'.`);

  return {
    route(method, path) {
      const z = ZONE_RE.exec(path);
      if (!z) return undefined;
      const [, sub, rg, zoneName, typeOrList, rel] = z as unknown as [string, string, string, string, string | undefined, string | undefined];
      const zoneScope = `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Network/dnszones/${zoneName}`;
      if (typeOrList === undefined) {
        if (method !== "GET") throw methodNotAllowed(method);
        return { action: "Microsoft.Network/dnszones/read", scope: path, handle: (ctx) => getZone(ctx, sub, rg, zoneName) };
      }
      const listKind = typeOrList.toLowerCase();
      if (rel === undefined && (listKind === "recordsets" || listKind === "all")) {
        if (method !== "GET") throw methodNotAllowed(method);
        return { action: "Microsoft.Network/dnszones/recordsets/read", scope: zoneScope, handle: (ctx) => listRecordSets(ctx, sub, rg, zoneName) };
      }
      const type = typeOrList.toUpperCase();
      if (!(RECORD_TYPES as readonly string[]).includes(type)) {
        throw new ArmHttpError(400, "BadRequest", `The record type '${typeOrList}' is not valid.`);
      }
      if (rel === undefined) {
        if (method !== "GET") throw methodNotAllowed(method);
        return { action: `Microsoft.Network/dnszones/${type}/read`, scope: zoneScope, handle: (ctx) => listRecordSets(ctx, sub, rg, zoneName, type as RecordType) };
      }
      const relName = decodeURIComponent(rel);
      const verb = method === "GET" ? "read" : method === "DELETE" ? "delete" : method === "PUT" || method === "PATCH" ? "write" : undefined;
      if (!verb) throw methodNotAllowed(method);
      return {
        action: `Microsoft.Network/dnszones/${type}/${verb}`,
        scope: path,
        handle: (ctx) => recordSet(ctx, sub, rg, zoneName, type, relName),
      };
    },
  };
}
