/**
 * In-memory Azure DNS zones, shared by the ARM stand-in (which reads and writes record sets with ETags) and the
 * authoritative DNS stand-in (which answers queries from the *propagated* view). A write becomes visible on the
 * wire `propagationDelayMs` after ARM accepted it, like Azure DNS's name servers lagging behind the API.
 */
import { randomUUID } from "node:crypto";

export type RecordType = "A" | "AAAA" | "TXT" | "CNAME" | "NS" | "SOA";

export interface RecordSetData {
  ttl: number;
  /** A / AAAA addresses */
  addresses?: string[];
  /** TXT: each value is a list of strings (ARM's `TXTRecords[].value`) */
  txt?: string[][];
  /** CNAME target, no trailing dot */
  cname?: string;
  /** NS host names */
  ns?: string[];
  metadata?: Record<string, string>;
}

export interface RecordSet extends RecordSetData {
  /** relative name, "@" for the apex */
  name: string;
  type: RecordType;
  etag: string;
}

export interface Zone {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
  etag: string;
  nameServers: string[];
  /** key `${type}/${relativeName}` */
  records: Map<string, RecordSet>;
}

interface PendingChange {
  at: number;
  zoneName: string;
  key: string;
  value: RecordSet | undefined;
}

const norm = (s: string) => s.toLowerCase().replace(/\.$/, "");

export class ZoneStore {
  /** how long a write takes to reach the authoritative DNS view */
  propagationDelayMs = 0;
  private readonly zones = new Map<string, Zone>(); // by lower-case zone name
  private readonly visible = new Map<string, Map<string, RecordSet>>(); // zone name -> key -> record set
  private pending: PendingChange[] = [];
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
  }

  addZone(subscriptionId: string, resourceGroup: string, name: string, nameServers: string[] = ["ns1-01.azure-dns.com", "ns2-01.azure-dns.net"]): Zone {
    const zone: Zone = {
      subscriptionId,
      resourceGroup,
      name: norm(name),
      etag: randomUUID(),
      nameServers,
      records: new Map(),
    };
    this.zones.set(zone.name, zone);
    this.visible.set(zone.name, new Map());
    return zone;
  }

  /** ARM lookup: zone by subscription, resource group (case-insensitive, as ARM) and name. */
  getZone(subscriptionId: string, resourceGroup: string, name: string): Zone | undefined {
    const z = this.zones.get(norm(name));
    if (!z) return undefined;
    if (z.subscriptionId.toLowerCase() !== subscriptionId.toLowerCase()) return undefined;
    if (z.resourceGroup.toLowerCase() !== resourceGroup.toLowerCase()) return undefined;
    return z;
  }

  allZones(): Zone[] {
    return [...this.zones.values()];
  }

  getRecordSet(zone: Zone, type: RecordType, relativeName: string): RecordSet | undefined {
    return zone.records.get(`${type}/${norm(relativeName)}`);
  }

  listRecordSets(zone: Zone, type?: RecordType): RecordSet[] {
    return [...zone.records.values()].filter((r) => !type || r.type === type);
  }

  /** Store a record set with a fresh ETag (the ARM server checks If-Match/If-None-Match before calling this). */
  putRecordSet(zone: Zone, type: RecordType, relativeName: string, data: RecordSetData): RecordSet {
    const name = norm(relativeName);
    const rs: RecordSet = { ...structuredClone(data), name, type, etag: randomUUID() };
    zone.records.set(`${type}/${name}`, rs);
    this.enqueue(zone.name, `${type}/${name}`, rs);
    return rs;
  }

  deleteRecordSet(zone: Zone, type: RecordType, relativeName: string): boolean {
    const key = `${type}/${norm(relativeName)}`;
    const existed = zone.records.delete(key);
    if (existed) this.enqueue(zone.name, key, undefined);
    return existed;
  }

  private enqueue(zoneName: string, key: string, value: RecordSet | undefined): void {
    this.pending.push({ at: this.now(), zoneName, key, value: value && structuredClone(value) });
  }

  private drain(): void {
    const cutoff = this.now() - this.propagationDelayMs;
    const rest: PendingChange[] = [];
    for (const c of this.pending) {
      if (c.at > cutoff) {
        rest.push(c);
        continue;
      }
      const view = this.visible.get(c.zoneName);
      if (!view) continue;
      if (c.value) view.set(c.key, c.value);
      else view.delete(c.key);
    }
    this.pending = rest;
  }

  /** The zone (longest suffix match) that is authoritative for `fqdn`, if any. */
  zoneFor(fqdn: string): Zone | undefined {
    const name = norm(fqdn);
    let best: Zone | undefined;
    for (const z of this.zones.values()) {
      if ((name === z.name || name.endsWith(`.${z.name}`)) && (!best || z.name.length > best.name.length)) best = z;
    }
    return best;
  }

  /**
   * What the authoritative name servers answer for `fqdn`/`type` right now (propagated view).
   * `zone` undefined: not authoritative (REFUSED). `nameExists` false: NXDOMAIN.
   */
  lookup(fqdn: string, type: RecordType): { zone?: Zone; nameExists: boolean; recordSet?: RecordSet } {
    this.drain();
    const zone = this.zoneFor(fqdn);
    if (!zone) return { nameExists: false };
    const name = norm(fqdn);
    const rel = name === zone.name ? "@" : name.slice(0, -(zone.name.length + 1));
    const view = this.visible.get(zone.name)!;
    if (rel === "@" && (type === "SOA" || type === "NS")) {
      const ns: RecordSet = { name: "@", type: "NS", ttl: 172800, etag: "", ns: zone.nameServers };
      return { zone, nameExists: true, recordSet: type === "NS" ? ns : { name: "@", type: "SOA", ttl: 3600, etag: "" } };
    }
    const recordSet = view.get(`${type}/${rel}`);
    const nameExists = rel === "@" || [...view.keys()].some((k) => {
      const r = k.slice(k.indexOf("/") + 1);
      return r === rel || r.endsWith(`.${rel}`); // empty non-terminals exist too
    });
    return { zone, nameExists, recordSet };
  }
}
