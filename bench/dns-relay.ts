/**
 * A DNS relay on port 53 of a loopback address (UDP and TCP) to the authoritative DNS stand-in's random port.
 *
 * Why: lego's propagation check asks each name server of the zone at `<NS host>:53` (lego 4.9.1,
 * challenge/dns01/precheck.go), so the zone's NS names must resolve to addresses that answer on port 53. The bench
 * runs in its own mount and network namespaces (scripts/bench.sh), where /etc/hosts maps the zone's NS names
 * (ns1-01.azure-dns.test, ns2-01.azure-dns.test) to 127.0.0.2 and 127.0.0.3; a relay on each forwards to the one
 * stand-in, so every client sees the same zone and the same injected propagation delay.
 */
import { createSocket, type RemoteInfo } from "node:dgram";
import { connect, createServer, type Socket } from "node:net";

export interface DnsRelay {
  address: string;
  close(): Promise<void>;
}

export async function startDnsRelay(host: string, backend: { host: string; port: number }, port = 53): Promise<DnsRelay> {
  const udp = createSocket("udp4");
  // one upstream socket per query id and client: answers go back to whoever asked
  udp.on("message", (msg: Buffer, client: RemoteInfo) => {
    const up = createSocket("udp4");
    const timer = setTimeout(() => up.close(), 5_000);
    up.on("message", (answer) => {
      udp.send(answer, client.port, client.address);
      clearTimeout(timer);
      up.close();
    });
    up.on("error", () => {
      clearTimeout(timer);
      up.close();
    });
    up.send(msg, backend.port, backend.host);
  });
  udp.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(port, host, () => resolve());
  });
  const sockets = new Set<Socket>();
  const tcp = createServer((client) => {
    const up = connect(backend.port, backend.host);
    sockets.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    client.pipe(up).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(port, host, () => resolve());
  });
  return {
    address: `${host}:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
}
