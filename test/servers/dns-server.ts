/**
 * An authoritative DNS server stand-in for the Azure DNS zones held in a `ZoneStore`: real DNS packets over UDP and
 * TCP on 127.0.0.1, the same port number on both. It answers from the store's *propagated* view, so a record written
 * through the ARM stand-in is served only `store.propagationDelayMs` later, like Azure DNS's name servers.
 *
 * Behaviour (what a client sees):
 * - SOA, NS, A, AAAA, TXT and CNAME from the zones, with the AA bit set. Other types get NODATA (or NXDOMAIN).
 * - NXDOMAIN and NODATA carry the zone's SOA in the authority section (RFC 2308).
 * - Names outside every zone get REFUSED (no AA), like an authoritative-only server.
 * - CNAME: for any type but CNAME, a name holding a CNAME answers with it and the server follows the target through
 *   every zone it serves, in the same zone (as an authoritative server does for in-zone data) *and* across its other
 *   zones (as a recursive resolver would; Azure DNS's servers do not, but here one server stands in for the whole
 *   resolution path Pebble and amlcert see). The chain stops at a target outside the served zones (NOERROR, the
 *   client resolves the rest), at a loop, or after `MAX_CNAME_HOPS`; the RCODE is that of the last name (RFC 6604).
 * - TXT strings longer than 255 bytes are split into 255-byte character-strings (clients join them again).
 * - UDP answers larger than 512 bytes (no EDNS) or than the EDNS payload size (clamped to 512..1232) are sent empty
 *   with the TC bit, so clients retry over TCP. EDNS version 0 is supported (OPT echoed); higher versions get BADVERS.
 * - The RD bit is echoed; RA is never set (an authoritative server).
 * No delegations below a zone apex: NS record sets at other names are served as ordinary data.
 *
 * Knobs: `zones.propagationDelayMs` (on the store), `dropNextQueries(n)` (no answer: packet loss on UDP, a closed
 * connection on TCP), `failNextQueries(n, rcode)` (answer SERVFAIL or another RCODE), and the query log `queries`.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server as TcpServer, type Socket as TcpSocket } from "node:net";
import dnsPacket, { type Answer, type DecodedPacket, type OptAnswer, type Question } from "dns-packet";
import type { RecordSet, RecordType, Zone, ZoneStore } from "./zone-store.js";

export type Transport = "udp" | "tcp";

export interface LoggedQuery {
  /** lower case, no trailing dot */
  name: string;
  type: string;
  transport: Transport;
  /** the response code sent, or undefined when the query was dropped */
  rcode?: string;
  /** the UDP answer was too large and went out empty with TC set */
  truncated?: boolean;
  dropped?: boolean;
}

export interface DnsServer {
  host: "127.0.0.1";
  port: number;
  /** `127.0.0.1:<port>`, the form Pebble's `-dnsserver` and node:dns `setServers` take */
  address: string;
  /** every query received, in order (tests may clear it with `queries.length = 0`) */
  queries: LoggedQuery[];
  /** Do not answer the next `n` queries (whatever their transport). */
  dropNextQueries(n: number): void;
  /** Answer the next `n` queries with `rcode` (default SERVFAIL) and no records. */
  failNextQueries(n: number, rcode?: FailRcode): void;
  close(): Promise<void>;
}

export type FailRcode = "SERVFAIL" | "REFUSED" | "NOTIMP";

export interface DnsServerOptions {
  zones: ZoneStore;
  /** how often to retry when the TCP port matching the random UDP port is taken (default 20) */
  bindAttempts?: number;
}

/** at most this many CNAME records in one answer */
export const MAX_CNAME_HOPS = 8;
/** our EDNS UDP payload size (the DNS flag day 2020 value) */
const EDNS_UDP_SIZE = 1232;
const PLAIN_UDP_SIZE = 512;
const TCP_IDLE_MS = 10_000;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
type RcodeName = keyof typeof RCODE;
const SERVED_TYPES: ReadonlySet<string> = new Set<RecordType>(["A", "AAAA", "TXT", "CNAME", "NS", "SOA"]);

const norm = (s: string) => s.toLowerCase().replace(/\.$/, "");

/** SOA of a zone as Azure DNS serves it (Azure's fixed defaults; the serial is not tracked). */
function soaAnswer(zone: Zone): Answer {
  return {
    name: zone.name,
    type: "SOA",
    class: "IN",
    ttl: 3600,
    data: {
      mname: zone.nameServers[0] ?? `ns1.${zone.name}`,
      rname: "azuredns-hostmaster.microsoft.com",
      serial: 1,
      refresh: 3600,
      retry: 300,
      expire: 2419200,
      minimum: 300,
    },
  };
}

/** A TXT value (ARM's list of strings) as DNS character-strings of at most 255 bytes each. */
function txtStrings(parts: string[]): Buffer[] {
  const out: Buffer[] = [];
  for (const part of parts) {
    const bytes = Buffer.from(part, "utf8");
    if (bytes.length === 0) out.push(bytes);
    for (let i = 0; i < bytes.length; i += 255) out.push(bytes.subarray(i, i + 255));
  }
  return out.length > 0 ? out : [Buffer.alloc(0)];
}

function recordAnswers(owner: string, rs: RecordSet, zone: Zone): Answer[] {
  const base = { name: owner, class: "IN" as const, ttl: rs.ttl };
  switch (rs.type) {
    case "A":
    case "AAAA":
      return (rs.addresses ?? []).map((a) => ({ ...base, type: rs.type as "A" | "AAAA", data: a }));
    case "TXT":
      return (rs.txt ?? []).map((v) => ({ ...base, type: "TXT" as const, data: txtStrings(v) }));
    case "CNAME":
      return rs.cname ? [{ ...base, type: "CNAME" as const, data: norm(rs.cname) }] : [];
    case "NS":
      return (rs.ns ?? []).map((n) => ({ ...base, type: "NS" as const, data: norm(n) }));
    case "SOA":
      return [{ ...soaAnswer(zone), name: owner }];
  }
}

interface Resolution {
  rcode: RcodeName;
  aa: boolean;
  answers: Answer[];
  authorities: Answer[];
}

/** The answer for one question, from the store's propagated view. */
function resolveQuestion(store: ZoneStore, q: Question): Resolution {
  const qtype = q.type;
  let owner = q.name.replace(/\.$/, ""); // keep the client's spelling (0x20) for the first owner name
  const answers: Answer[] = [];
  const seen = new Set<string>();
  for (let hop = 0; ; hop++) {
    const zone = store.zoneFor(owner);
    if (!zone) {
      // the first name: not ours. A later name: a CNAME leaving our zones, the client continues from here.
      return hop === 0 ? { rcode: "REFUSED", aa: false, answers: [], authorities: [] } : { rcode: "NOERROR", aa: true, answers, authorities: [] };
    }
    seen.add(norm(owner));
    if (SERVED_TYPES.has(qtype)) {
      const found = store.lookup(owner, qtype as RecordType);
      if (found.recordSet) {
        const rrs = recordAnswers(owner, found.recordSet, zone);
        if (rrs.length > 0) return { rcode: "NOERROR", aa: true, answers: [...answers, ...rrs], authorities: [] };
      }
    }
    const cname = qtype === "CNAME" ? undefined : store.lookup(owner, "CNAME");
    if (cname?.recordSet?.cname) {
      const target = norm(cname.recordSet.cname);
      answers.push(...recordAnswers(owner, cname.recordSet, zone));
      if (seen.has(target) || hop + 1 >= MAX_CNAME_HOPS) return { rcode: "NOERROR", aa: true, answers, authorities: [] };
      owner = target;
      continue;
    }
    const exists = store.lookup(owner, "SOA").nameExists; // name existence does not depend on the type
    return { rcode: exists ? "NOERROR" : "NXDOMAIN", aa: true, answers, authorities: [soaAnswer(zone)] };
  }
}

interface Reply {
  packet: dnsPacket.Packet;
  log: Omit<LoggedQuery, "transport">;
}

function buildReply(store: ZoneStore, query: DecodedPacket, forced: FailRcode | undefined): Reply {
  const questions = query.questions ?? [];
  const q = questions[0];
  const opt = (query.additionals ?? []).find((a): a is OptAnswer => a.type === "OPT");
  const rd = query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0;
  const log = { name: q ? norm(q.name) : "", type: q?.type ?? "" };
  const reply = (rcode: RcodeName | number, aa: boolean, answers: Answer[] = [], authorities: Answer[] = [], extendedRcode = 0): Reply => {
    const code = typeof rcode === "number" ? rcode : RCODE[rcode];
    const additionals: Answer[] = opt ? [{ name: ".", type: "OPT", udpPayloadSize: EDNS_UDP_SIZE, extendedRcode, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [];
    const packet: dnsPacket.Packet = {
      id: query.id ?? 0,
      type: "response",
      flags: rd | (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | (code & 0xf),
      questions,
      answers,
      authorities,
      additionals,
    };
    const name = extendedRcode === 1 && code === 0 ? "BADVERS" : typeof rcode === "number" ? String(rcode) : rcode;
    return { packet, log: { ...log, rcode: name } };
  };

  const opcode = (query as DecodedPacket & { opcode?: string }).opcode;
  if (opcode !== undefined && opcode !== "QUERY") return reply("NOTIMP", false);
  if (questions.length !== 1 || !q) return reply("FORMERR", false);
  if (opt && opt.ednsVersion > 0) return reply(0, false, [], [], 1); // BADVERS = 16: extended RCODE 1, RCODE 0
  if (forced) return reply(forced, false);
  if (q.class !== undefined && q.class !== "IN") return reply("REFUSED", false);
  const r = resolveQuestion(store, q);
  return reply(r.rcode, r.aa, r.answers, r.authorities);
}

/** Encode `reply`; over UDP, a reply larger than the client can take goes out empty with TC set. */
function encodeReply(reply: Reply, query: DecodedPacket, transport: Transport): { bytes: Buffer; truncated: boolean } {
  const full = dnsPacket.encode(reply.packet);
  if (transport === "tcp") return { bytes: full, truncated: false };
  const opt = (query.additionals ?? []).find((a): a is OptAnswer => a.type === "OPT");
  const limit = opt ? Math.min(Math.max(opt.udpPayloadSize, PLAIN_UDP_SIZE), EDNS_UDP_SIZE) : PLAIN_UDP_SIZE;
  if (full.length <= limit) return { bytes: full, truncated: false };
  const p = reply.packet;
  const empty = dnsPacket.encode({ ...p, flags: (p.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
  return { bytes: empty, truncated: true };
}

/** The header id and a FORMERR reply for a packet we cannot parse, or undefined when even the header is short. */
function formErr(buf: Buffer): Buffer | undefined {
  if (buf.length < 12) return undefined;
  return dnsPacket.encode({ id: buf.readUInt16BE(0), type: "response", flags: RCODE.FORMERR });
}

function bindUdp(): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket("udp4");
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => {
      sock.off("error", reject);
      resolve(sock);
    });
  });
}

function listenTcp(server: TcpServer, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Start the server on a random loopback port (the same number on UDP and TCP). */
export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const store = opts.zones;
  const queries: LoggedQuery[] = [];
  let dropBudget = 0;
  let failBudget = 0;
  let failRcode: FailRcode = "SERVFAIL";
  const tcpSockets = new Set<TcpSocket>();

  /** Decide the fate of one raw query: bytes to send, or undefined to stay silent. */
  const handle = (buf: Buffer, transport: Transport): Buffer | undefined => {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(buf);
    } catch {
      queries.push({ name: "", type: "", transport, rcode: "FORMERR" });
      return formErr(buf);
    }
    if (query.type === "response") return undefined; // never answer answers
    const q = query.questions?.[0];
    if (dropBudget > 0) {
      dropBudget--;
      queries.push({ name: q ? norm(q.name) : "", type: q?.type ?? "", transport, dropped: true });
      return undefined;
    }
    let forced: FailRcode | undefined;
    if (failBudget > 0) {
      failBudget--;
      forced = failRcode;
    }
    let reply: Reply;
    try {
      reply = buildReply(store, query, forced);
    } catch {
      queries.push({ name: q ? norm(q.name) : "", type: q?.type ?? "", transport, rcode: "SERVFAIL" });
      return dnsPacket.encode({ id: query.id ?? 0, type: "response", flags: RCODE.SERVFAIL, questions: query.questions ?? [] });
    }
    const { bytes, truncated } = encodeReply(reply, query, transport);
    queries.push({ ...reply.log, transport, ...(truncated ? { truncated } : {}) });
    return bytes;
  };

  const onTcpConnection = (sock: TcpSocket) => {
    tcpSockets.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on("close", () => tcpSockets.delete(sock));
    sock.on("error", () => sock.destroy());
    let pending = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < 2 + len) break;
        const msg = pending.subarray(2, 2 + len);
        pending = pending.subarray(2 + len);
        const out = handle(msg, "tcp");
        if (!out) {
          sock.destroy();
          return;
        }
        const framed = Buffer.alloc(2 + out.length);
        framed.writeUInt16BE(out.length, 0);
        out.copy(framed, 2);
        sock.write(framed);
      }
    });
  };

  const attempts = opts.bindAttempts ?? 20;
  let udp: UdpSocket | undefined;
  let tcp: TcpServer | undefined;
  let lastError: unknown;
  for (let i = 0; i < attempts && !tcp; i++) {
    const u = await bindUdp();
    const t = createServer(onTcpConnection);
    try {
      await listenTcp(t, u.address().port);
      udp = u;
      tcp = t;
    } catch (err) {
      lastError = err;
      await new Promise<void>((r) => u.close(() => r()));
    }
  }
  if (!udp || !tcp) throw new Error(`dns-server: no port free on both UDP and TCP after ${attempts} attempts`, { cause: lastError });
  const udpSock = udp;
  const tcpServer = tcp;

  udpSock.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
    const out = handle(msg, "udp");
    if (out) udpSock.send(out, rinfo.port, rinfo.address);
  });
  udpSock.on("error", () => {
    /* a send to a vanished client: nothing to do */
  });

  const port = udpSock.address().port;
  let closed = false;
  return {
    host: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    queries,
    dropNextQueries(n: number) {
      dropBudget = n;
    },
    failNextQueries(n: number, rcode: FailRcode = "SERVFAIL") {
      failBudget = n;
      failRcode = rcode;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of tcpSockets) s.destroy();
      await Promise.all([
        new Promise<void>((r) => udpSock.close(() => r())),
        new Promise<void>((r) => tcpServer.close(() => r())),
      ]);
    },
  };
}
