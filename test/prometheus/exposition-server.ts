/**
 * A loopback HTTP server that serves a fixed Prometheus text exposition on /metrics, which a test can replace at
 * any time: a stand-in scrape target for the shapes amlcert's series take (a daemon's /metrics, a Pushgateway's
 * groups), so the shipped rules and dashboard run on a real Prometheus against exactly the series a test wants.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ExpositionServer {
  /** 127.0.0.1:<port>, for a scrape target */
  hostPort: string;
  /** replace what /metrics serves */
  set(text: string): void;
  /** how many times /metrics was fetched */
  scrapes(): number;
  close(): Promise<void>;
}

export async function startExpositionServer(text: string): Promise<ExpositionServer> {
  let body = text;
  let scrapes = 0;
  const server: Server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    scrapes++;
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    hostPort: `127.0.0.1:${port}`,
    set: (t) => void (body = t),
    scrapes: () => scrapes,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
