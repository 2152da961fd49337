/**
 * A recording front for the ACME directory: every client is configured with this URL as its directory, so the
 * first ACME request of a process (the directory GET) arrives here, and the bench notes when, on its own clock
 * (the same clock that timed the spawn). It passes the request to Pebble and the answer back; the directory's
 * links point straight at Pebble, so only that first request takes the extra loopback hop (about a millisecond,
 * the same for every client).
 */
import { readFileSync } from "node:fs";
import { createServer, request } from "node:https";
import type { AddressInfo } from "node:net";

export interface FirstRequest {
  directoryUrl: string;
  /** forget earlier requests; the next one counts */
  mark(): void;
  /** performance.now() of the first request since mark(), if any */
  first(): number | undefined;
  close(): Promise<void>;
}

export async function startFirstRequestFront(opts: { target: string; certFile: string; keyFile: string; caPem: string }): Promise<FirstRequest> {
  const target = new URL(opts.target);
  let first: number | undefined;
  const server = createServer({ cert: readFileSync(opts.certFile), key: readFileSync(opts.keyFile) }, (req, res) => {
    first ??= performance.now();
    const up = request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host }, ca: opts.caPem },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", (err) => res.writeHead(502).end(String(err)));
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    directoryUrl: `https://127.0.0.1:${port}${target.pathname}`,
    mark: () => (first = undefined),
    first: () => first,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
