/**
 * Which servers the propagation check asks: the zone's authoritative name servers as query targets for node:dns
 * (`ip`, `ip:port` or `[ipv6]:port`). An explicit override wins (private zones, split horizon, tests); otherwise the
 * host names ARM reports in the zone's `nameServers` are resolved to addresses and asked on port 53.
 */
import { isIP } from "node:net";
import { AmlcertError } from "../errors.js";
import type { DnsLookup, DnsZone } from "../ports.js";
import { normalizeName } from "./names.js";

export interface AuthoritativeServersInput {
  zone: DnsZone;
  lookup: DnsLookup;
  /** `host` or `host:port` entries (`[v6]:port` for IPv6 with a port); a host name is resolved to its addresses */
  override?: string[];
}

interface HostPort {
  host: string;
  port: number;
}

/** Parse `host`, `host:port`, `v6`, `[v6]` or `[v6]:port`. */
export function parseServer(entry: string): HostPort | undefined {
  const s = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) return withPort(bracketed[1] ?? "", bracketed[2]);
  if (isIP(s) === 6) return { host: s, port: 53 };
  const hostPort = /^([^:\s]+)(?::(\d+))?$/.exec(s);
  if (hostPort) return withPort(hostPort[1] ?? "", hostPort[2]);
  return undefined;
}

function withPort(host: string, port: string | undefined): HostPort | undefined {
  const n = port === undefined ? 53 : Number(port);
  if (host === "" || !Number.isInteger(n) || n < 1 || n > 65535) return undefined;
  return { host: normalizeName(host), port: n };
}

/** The node:dns `setServers` form of an address and port. */
export function formatServer(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * The servers to ask (one address per host, see `oneAddress`), deduplicated, in the order given (override) or reported by ARM. Throws
 * AmlcertError(CONFIG_INVALID) for a malformed override entry, and AmlcertError(DNS_PROPAGATION_TIMEOUT) when the
 * zone reports no name servers or one of them does not resolve (propagation cannot then be confirmed).
 */
export async function authoritativeServers(input: AuthoritativeServersInput): Promise<string[]> {
  const { zone, lookup, override } = input;
  let entries: HostPort[];
  if (override && override.length > 0) {
    entries = override.map((raw) => {
      const hp = parseServer(raw);
      if (!hp) {
        throw new AmlcertError("CONFIG_INVALID", "config", `invalid DNS server "${raw}": expected host, host:port or [ipv6]:port`, {
          details: { server: raw },
        });
      }
      return hp;
    });
  } else {
    const names = await input.zone.nameServers();
    if (names.length === 0) {
      throw new AmlcertError("DNS_PROPAGATION_TIMEOUT", "propagation", `zone ${zone.zone} reports no name servers; set the authoritative servers explicitly`, {
        details: { zone: zone.zone },
      });
    }
    entries = names.map((host) => ({ host: normalizeName(host), port: 53 }));
  }

  const servers: string[] = [];
  for (const { host, port } of entries) {
    const ip = isIP(host) ? host : await oneAddress(host, zone.zone, lookup);
    const s = formatServer(ip, port);
    if (!servers.includes(s)) servers.push(s);
  }
  return servers;
}

/**
 * One address per name server host: each host is one (anycast) server, and asking it over a second address family
 * only adds a way to time out (an IPv6 address on a cluster without IPv6 egress). IPv4 first, else the first one.
 */
async function oneAddress(host: string, zoneName: string, lookup: DnsLookup): Promise<string> {
  let ips: string[];
  try {
    ips = await lookup.hostAddresses(host);
  } catch (err) {
    throw new AmlcertError("DNS_PROPAGATION_TIMEOUT", "propagation", `cannot resolve name server ${host} of zone ${zoneName}: ${(err as Error).message}`, {
      cause: err,
      details: { zone: zoneName, nameServer: host },
    });
  }
  const ip = ips.find((a) => isIP(a) === 4) ?? ips[0];
  if (ip === undefined) {
    throw new AmlcertError("DNS_PROPAGATION_TIMEOUT", "propagation", `name server ${host} of zone ${zoneName} has no address`, {
      details: { zone: zoneName, nameServer: host },
    });
  }
  return ip;
}
