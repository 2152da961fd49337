/**
 * The Azure DNS stand-in, proved with real DNS packets: node:dns (c-ares) as a client, and dns-packet over raw
 * UDP and TCP sockets where the flags (AA, TC, RCODE) and sections matter.
 */
import { createSocket } from "node:dgram";
import { promises as dns } from "node:dns";
import { connect } from "node:net";
import dnsPacket, { type Answer, type DecodedPacket } from "dns-packet";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { ZoneStore, type Zone } from "../servers/zone-store.js";

const RAW_TIMEOUT_MS = 3000;
let nextId = 1;

function queryPacket(name: string, type: dnsPacket.RecordType, opts: { edns?: number; ednsVersion?: number } = {}): Buffer {
  const additionals: Answer[] =
    opts.edns === undefined
      ? []
      : [{ name: ".", type: "OPT", udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: opts.ednsVersion ?? 0, flags: 0, flag_do: false, options: [] }];
  return dnsPacket.encode({
    id: nextId++ & 0xffff,
    type: "query",
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
    additionals,
  });
}

/** One query over UDP with dns-packet; bounded by RAW_TIMEOUT_MS. */
function udpQuery(server: DnsServer, name: string, type: dnsPacket.RecordType, opts: { edns?: number; ednsVersion?: number } = {}): Promise<DecodedPacket & { rcode: string }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket("udp4");
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no UDP answer for ${name} ${type}`));
    }, RAW_TIMEOUT_MS);
    sock.on("message", (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(dnsPacket.decode(msg) as DecodedPacket & { rcode: string });
    });
    sock.send(queryPacket(name, type, opts), server.port, server.host);
  });
}

/** Several queries pipelined on one TCP connection with dns-packet's 2-byte framing; bounded by RAW_TIMEOUT_MS. */
function tcpQueries(server: DnsServer, qs: Array<{ name: string; type: dnsPacket.RecordType }>): Promise<Array<DecodedPacket & { rcode: string }>> {
  return new Promise((resolve, reject) => {
    const sock = connect(server.port, server.host);
    const out: Array<DecodedPacket & { rcode: string }> = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`TCP answers incomplete: ${out.length}/${qs.length}`));
    }, RAW_TIMEOUT_MS);
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        out.push(dnsPacket.decode(buf.subarray(2, 2 + len)) as DecodedPacket & { rcode: string });
        buf = buf.subarray(2 + len);
      }
      if (out.length === qs.length) {
        clearTimeout(timer);
        sock.end();
        resolve(out);
      }
    });
    sock.on("connect", () => {
      for (const q of qs) {
        const msg = queryPacket(q.name, q.type);
        const frame = Buffer.alloc(2 + msg.length);
        frame.writeUInt16BE(msg.length, 0);
        msg.copy(frame, 2);
        sock.write(frame);
      }
    });
  });
}

function resolverFor(server: DnsServer, opts: { timeout?: number; tries?: number } = {}): dns.Resolver {
  const r = new dns.Resolver({ timeout: opts.timeout ?? 2000, tries: opts.tries ?? 1 });
  r.setServers([server.address]);
  return r;
}

const txtOf = (a: Answer) => ((a as { data: Buffer[] }).data).map((b) => b.toString("utf8"));

describe("DNS server stand-in (authoritative for the ZoneStore's zones)", () => {
  const store = new ZoneStore();
  let server: DnsServer;
  let example: Zone;
  let other: Zone;
  const longValue = "v=".padEnd(600, "x") + "end";
  const manyValues = Array.from({ length: 40 }, (_, i) => `token-${String(i).padStart(2, "0")}-${"k".repeat(36)}`);

  beforeAll(async () => {
    example = store.addZone("sub", "rg", "example.com", ["ns1-01.azure-dns.com", "ns2-01.azure-dns.net"]);
    other = store.addZone("sub", "rg", "other.net");
    store.putRecordSet(example, "TXT", "_acme-challenge.www", { ttl: 60, txt: [["value-one"], ["value-two"]] });
    store.putRecordSet(example, "TXT", "long", { ttl: 60, txt: [[longValue]] });
    store.putRecordSet(example, "TXT", "many", { ttl: 60, txt: manyValues.map((v) => [v]) });
    store.putRecordSet(example, "TXT", "eight", { ttl: 60, txt: manyValues.slice(0, 8).map((v) => [v]) });
    store.putRecordSet(example, "A", "www", { ttl: 300, addresses: ["192.0.2.10", "192.0.2.11"] });
    store.putRecordSet(example, "AAAA", "www", { ttl: 300, addresses: ["2001:db8::10"] });
    // _acme-challenge.api.example.com -> api.acme.other.net (another zone served here) -> final TXT
    store.putRecordSet(example, "CNAME", "_acme-challenge.api", { ttl: 60, cname: "api.acme.other.net" });
    store.putRecordSet(other, "TXT", "api.acme", { ttl: 60, txt: [["delegated-token"]] });
    // in-zone chain: alias -> www (A records)
    store.putRecordSet(example, "CNAME", "alias", { ttl: 60, cname: "www.example.com" });
    // a CNAME leaving the served zones
    store.putRecordSet(example, "CNAME", "outside", { ttl: 60, cname: "target.elsewhere.org" });
    // a CNAME to a missing name in a served zone
    store.putRecordSet(example, "CNAME", "dangling", { ttl: 60, cname: "missing.other.net" });
    // a loop
    store.putRecordSet(example, "CNAME", "loop-a", { ttl: 60, cname: "loop-b.example.com" });
    store.putRecordSet(example, "CNAME", "loop-b", { ttl: 60, cname: "loop-a.example.com" });
    server = await startDnsServer({ zones: store });
  });

  afterAll(async () => {
    await server?.close();
  });

  afterEach(() => {
    server.dropNextQueries(0);
    server.failNextQueries(0);
  });

  it("listens on the same port number over UDP and TCP on 127.0.0.1", async () => {
    expect(server.host).toBe("127.0.0.1");
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    const [overTcp] = await tcpQueries(server, [{ name: "example.com", type: "SOA" }]);
    const overUdp = await udpQuery(server, "example.com", "SOA");
    expect(overTcp!.rcode).toBe("NOERROR");
    expect(overUdp.rcode).toBe("NOERROR");
  });

  it("when asked for the apex SOA and NS, it answers authoritatively with the zone's name servers", async () => {
    const r = resolverFor(server);
    const soa = await r.resolveSoa("example.com");
    expect(soa.nsname).toBe("ns1-01.azure-dns.com");
    expect((await r.resolveNs("example.com")).sort()).toEqual(["ns1-01.azure-dns.com", "ns2-01.azure-dns.net"]);
    const raw = await udpQuery(server, "example.com", "NS");
    expect(raw.flag_aa).toBe(true);
    expect(raw.flag_ra).toBe(false);
  });

  it("when a TXT record set holds several values, every value is served", async () => {
    const values = await resolverFor(server).resolveTxt("_acme-challenge.www.example.com");
    expect(values.map((chunks) => chunks.join("")).sort()).toEqual(["value-one", "value-two"]);
    const raw = await udpQuery(server, "_acme-challenge.www.example.com", "TXT");
    expect(raw.flag_aa).toBe(true);
    expect(raw.answers).toHaveLength(2);
  });

  it("when a TXT value is longer than 255 bytes, it goes out as 255-byte strings that join back to the value", async () => {
    const raw = await udpQuery(server, "long.example.com", "TXT", { edns: 1232 });
    const strings = txtOf(raw.answers![0]!);
    expect(strings.map((s) => s.length)).toEqual([255, 255, 93]);
    expect(strings.join("")).toBe(longValue);
    const viaResolver = await resolverFor(server).resolveTxt("long.example.com");
    expect(viaResolver.map((c) => c.join(""))).toEqual([longValue]);
  });

  it("answers A and AAAA record sets", async () => {
    const r = resolverFor(server);
    expect((await r.resolve4("www.example.com")).sort()).toEqual(["192.0.2.10", "192.0.2.11"]);
    expect(await r.resolve6("www.example.com")).toEqual(["2001:db8::10"]);
  });

  it("when the name holds a CNAME into another served zone, the answer carries the CNAME and the target's TXT", async () => {
    const raw = await udpQuery(server, "_acme-challenge.api.example.com", "TXT");
    expect(raw.rcode).toBe("NOERROR");
    expect(raw.flag_aa).toBe(true);
    expect(raw.answers!.map((a) => [a.name, a.type])).toEqual([
      ["_acme-challenge.api.example.com", "CNAME"],
      ["api.acme.other.net", "TXT"],
    ]);
    expect((raw.answers![0] as { data: string }).data).toBe("api.acme.other.net");
    expect(txtOf(raw.answers![1]!)).toEqual(["delegated-token"]);
    // and a stub resolver (what Pebble and amlcert use) gets the final values
    expect(await resolverFor(server).resolveTxt("_acme-challenge.api.example.com")).toEqual([["delegated-token"]]);
  });

  it("when the CNAME target is in the same zone, the target's addresses follow the CNAME", async () => {
    const raw = await udpQuery(server, "alias.example.com", "A");
    expect(raw.answers!.map((a) => a.type)).toEqual(["CNAME", "A", "A"]);
    expect((await resolverFor(server).resolve4("alias.example.com")).sort()).toEqual(["192.0.2.10", "192.0.2.11"]);
  });

  it("when asked for the CNAME type itself, it returns only the CNAME", async () => {
    const raw = await udpQuery(server, "_acme-challenge.api.example.com", "CNAME");
    expect(raw.answers!.map((a) => a.type)).toEqual(["CNAME"]);
  });

  it("when a CNAME leaves the served zones, it answers NOERROR with the CNAME alone", async () => {
    const raw = await udpQuery(server, "outside.example.com", "TXT");
    expect(raw.rcode).toBe("NOERROR");
    expect(raw.answers!.map((a) => (a as { data: unknown }).data)).toEqual(["target.elsewhere.org"]);
  });

  it("when a CNAME points at a missing name in a served zone, the RCODE is NXDOMAIN with the target zone's SOA", async () => {
    const raw = await udpQuery(server, "dangling.example.com", "TXT");
    expect(raw.rcode).toBe("NXDOMAIN");
    expect(raw.answers!.map((a) => a.type)).toEqual(["CNAME"]);
    expect(raw.authorities!.map((a) => [a.name, a.type])).toEqual([["other.net", "SOA"]]);
  });

  it("when CNAMEs loop, the chain stops once every name has been seen", async () => {
    const raw = await udpQuery(server, "loop-a.example.com", "A");
    expect(raw.rcode).toBe("NOERROR");
    expect(raw.answers!.map((a) => `${a.name}->${(a as { data: string }).data}`)).toEqual([
      "loop-a.example.com->loop-b.example.com",
      "loop-b.example.com->loop-a.example.com",
    ]);
  });

  it("when the name does not exist, it answers NXDOMAIN with the SOA in the authority section", async () => {
    const raw = await udpQuery(server, "nope.example.com", "TXT");
    expect(raw.rcode).toBe("NXDOMAIN");
    expect(raw.flag_aa).toBe(true);
    expect(raw.answers).toHaveLength(0);
    expect(raw.authorities!.map((a) => [a.name, a.type])).toEqual([["example.com", "SOA"]]);
    await expect(resolverFor(server).resolveTxt("nope.example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("when the name exists without that type, it answers NODATA (NOERROR, no answers) with the SOA", async () => {
    for (const name of ["www.example.com", "acme.other.net" /* empty non-terminal */]) {
      const raw = await udpQuery(server, name, "TXT");
      expect(raw.rcode).toBe("NOERROR");
      expect(raw.flag_aa).toBe(true);
      expect(raw.answers).toHaveLength(0);
      expect(raw.authorities!.map((a) => a.type)).toEqual(["SOA"]);
    }
    await expect(resolverFor(server).resolveTxt("www.example.com")).rejects.toMatchObject({ code: "ENODATA" });
  });

  it("when the name is outside every zone it serves, it answers REFUSED without AA", async () => {
    const raw = await udpQuery(server, "www.example.org", "A");
    expect(raw.rcode).toBe("REFUSED");
    expect(raw.flag_aa).toBe(false);
    await expect(resolverFor(server).resolve4("www.example.org")).rejects.toMatchObject({ code: "EREFUSED" });
  });

  it("keeps the client's spelling of the question name (0x20 case randomisation)", async () => {
    const raw = await udpQuery(server, "WwW.ExAmple.COM", "A");
    expect(raw.questions![0]!.name).toBe("WwW.ExAmple.COM");
    expect(raw.answers!.every((a) => a.name === "WwW.ExAmple.COM")).toBe(true);
  });

  it("when a UDP answer exceeds 512 bytes without EDNS, it sets TC and sends no records; TCP carries them all", async () => {
    const udp = await udpQuery(server, "many.example.com", "TXT");
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toHaveLength(0);
    const [tcp] = await tcpQueries(server, [{ name: "many.example.com", type: "TXT" }]);
    expect(tcp!.flag_tc).toBe(false);
    expect(tcp!.answers!.map((a) => txtOf(a).join("")).sort()).toEqual([...manyValues].sort());
  });

  it("when the client offers an EDNS payload size, a mid-sized answer fits in UDP that would not fit in 512 bytes", async () => {
    const plain = await udpQuery(server, "eight.example.com", "TXT");
    expect(plain.flag_tc).toBe(true);
    const edns = await udpQuery(server, "eight.example.com", "TXT", { edns: 4096 });
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers).toHaveLength(8);
    const opt = edns.additionals!.find((a) => a.type === "OPT") as { udpPayloadSize: number } | undefined;
    expect(opt?.udpPayloadSize).toBe(1232);
    // above our 1232-byte ceiling even with EDNS
    const big = await udpQuery(server, "many.example.com", "TXT", { edns: 4096 });
    expect(big.flag_tc).toBe(true);
  });

  it("when a stub resolver gets a truncated answer, it falls back to TCP and gets every value", async () => {
    server.queries.length = 0;
    const values = await resolverFor(server).resolveTxt("many.example.com");
    expect(values.map((c) => c.join("")).sort()).toEqual([...manyValues].sort());
    const forName = server.queries.filter((q) => q.name === "many.example.com");
    expect(forName.some((q) => q.transport === "udp" && q.truncated)).toBe(true);
    expect(forName.some((q) => q.transport === "tcp" && q.rcode === "NOERROR")).toBe(true);
  });

  it("answers several queries pipelined on one TCP connection", async () => {
    const answers = await tcpQueries(server, [
      { name: "www.example.com", type: "A" },
      { name: "nope.example.com", type: "A" },
      { name: "www.example.org", type: "A" },
    ]);
    expect(answers.map((a) => a.rcode)).toEqual(["NOERROR", "NXDOMAIN", "REFUSED"]);
  });

  it("when the client asks for an EDNS version above 0, it answers BADVERS", async () => {
    const raw = await udpQuery(server, "www.example.com", "A", { edns: 1232, ednsVersion: 1 });
    const opt = raw.additionals!.find((a) => a.type === "OPT") as { extendedRcode: number } | undefined;
    expect(opt?.extendedRcode).toBe(1);
    expect(raw.answers).toHaveLength(0);
  });

  it("when told to drop queries, the dropped query gets no answer and the client's retry does", async () => {
    server.queries.length = 0;
    server.dropNextQueries(1);
    // the dropped try waits out its timeout; the retries are answered, with a second or more each to spare
    const values = await resolverFor(server, { timeout: 1_000, tries: 3 }).resolve4("www.example.com");
    expect(values.sort()).toEqual(["192.0.2.10", "192.0.2.11"]);
    expect(server.queries[0]).toMatchObject({ name: "www.example.com", type: "A", dropped: true });
    expect(server.queries.some((q) => !q.dropped && q.rcode === "NOERROR")).toBe(true);
  });

  it("when told to fail queries, it answers SERVFAIL", async () => {
    server.failNextQueries(1);
    const raw = await udpQuery(server, "www.example.com", "A");
    expect(raw.rcode).toBe("SERVFAIL");
    const again = await udpQuery(server, "www.example.com", "A");
    expect(again.rcode).toBe("NOERROR");
  });

  it("logs every query with its name, type and transport", async () => {
    server.queries.length = 0;
    await udpQuery(server, "_acme-challenge.www.example.com", "TXT");
    await tcpQueries(server, [{ name: "www.example.com", type: "AAAA" }]);
    expect(server.queries).toEqual([
      { name: "_acme-challenge.www.example.com", type: "TXT", transport: "udp", rcode: "NOERROR" },
      { name: "www.example.com", type: "AAAA", transport: "tcp", rcode: "NOERROR" },
    ]);
  });
});

describe("DNS server stand-in lifecycle", () => {
  it("when closed, it frees its port and close() can be called twice", async () => {
    const s = await startDnsServer({ zones: new ZoneStore() });
    await s.close();
    await s.close();
    const r = new dns.Resolver({ timeout: 200, tries: 1 });
    r.setServers([s.address]);
    await expect(r.resolve4("example.com")).rejects.toMatchObject({ code: expect.stringMatching(/^(ECONNREFUSED|ETIMEOUT)$/) });
  });
});
