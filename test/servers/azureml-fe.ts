/**
 * The azureml-fe stand-in: a loopback TLS server that speaks TLS 1.2 only (like the Azure ML inference router)
 * and answers every request with `200 azureml-fe`. It serves the certificate/key returned by `load()` (the harness
 * reads the secret named by the extension's `sslSecret`) and, like the real extension, picks up a changed secret
 * only when the extension is updated: the harness calls `reload()` then, not when the secret changes.
 *
 * Knobs:
 * - `reloadDelayMs`: pods rolling; for this long after `reload()` the old certificate is still served.
 * - `freeze()`: keep serving the old certificate even on reload (protected `scoringFe.sslCert` wins over sslSecret).
 */
import { X509Certificate } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import { createServer, createSecureContext, type TLSSocket } from "node:tls";

export interface ServedCertificate {
  certPem: string;
  keyPem: string;
}

export interface AzuremlFeOptions {
  /** what the secret holds right now (undefined: no secret / no data) */
  load(): Promise<ServedCertificate | undefined>;
  /** how long the old certificate stays served after reload() */
  reloadDelayMs?: number;
}

export interface AzuremlFe {
  host: string;
  port: number;
  /** The extension was updated: read the secret again and serve it (after reloadDelayMs). Never rejects; see lastReloadError. */
  reload(): Promise<void>;
  /** Serve the current certificate forever, whatever reload() finds. */
  freeze(): void;
  unfreeze(): void;
  /** Serial (upper-case hex, as X509Certificate.serialNumber) of the certificate served to new connections. */
  servedSerial(): string | undefined;
  /** How many reloads changed the served certificate. */
  rollouts(): number;
  /** Why the last reload kept the old certificate (undefined when it did not fail). */
  lastReloadError(): string | undefined;
  close(): Promise<void>;
}

const TLS12 = { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" } as const;
const REQUEST_TIMEOUT_MS = 5_000;
const BODY = "azureml-fe";

function serialOf(certPem: string): string {
  return new X509Certificate(certPem).serialNumber.toUpperCase();
}

export async function startAzuremlFe(opts: AzuremlFeOptions): Promise<AzuremlFe> {
  const reloadDelayMs = opts.reloadDelayMs ?? 0;
  let served: string | undefined;
  let frozen = false;
  let rolloutCount = 0;
  let reloadError: string | undefined;
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const server = createServer({ ...TLS12 }, (socket: TLSSocket) => answer(socket));
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  // handshake failures (a TLS 1.3-only client, an untrusted probe) are the client's business
  server.on("tlsClientError", () => undefined);

  function answer(socket: TLSSocket): void {
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) {
        socket.end(
          `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
        );
      } else if (head.length > 16_384) {
        socket.destroy();
      }
    });
  }

  /** Build the context first, so a bad pair never replaces a good one. */
  function install(pair: ServedCertificate): void {
    const serial = serialOf(pair.certPem);
    server.setSecureContext({ cert: pair.certPem, key: pair.keyPem, ...TLS12 });
    if (served !== undefined && served !== serial) rolloutCount++;
    served = serial;
  }

  async function loadChecked(): Promise<ServedCertificate> {
    const pair = await opts.load();
    if (pair === undefined) throw new Error("the secret holds no cert.pem/key.pem");
    createSecureContext({ cert: pair.certPem, key: pair.keyPem }); // throws on a mismatched or broken pair
    return pair;
  }

  try {
    install(await loadChecked());
  } catch (err) {
    // like azureml-fe without a usable secret: TLS handshakes fail until a reload finds one
    reloadError = err instanceof Error ? err.message : String(err);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    host: "127.0.0.1",
    port,
    async reload() {
      if (closed) return;
      let pair: ServedCertificate;
      try {
        pair = await loadChecked();
      } catch (err) {
        reloadError = err instanceof Error ? err.message : String(err);
        return;
      }
      reloadError = undefined;
      if (frozen) return;
      const apply = () => {
        if (closed || frozen) return;
        try {
          install(pair);
        } catch (err) {
          reloadError = err instanceof Error ? err.message : String(err);
        }
      };
      if (reloadDelayMs <= 0) {
        apply();
        return;
      }
      const t = setTimeout(() => {
        timers.delete(t);
        apply();
      }, reloadDelayMs);
      timers.add(t);
    },
    freeze() {
      frozen = true;
    },
    unfreeze() {
      frozen = false;
    },
    servedSerial: () => served,
    rollouts: () => rolloutCount,
    lastReloadError: () => reloadError,
    close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
  };
}
