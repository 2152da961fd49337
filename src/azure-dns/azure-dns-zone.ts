/**
 * DnsZone on Azure DNS through @azure/arm-dns. TXT values are appended and removed one at a time with optimistic
 * concurrency, as cert-manager does: read the record set (404 = empty), add or remove only our value, create with
 * If-None-Match: * and update/delete with If-Match: <etag>; on 412 read again and retry (bounded). That lets ACME
 * authorizations for example.com and *.example.com write their two values to the same name at the same time.
 */
import { DnsManagementClient, type RecordSet } from "@azure/arm-dns";
import type { TokenCredential } from "@azure/identity";
import type { Logger } from "pino";
import { AmlcertError, type Stage } from "../errors.js";
import type { DnsZone, RequestObserver } from "../ports.js";
import { isParentMissing, statusOf, toAmlcertError } from "../azure/arm-error.js";
import { armClientOptions, type ArmRetryOptions, type RetryTiming } from "../azure/request-policy.js";
import { normalizeName as norm } from "../dns-check/names.js";

export interface AzureDnsZoneOptions {
  credential: TokenCredential;
  /** ARM endpoint, e.g. https://management.azure.com */
  endpoint: string;
  /** token scope, e.g. https://management.azure.com/.default */
  scope: string;
  subscriptionId: string;
  resourceGroup: string;
  zone: string;
  logger: Logger;
  /** bound and retries of every ARM request: per-try timeout, retries of 408/429/5xx/timeouts/refused connections,
   * Retry-After honoured up to a cap (src/azure/request-policy.ts; defaults ARM_RETRY_DEFAULTS) */
  retry?: Partial<ArmRetryOptions>;
  /** how the retries wait (tests inject it) */
  retryTiming?: RetryTiming;
  /** read-modify-write rounds on ETag conflicts (412) before giving up; default 8 */
  maxConflictRetries?: number;
  /** stage errors are attributed to; default "dns-challenge" */
  stage?: Stage;
  /** told the status of every ARM response (each retry included) or "error" (amlcert_requests_total{system="arm"}) */
  requests?: RequestObserver;
}

const ROLE_HINT = '"DNS Zone Contributor" or the custom role in deploy/azure/amlcert-dns-role.json';

const txtValuesOf = (rs: RecordSet | undefined) => (rs?.txtRecords ?? []).map((r) => (r.value ?? []).join(""));

export function createAzureDnsZone(opts: AzureDnsZoneOptions): DnsZone {
  const zone = norm(opts.zone);
  const stage = opts.stage ?? "dns-challenge";
  const maxRounds = opts.maxConflictRetries ?? 8;
  const log = opts.logger.child({ component: "azure-dns", zone });
  const client = new DnsManagementClient(opts.credential, opts.subscriptionId, {
    endpoint: opts.endpoint,
    credentialScopes: [opts.scope],
    ...armClientOptions(opts.retry, opts.requests, opts.retryTiming),
  });
  const rg = opts.resourceGroup;
  const zoneScope = `/subscriptions/${opts.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Network/dnszones/${zone}`;
  const zoneMissing = `DNS zone ${zone} was not found in resource group ${rg} of subscription ${opts.subscriptionId}; check dnsZone.subscriptionId, dnsZone.resourceGroup and dnsZone.zone`;

  function relativeName(fqdn: string): string {
    const name = norm(fqdn);
    if (name === zone) return "@";
    if (!name.endsWith(`.${zone}`)) {
      throw new AmlcertError("INTERNAL", stage, `${name} is not inside the DNS zone ${zone}`);
    }
    return name.slice(0, -(zone.length + 1));
  }

  const fail = (err: unknown, doing: string, type: string, verb: "read" | "write" | "delete", rel?: string) =>
    toAmlcertError(err, {
      stage,
      doing,
      action: type === "zone" ? "Microsoft.Network/dnszones/read" : `Microsoft.Network/dnszones/${type}/${verb}`,
      scope: rel === undefined ? zoneScope : `${zoneScope}/${type}/${rel}`,
      roleHint: ROLE_HINT,
      notFound: zoneMissing,
    });

  /** The record set, or undefined when it does not exist (a missing zone is an error). */
  async function read(type: "TXT" | "A" | "CNAME", rel: string): Promise<RecordSet | undefined> {
    try {
      return await client.recordSets.get(rg, zone, rel, type);
    } catch (err) {
      if (statusOf(err) === 404 && !isParentMissing(err)) return undefined;
      throw fail(err, `read the ${type} record set ${rel} in zone ${zone}`, type, "read", rel);
    }
  }

  const isPreconditionFailed = (err: unknown) => statusOf(err) === 412;

  /** Run one read-modify-write round until it does not hit an ETag conflict (bounded). */
  async function withConflictRetry<T>(what: string, round: () => Promise<T | "conflict">): Promise<T> {
    for (let i = 1; i <= maxRounds; i++) {
      const result = await round();
      if (result !== "conflict") return result;
      log.debug({ what, attempt: i }, "record set changed concurrently (412); reading it again");
    }
    throw new AmlcertError("AZURE_CONFLICT", stage, `gave up to ${what} after ${maxRounds} concurrent modifications (HTTP 412) of the record set`);
  }

  return {
    zone,

    async addTxtValue(fqdn, value, ttlSeconds) {
      const rel = relativeName(fqdn);
      const doing = `write TXT record set ${rel} in zone ${zone}`;
      await withConflictRetry(`add a TXT value to ${rel}.${zone}`, async () => {
        const current = await read("TXT", rel);
        const values = txtValuesOf(current);
        if (values.includes(value)) return undefined;
        const next: RecordSet = {
          ttl: ttlSeconds,
          metadata: current?.metadata,
          txtRecords: [...(current?.txtRecords ?? []), { value: [value] }],
        };
        try {
          if (current) await client.recordSets.createOrUpdate(rg, zone, rel, "TXT", next, { ifMatch: current.etag });
          else await client.recordSets.createOrUpdate(rg, zone, rel, "TXT", next, { ifNoneMatch: "*" });
          log.debug({ record: `${rel}.${zone}`, values: values.length + 1, created: !current }, "TXT value added");
          return undefined;
        } catch (err) {
          if (isPreconditionFailed(err)) return "conflict";
          throw fail(err, doing, "TXT", "write", rel);
        }
      });
    },

    async removeTxtValue(fqdn, value) {
      const rel = relativeName(fqdn);
      await withConflictRetry(`remove a TXT value from ${rel}.${zone}`, async () => {
        const current = await read("TXT", rel);
        if (!current) return undefined;
        const keep = (current.txtRecords ?? []).filter((r) => (r.value ?? []).join("") !== value);
        if (keep.length === (current.txtRecords ?? []).length) return undefined;
        try {
          if (keep.length === 0) {
            await client.recordSets.delete(rg, zone, rel, "TXT", { ifMatch: current.etag });
            log.debug({ record: `${rel}.${zone}` }, "TXT record set deleted (last value removed)");
          } else {
            await client.recordSets.createOrUpdate(rg, zone, rel, "TXT", { ttl: current.ttl, metadata: current.metadata, txtRecords: keep }, { ifMatch: current.etag });
            log.debug({ record: `${rel}.${zone}`, values: keep.length }, "TXT value removed");
          }
          return undefined;
        } catch (err) {
          if (isPreconditionFailed(err)) return "conflict";
          const deleting = keep.length === 0;
          throw fail(err, `${deleting ? "delete" : "write"} TXT record set ${rel} in zone ${zone}`, "TXT", deleting ? "delete" : "write", rel);
        }
      });
    },

    async getCname(fqdn) {
      const rel = relativeName(fqdn);
      const rs = await read("CNAME", rel);
      const target = rs?.cnameRecord?.cname;
      return target ? norm(target) : undefined;
    },

    async upsertA(fqdn, addresses, ttlSeconds) {
      const rel = relativeName(fqdn);
      const wanted = [...new Set(addresses)].sort();
      return withConflictRetry(`set the A record set ${rel}.${zone}`, async () => {
        const current = await read("A", rel);
        const have = (current?.aRecords ?? []).map((r) => r.ipv4Address ?? "").sort();
        if (current && current.ttl === ttlSeconds && have.length === wanted.length && have.every((a, i) => a === wanted[i])) return "unchanged" as const;
        const next: RecordSet = { ttl: ttlSeconds, metadata: current?.metadata, aRecords: wanted.map((ipv4Address) => ({ ipv4Address })) };
        try {
          if (current) await client.recordSets.createOrUpdate(rg, zone, rel, "A", next, { ifMatch: current.etag });
          else await client.recordSets.createOrUpdate(rg, zone, rel, "A", next, { ifNoneMatch: "*" });
          log.info({ record: `${rel}.${zone}`, addresses: wanted }, current ? "A record set updated" : "A record set created");
          return current ? ("updated" as const) : ("created" as const);
        } catch (err) {
          if (isPreconditionFailed(err)) return "conflict";
          throw fail(err, `write A record set ${rel} in zone ${zone}`, "A", "write", rel);
        }
      });
    },

    async nameServers() {
      try {
        const z = await client.zones.get(rg, zone);
        return (z.nameServers ?? []).map(norm);
      } catch (err) {
        throw fail(err, `read DNS zone ${zone}`, "zone", "read");
      }
    },
  };
}
