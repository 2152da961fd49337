/**
 * DNS queries on the wire with node:dns (c-ares), for the propagation check (ask each authoritative server) and the
 * post-rollout FQDN check (follow CNAMEs to addresses). Nothing is cached: every query uses a fresh `Resolver`, so a
 * negative answer seen once can never hide a record that appears later (the cert-manager #5917 trap).
 */
import { promises as dns } from "node:dns";
import type { DnsLookup } from "../ports.js";
import { normalizeName as norm } from "./names.js";

export interface DnsLookupOptions {
  /** per-try timeout of one query, in ms (default 2000) */
  timeoutMs?: number;
  /** tries per server before a query fails (default 2) */
  tries?: number;
  /** longest CNAME chain `resolve` follows (default 8) */
  maxCnameHops?: number;
}

/** A query that got no usable answer: a timeout, SERVFAIL, REFUSED, a CNAME loop... (not NXDOMAIN or NODATA). */
export class DnsLookupError extends Error {
  override readonly name = "DnsLookupError";
  /** node:dns code (`ETIMEOUT`, `ESERVFAIL`, `EREFUSED`, `ECONNREFUSED`, ...) or `CNAME_LOOP`, `CNAME_CHAIN_TOO_LONG`,
   * `NO_SERVERS` */
  readonly code: string;
  readonly query: string;
  readonly rrtype: string;
  /** the server asked, or "system resolver" */
  readonly server: string;

  constructor(code: string, q: { name: string; rrtype: string; server: string }, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.query = q.name;
    this.rrtype = q.rrtype;
    this.server = q.server;
  }
}

/** NXDOMAIN and NODATA: the name has no record of this type, which is an answer, not a failure. */
const NO_RECORDS = new Set(["ENOTFOUND", "ENODATA"]);
const SYSTEM = "system resolver";


/**
 * What a failed query means, in words: a server that did not answer at all (a timeout: packet loss, a firewall, a
 * server down) needs different action from one that answered SERVFAIL (it is up but could not answer for the zone:
 * a broken delegation, DNSSEC, an unreachable upstream) or REFUSED (it does not serve the zone to us).
 */
export function dnsFailureText(code: string, timeoutMs: number, tries: number): string {
  switch (code) {
    case "ETIMEOUT":
      return `no answer (timed out after ${tries} ${tries === 1 ? "try" : "tries"} of ${timeoutMs} ms; dns.queryTimeout, dns.queryTries)`;
    case "ESERVFAIL":
      return "the server answered SERVFAIL (it is reachable but could not answer for this name: a broken delegation, a DNSSEC failure or an unreachable upstream)";
    case "EREFUSED":
      return "the server answered REFUSED (it does not serve this zone, or does not answer this client)";
    case "ECONNREFUSED":
      return "the connection was refused (nothing listens on that address and port)";
    case "ENOTIMP":
      return "the server answered NOTIMP (it does not implement this query)";
    case "EBADRESP":
    case "EFORMERR":
      return `the answer could not be parsed (${code})`;
    default:
      return code;
  }
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "EUNKNOWN";
}

export function createDnsLookup(opts: DnsLookupOptions = {}): DnsLookup {
  const timeout = opts.timeoutMs ?? 2000;
  const tries = opts.tries ?? 2;
  const maxHops = opts.maxCnameHops ?? 8;

  /** A fresh resolver (no shared cache) for `servers`, or the system's servers when undefined. */
  function resolverFor(servers: string[] | undefined, name: string, rrtype: string): dns.Resolver {
    const r = new dns.Resolver({ timeout, tries });
    if (servers !== undefined) {
      try {
        r.setServers(servers);
      } catch (err) {
        throw new DnsLookupError(codeOf(err), { name, rrtype, server: servers.join(",") }, `invalid DNS server list ${servers.join(", ")}: ${(err as Error).message}`, err);
      }
    }
    return r;
  }

  /** Run one query; NXDOMAIN/NODATA give `[]`, anything else that fails throws DnsLookupError naming the server. */
  async function query<T>(servers: string[] | undefined, name: string, rrtype: string, run: (r: dns.Resolver) => Promise<T[]>): Promise<T[]> {
    const r = resolverFor(servers, name, rrtype);
    try {
      return await run(r);
    } catch (err) {
      const code = codeOf(err);
      if (NO_RECORDS.has(code)) return [];
      const server = servers?.join(",") ?? SYSTEM;
      throw new DnsLookupError(code, { name, rrtype, server }, `DNS ${rrtype} query for ${name} to ${server} failed: ${code}: ${dnsFailureText(code, timeout, tries)}`, err);
    }
  }

  return {
    /**
     * The TXT values (each record's character-strings joined) that EVERY server in `servers` returns for `name`:
     * the intersection, so a value counts only once all authoritative servers serve it. Each server is asked
     * separately. NXDOMAIN/NODATA from a server means it serves no value (the result is then `[]`). A server that
     * does not answer usefully (timeout, SERVFAIL, REFUSED) makes the call throw a DnsLookupError naming it; the
     * caller decides whether that is fatal. To learn which server lacks a value, call once per server.
     */
    async txt(name: string, servers: string[]): Promise<string[]> {
      const fqdn = norm(name);
      if (servers.length === 0) throw new DnsLookupError("NO_SERVERS", { name: fqdn, rrtype: "TXT", server: "" }, `no DNS servers given to ask for TXT ${fqdn}`);
      const perServer = await Promise.all(
        servers.map(async (s) => new Set((await query([s], fqdn, "TXT", (r) => r.resolveTxt(fqdn))).map((chunks) => chunks.join("")))),
      );
      const [first, ...rest] = perServer;
      return [...(first ?? [])].filter((v) => rest.every((set) => set.has(v)));
    },

    /**
     * Follow CNAMEs from `name` one hop at a time (a CNAME query per name, so the chain is visible) and return the
     * A and AAAA addresses of the last name, plus `cnames`: the CNAME targets in order (empty when `name` holds no
     * CNAME). `servers` undefined asks the system's resolvers; otherwise every query goes to `servers`. A missing
     * name or address gives `addresses: []`. A loop or a chain longer than `maxCnameHops` throws DnsLookupError.
     */
    async resolve(name: string, servers?: string[]): Promise<{ addresses: string[]; cnames: string[] }> {
      let current = norm(name);
      const cnames: string[] = [];
      const seen = new Set([current]);
      for (;;) {
        const at = current;
        const [target] = await query(servers, at, "CNAME", (r) => r.resolveCname(at));
        if (target === undefined) break;
        const next = norm(target);
        const server = servers?.join(",") ?? SYSTEM;
        if (seen.has(next)) {
          throw new DnsLookupError("CNAME_LOOP", { name: at, rrtype: "CNAME", server }, `CNAME loop from ${norm(name)}: ${[norm(name), ...cnames, next].join(" -> ")}`);
        }
        if (cnames.length >= maxHops) {
          throw new DnsLookupError("CNAME_CHAIN_TOO_LONG", { name: at, rrtype: "CNAME", server }, `CNAME chain from ${norm(name)} is longer than ${maxHops} hops`);
        }
        cnames.push(next);
        seen.add(next);
        current = next;
      }
      const final = current;
      const [v4, v6] = await Promise.all([
        query(servers, final, "A", (r) => r.resolve4(final)),
        query(servers, final, "AAAA", (r) => r.resolve6(final)),
      ]);
      return { addresses: [...v4, ...v6], cnames };
    },

    /** The NS record set of `name` (lower case, no trailing dot), from `servers` or the system resolver. */
    async ns(name: string, servers?: string[]): Promise<string[]> {
      const fqdn = norm(name);
      return (await query(servers, fqdn, "NS", (r) => r.resolveNs(fqdn))).map(norm);
    },

    /** The addresses of `host` through the operating system's resolver (getaddrinfo: /etc/hosts, then DNS). */
    async hostAddresses(host: string): Promise<string[]> {
      try {
        const found = await dns.lookup(host, { all: true });
        return [...new Set(found.map((a) => a.address))];
      } catch (err) {
        const code = codeOf(err);
        throw new DnsLookupError(code, { name: host, rrtype: "A/AAAA", server: "getaddrinfo" }, `cannot resolve host ${host}: ${code}${code === "EAI_AGAIN" ? " (the resolver did not answer in time or failed: a temporary failure)" : code === "ENOTFOUND" ? " (no such host)" : ""}`, err);
      }
    },
  };
}
