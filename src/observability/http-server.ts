/**
 * The daemon's one HTTP port (node:http, no framework):
 *
 *   GET /metrics   the metrics registry in the Prometheus text format
 *   GET /healthz   200 when `health()` says ok, else 503; JSON body {"ok":..., "detail":{...}} (liveness)
 *   GET /readyz    the same with `ready()` (readiness)
 *
 * HEAD answers like GET without a body; other methods get 405, other paths 404. `close()` stops listening and ends
 * every open connection, the keep-alive ones a scraper holds included, so a shutdown never waits on a client.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "./metrics.js";

export interface Probe {
  ok: boolean;
  detail: Record<string, unknown>;
}

export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  metrics: Metrics;
  health: () => Probe;
  ready: () => Probe;
}

export interface RunningHttpServer {
  /** the port actually bound */
  port: number;
  close(): Promise<void>;
}

const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";

function send(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  const buf = Buffer.from(body, "utf8");
  res.writeHead(status, { "Content-Type": contentType, "Content-Length": String(buf.length), "Cache-Control": "no-store", ...extra });
  res.end(req.method === "HEAD" ? undefined : buf);
}

function probeResponse(req: IncomingMessage, res: ServerResponse, probe: () => Probe): void {
  let result: Probe;
  try {
    result = probe();
  } catch (err) {
    result = { ok: false, detail: { error: err instanceof Error ? err.message : String(err) } };
  }
  send(req, res, result.ok ? 200 : 503, JSON_TYPE, `${JSON.stringify({ ok: result.ok, detail: result.detail })}\n`);
}

export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>> = {
    "/metrics": async (req, res) => {
      let text: string;
      try {
        text = await opts.metrics.text();
      } catch (err) {
        send(req, res, 500, TEXT_TYPE, `collecting the metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        return;
      }
      send(req, res, 200, opts.metrics.registry.contentType, text);
    },
    "/healthz": (req, res) => probeResponse(req, res, opts.health),
    "/readyz": (req, res) => probeResponse(req, res, opts.ready),
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (route === undefined) {
      send(req, res, 404, TEXT_TYPE, "not found: try /metrics, /healthz or /readyz\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(req, res, 405, TEXT_TYPE, "method not allowed\n", { Allow: "GET, HEAD" });
      return;
    }
    Promise.resolve(route(req, res)).catch((err: unknown) => {
      if (!res.headersSent) send(req, res, 500, TEXT_TYPE, `${err instanceof Error ? err.message : String(err)}\n`);
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(opts.port, opts.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
