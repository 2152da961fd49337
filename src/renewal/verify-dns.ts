/** Does the FQDN resolve to azureml-fe, through the zone's authoritative servers and the resolver? And manageRecord. */
import { isIP } from "node:net";
import { normalizeName as norm } from "../dns-check/names.js";
import type { RenewDeps, RenewSettings } from "./deps.js";

export interface DnsCheck {
  ok: boolean;
  expected: string[];
  authoritative: string[];
  system: string[];
  problems: string[];
}

export async function checkDns(deps: RenewDeps, s: RenewSettings, expected: string[]): Promise<DnsCheck> {
  const problems: string[] = [];
  const fqdn = norm(s.fqdn);
  let leavesZone = false;
  const resolveVia = async (label: string, servers: string[] | undefined) => {
    try {
      const r = await deps.lookup.resolve(s.fqdn, servers);
      return [...r.addresses, ...r.cnames];
    } catch (err) {
      // The zone's own servers refuse a CNAME hop outside the zone (e.g. to *.cloudapp.azure.com): that is no
      // mismatch, it only means the rest of the chain is checked through the resolver.
      const e = err as { code?: string; query?: string };
      if (servers !== undefined && e.code === "EREFUSED" && e.query !== undefined && e.query !== fqdn) {
        leavesZone = true;
        return [];
      }
      problems.push(`${label}: ${(err as Error).message}`);
      return [];
    }
  };
  const servers = await deps.nameServersOf(deps.zone).catch((err: unknown) => {
    problems.push(`authoritative servers: ${(err as Error).message}`);
    return undefined;
  });
  const authoritative = servers ? await resolveVia("authoritative servers", servers) : [];
  const system = await resolveVia("resolver", s.resolvers);
  const want = new Set(expected.map(norm));
  const expectsHostname = [...want].some((w) => isIP(w) === 0);
  // Something found (an address, or a name on the CNAME chain) must be expected. When only addresses are expected,
  // every address found must be one of them: a stale extra A record would send some clients elsewhere.
  const matches = (found: string[]) =>
    found.some((f) => want.has(norm(f))) && (expectsHostname || found.filter((f) => isIP(f) !== 0).every((f) => want.has(norm(f))));
  if (expected.length === 0) problems.push("no expected address: azureml-fe has no ingress and expectedAddress is not set");
  else {
    if (servers && !leavesZone && !matches(authoritative)) problems.push(`authoritative servers answer ${authoritative.join(", ") || "nothing"} for ${s.fqdn}, expected ${expected.join(", ")}`);
    if (!matches(system)) problems.push(`the resolver answers ${system.join(", ") || "nothing"} for ${s.fqdn}, expected ${expected.join(", ")}`);
  }
  return { ok: problems.length === 0, expected, authoritative, system, problems };
}

/** manageRecord: point the FQDN's A record at azureml-fe. Best effort: DNS problems before issuing never block renewal. */
async function ensureRecord(deps: RenewDeps, s: RenewSettings, expected: string[]): Promise<void> {
  const warn = (msg: string, err?: unknown) => deps.logger.warn({ stage: "preflight", fqdn: s.fqdn, err }, msg);
  const ips = expected.filter((e) => isIP(e) === 4);
  if (ips.length === 0) return warn("manageRecord is on but there is no IPv4 address to point the A record at");
  try {
    const cname = await deps.zone.getCname(s.fqdn);
    if (cname) return warn(`manageRecord is on but ${s.fqdn} is a CNAME to ${cname}; amlcert does not replace a CNAME with an A record`);
    const outcome = await deps.zone.upsertA(s.fqdn, ips, s.recordTtlSeconds);
    deps.logger.info({ stage: "preflight", fqdn: s.fqdn, addresses: ips, outcome }, "A record managed");
  } catch (err) {
    warn("manageRecord: could not update the A record", err);
  }
}

/** Before issuing: a warning only (DNS may be managed elsewhere); with manageRecord, fix it and look again. */
export async function precheckDns(deps: RenewDeps, s: RenewSettings, expected: string[]): Promise<DnsCheck> {
  let dns = await checkDns(deps, s, expected);
  if (!dns.ok && s.manageRecord) {
    await ensureRecord(deps, s, expected);
    dns = await checkDns(deps, s, expected);
  }
  for (const p of dns.problems) deps.logger.warn({ stage: "verify-dns", fqdn: s.fqdn }, `DNS check before issuing: ${p}`);
  return dns;
}
