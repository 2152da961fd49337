/**
 * A loopback HTTPS front for Pebble: the ACME features Debian's Pebble 2.4 lacks, and faults, without touching
 * the CA that really issues.
 *
 * - Every request is passed to Pebble with the client's Host header kept. Pebble 2.4 builds every URL it returns
 *   (directory, Location, Link, order and authorization bodies) from the request's Host, and checks a JWS's `url`
 *   header against `https://<Host><path>`; so with the Host kept, the client's signatures stay valid and Pebble's
 *   URLs already name the front. Any Pebble origin that still shows up in a body or a Location/Link header is
 *   rewritten to the front's, for safety.
 * - The directory gains `renewalInfo` (RFC 9773, ACME Renewal Information) and `meta.profiles` (each switchable).
 * - `GET <renewalInfo>/<certID>` answers a suggested window: one set per certificate by `setWindow`, otherwise a
 *   default for certificates this front saw Pebble issue (from ⅔ to ¾ of the lifetime). Retry-After is configurable.
 * - newOrder payloads (the JWS payload is base64url JSON) are decoded and their `profile` and `replaces` recorded.
 *   An unknown profile is answered `invalidProfile` by the front, as a CA that offers profiles does. Otherwise the
 *   JWS goes to Pebble unchanged: re-signing is impossible without the account key, and Pebble 2.4 decodes the
 *   payload with Go's encoding/json, which ignores fields it does not know (`profile`, `replaces`); the integration
 *   test test/integration/acme-front.test.ts proves Pebble issues such an order.
 * - Every request is logged (method, path, kind, status, fault, profile, replaces).
 * - `hook(fn)`: fn sees {method, path, kind, payload} and may answer a fault before Pebble sees the request, or
 *   after Pebble answered (the CA acted; the client sees the fault), or hang the request until the client gives up
 *   or the front closes.
 */
import { X509Certificate } from "node:crypto";
import { Agent as HttpsAgent, createServer, request as httpsRequest, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { TestPki } from "./pki.js";

export type AcmeRequestKind =
  | "directory"
  | "newNonce"
  | "newAccount"
  | "newOrder"
  | "authz"
  | "challenge"
  | "finalize"
  | "order"
  | "certificate"
  | "renewalInfo"
  | "account"
  | "other";

export interface FrontRequest {
  method: string;
  /** path and query as the client sent it */
  path: string;
  kind: AcmeRequestKind;
  /** the decoded JWS payload of a POST ("" for POST-as-GET), undefined for GET/HEAD */
  payload?: unknown;
}

/** A fault the hook answers with. `when: "after"` lets Pebble act first; the client sees only the fault. */
export type FrontFault =
  | { status: number; headers?: Record<string, string>; body?: unknown; when?: "before" | "after" }
  | { hang: true; when?: "before" | "after" };

export type FrontHook = (req: FrontRequest) => FrontFault | undefined;

export interface FrontLogEntry {
  method: string;
  path: string;
  kind: AcmeRequestKind;
  status: number | "hung";
  /** set when the hook answered */
  fault?: "before" | "after";
  /** newOrder only */
  profile?: string;
  replaces?: string;
  identifiers?: string[];
}

export interface RenewalWindow {
  start: Date;
  end: Date;
  /** the Retry-After header of the answer, seconds (default 21600, six hours, as Let's Encrypt) */
  retryAfterSeconds?: number;
  explanationURL?: string;
}

export interface AcmeFrontOptions {
  /** Pebble's directory URL (https://127.0.0.1:<port>/dir) */
  upstreamDirectoryUrl: string;
  /** serves pki's server certificate; trusts pki's CA toward Pebble */
  pki: Pick<TestPki, "certPem" | "keyPem" | "caPem">;
  /** add renewalInfo to the directory (default true) */
  ari?: boolean;
  /** meta.profiles: name -> description (default classic, tlsserver, shortlived); null: no profiles */
  profiles?: Record<string, string> | null;
}

export interface IssuedByFront {
  certId: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  names: string[];
}

export interface AcmeFront {
  /** https://127.0.0.1:<port>/dir */
  directoryUrl: string;
  origin: string;
  /** the renewalInfo base URL (also when ARI is switched off) */
  renewalInfoUrl: string;
  /** every request so far, oldest first */
  log(): FrontLogEntry[];
  /** newOrder entries only */
  orders(): FrontLogEntry[];
  /** certificates this front saw Pebble hand out, by certID */
  issued(): IssuedByFront[];
  /** install a hook (several run in order; the first fault wins); returns the function that removes it */
  hook(fn: FrontHook): () => void;
  /** the window answered for a certID (see certIdOf); undefined: the default again */
  setWindow(certId: string, window: RenewalWindow | undefined): void;
  setAri(on: boolean): void;
  setProfiles(profiles: Record<string, string> | null): void;
  /** TLS connections accepted so far (keep-alive shows as few connections for many requests) */
  connections(): number;
  /** back to the start: no hooks, no windows, options as given, and (unless keepLog) an empty log */
  reset(opts?: { keepLog?: boolean }): void;
  close(): Promise<void>;
}

export const DEFAULT_PROFILES: Record<string, string> = {
  classic: "the 90-day certificates Let's Encrypt has always issued",
  tlsserver: "45-day certificates for TLS servers",
  shortlived: "160-hour certificates",
};

const RENEWAL_INFO_PATH = "/renewal-info";
const DEFAULT_RETRY_AFTER_SECONDS = 21_600;
const MAX_BODY = 1024 * 1024;

/** Pebble 2.4's paths, first segment -> kind. */
const PEBBLE_KINDS: Record<string, AcmeRequestKind> = {
  dir: "directory",
  "nonce-plz": "newNonce",
  "sign-me-up": "newAccount",
  "order-plz": "newOrder",
  authZ: "authz",
  chalZ: "challenge",
  "finalize-order": "finalize",
  "my-order": "order",
  certZ: "certificate",
  "my-account": "account",
};

export function kindOf(path: string): AcmeRequestKind {
  const first = path.replace(/^\//, "").split(/[/?]/)[0] ?? "";
  if (`/${first}` === RENEWAL_INFO_PATH) return "renewalInfo";
  return PEBBLE_KINDS[first] ?? "other";
}

const b64url = (b: Buffer) => b.toString("base64url");

/**
 * RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial number DER content bytes). Computed here
 * on its own (not imported from src/) so the front checks amlcert's computation rather than repeating it.
 */
export function frontCertIdOf(certPem: string): string {
  const cert = new X509Certificate(certPem);
  const der = cert.raw;
  // the AKI extension: OID 2.5.29.35 = 06 03 55 1d 23, then (critical?) OCTET STRING { SEQUENCE { [0] keyIdentifier } }
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);
  const at = der.indexOf(oid);
  if (at < 0) throw new Error("the certificate has no Authority Key Identifier");
  let i = at + oid.length;
  if (der[i] === 0x01) i += 3; // BOOLEAN critical
  if (der[i] !== 0x04) throw new Error("unexpected AKI encoding");
  i += 2; // OCTET STRING (short length)
  if (der[i] !== 0x30) throw new Error("unexpected AKI encoding");
  i += 2; // SEQUENCE (short length)
  if (der[i] !== 0x80) throw new Error("the AKI has no keyIdentifier");
  const len = der[i + 1]!;
  const keyId = der.subarray(i + 2, i + 2 + len);
  let serialHex = cert.serialNumber;
  if (serialHex.length % 2 === 1) serialHex = `0${serialHex}`;
  let serial = Buffer.from(serialHex, "hex");
  // DER INTEGER content: positive, so a leading 0x00 when the high bit is set
  if ((serial[0]! & 0x80) !== 0) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${b64url(keyId)}.${b64url(serial)}`;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy(new Error("request body too large"));
      else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function jwsPayload(body: Buffer): unknown {
  try {
    const jws = JSON.parse(body.toString("utf8")) as { payload?: unknown };
    if (typeof jws.payload !== "string") return undefined;
    if (jws.payload === "") return "";
    return JSON.parse(Buffer.from(jws.payload, "base64url").toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

interface Upstream {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

export async function startAcmeFront(opts: AcmeFrontOptions): Promise<AcmeFront> {
  const upstream = new URL(opts.upstreamDirectoryUrl);
  const upstreamOrigin = upstream.origin;
  const agent = new HttpsAgent({ ca: opts.pki.caPem, keepAlive: true, maxSockets: 16 });
  let ari = opts.ari ?? true;
  let profiles = opts.profiles === undefined ? DEFAULT_PROFILES : opts.profiles;
  let hooks: FrontHook[] = [];
  let log: FrontLogEntry[] = [];
  const windows = new Map<string, RenewalWindow>();
  const issued = new Map<string, IssuedByFront>();
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  let accepted = 0;
  let origin = "";

  const forward = (req: IncomingMessage, body: Buffer): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const headers = { ...req.headers };
      delete headers["connection"];
      delete headers["keep-alive"];
      const r = httpsRequest(
        `${upstreamOrigin}${req.url ?? "/"}`,
        { method: req.method, headers, agent, timeout: 30_000, servername: upstream.hostname === "127.0.0.1" ? undefined : upstream.hostname },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 502, headers: res.headers as Record<string, string | string[]>, body: Buffer.concat(chunks) }));
          res.on("error", reject);
        },
      );
      r.on("timeout", () => r.destroy(new Error("Pebble did not answer within 30 s")));
      r.on("error", reject);
      r.end(body.length > 0 ? body : undefined);
    });

  const rewrite = (text: string) => text.split(upstreamOrigin).join(origin);

  function send(res: ServerResponse, status: number, headers: Record<string, string | string[]>, body: Buffer | string): void {
    const buf = typeof body === "string" ? Buffer.from(body) : body;
    const h: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(headers)) {
      if (["content-length", "connection", "keep-alive", "transfer-encoding"].includes(k.toLowerCase())) continue;
      h[k] = v;
    }
    h["content-length"] = String(buf.length);
    res.writeHead(status, h);
    res.end(buf);
  }

  function sendFault(res: ServerResponse, fault: Exclude<FrontFault, { hang: true }>, nonce?: string): void {
    const body = fault.body === undefined ? "" : typeof fault.body === "string" ? fault.body : JSON.stringify(fault.body);
    const headers: Record<string, string> = {
      ...(fault.body !== undefined && typeof fault.body !== "string" ? { "content-type": "application/problem+json" } : {}),
      // a client needs a fresh nonce to go on after an error answer, as a CA gives one
      ...(nonce ? { "replay-nonce": nonce } : {}),
      ...(fault.headers ?? {}),
    };
    send(res, fault.status, headers, body);
  }

  /** A nonce for a fault answer: Pebble's newNonce, so the client's next signed request is good. */
  async function freshNonce(): Promise<string | undefined> {
    try {
      const r = await new Promise<Upstream>((resolve, reject) => {
        const q = httpsRequest(`${upstreamOrigin}/nonce-plz`, { method: "HEAD", agent, timeout: 10_000 }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: Buffer.alloc(0) }));
        });
        q.on("timeout", () => q.destroy(new Error("timeout")));
        q.on("error", reject);
        q.end();
      });
      const n = r.headers["replay-nonce"];
      return typeof n === "string" ? n : undefined;
    } catch {
      return undefined;
    }
  }

  function renewalInfo(req: IncomingMessage, res: ServerResponse, path: string): number {
    const certId = decodeURIComponent(path.slice(RENEWAL_INFO_PATH.length + 1).split("?")[0] ?? "");
    if (!ari) {
      send(res, 404, { "content-type": "application/problem+json" }, JSON.stringify({ type: "urn:ietf:params:acme:error:malformed", detail: "no renewalInfo here", status: 404 }));
      return 404;
    }
    if (req.method !== "GET") {
      send(res, 405, { allow: "GET" }, "");
      return 405;
    }
    let window = windows.get(certId);
    if (window === undefined) {
      const cert = issued.get(certId);
      if (cert !== undefined) {
        const life = cert.notAfter.getTime() - cert.notBefore.getTime();
        window = { start: new Date(cert.notBefore.getTime() + Math.floor((life * 2) / 3)), end: new Date(cert.notBefore.getTime() + Math.floor((life * 3) / 4)) };
      }
    }
    if (window === undefined) {
      send(res, 404, { "content-type": "application/problem+json" }, JSON.stringify({ type: "urn:ietf:params:acme:error:malformed", detail: `no certificate ${certId}`, status: 404 }));
      return 404;
    }
    const body = {
      suggestedWindow: { start: window.start.toISOString(), end: window.end.toISOString() },
      ...(window.explanationURL ? { explanationURL: window.explanationURL } : {}),
    };
    send(res, 200, { "content-type": "application/json", "retry-after": String(window.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS) }, JSON.stringify(body));
    return 200;
  }

  function noteIssued(body: Buffer): void {
    const pems = body.toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    if (pems.length === 0) return;
    try {
      const leaf = new X509Certificate(pems[0]!);
      const certId = frontCertIdOf(pems[0]!);
      issued.set(certId, {
        certId,
        serial: leaf.serialNumber,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
        names: (leaf.subjectAltName ?? "").split(", ").map((s) => s.replace(/^DNS:/, "")),
      });
    } catch {
      // not a certificate we can read: nothing to remember
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? "/";
    const method = req.method ?? "GET";
    const kind = kindOf(path);
    const body = await readBody(req);
    const payload = method === "POST" ? jwsPayload(body) : undefined;
    const entry: FrontLogEntry = { method, path, kind, status: 0 };
    log.push(entry);
    if (kind === "newOrder" && typeof payload === "object" && payload !== null) {
      const p = payload as { profile?: unknown; replaces?: unknown; identifiers?: { value?: unknown }[] };
      if (typeof p.profile === "string") entry.profile = p.profile;
      if (typeof p.replaces === "string") entry.replaces = p.replaces;
      if (Array.isArray(p.identifiers)) entry.identifiers = p.identifiers.map((i) => String(i?.value));
    }

    let fault: FrontFault | undefined;
    for (const h of hooks) {
      fault = h({ method, path, kind, ...(payload === undefined ? {} : { payload }) });
      if (fault !== undefined) break;
    }
    const hang = () => {
      entry.status = "hung";
      hung.add(res);
      res.on("close", () => hung.delete(res));
    };
    if (fault !== undefined && (fault.when ?? "before") === "before") {
      entry.fault = "before";
      if ("hang" in fault) return hang();
      entry.status = fault.status;
      return sendFault(res, fault, await freshNonce());
    }

    if (kind === "renewalInfo") {
      entry.status = renewalInfo(req, res, path);
      return;
    }
    if (kind === "newOrder" && entry.profile !== undefined && (profiles === null || !(entry.profile in profiles))) {
      entry.status = 400;
      return sendFault(
        res,
        {
          status: 400,
          body: { type: "urn:ietf:params:acme:error:invalidProfile", detail: `profile "${entry.profile}" is not offered: ${Object.keys(profiles ?? {}).join(", ") || "none"}`, status: 400 },
        },
        await freshNonce(),
      );
    }

    const up = await forward(req, body);
    if (fault !== undefined) {
      entry.fault = "after";
      if ("hang" in fault) return hang();
      entry.status = fault.status;
      const n = up.headers["replay-nonce"];
      return sendFault(res, fault, typeof n === "string" ? n : await freshNonce());
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      headers[k] = k === "location" || k === "link" ? (Array.isArray(v) ? v.map(rewrite) : rewrite(String(v))) : v;
    }
    let out = up.body;
    const type = String(up.headers["content-type"] ?? "");
    if (/json/.test(type)) {
      let text = rewrite(out.toString("utf8"));
      if (kind === "directory" && up.status === 200) {
        const dir = JSON.parse(text) as Record<string, unknown> & { meta?: Record<string, unknown> };
        if (ari) dir["renewalInfo"] = `${origin}${RENEWAL_INFO_PATH}`;
        if (profiles !== null) dir.meta = { ...(dir.meta ?? {}), profiles: { ...profiles } };
        text = JSON.stringify(dir);
      }
      out = Buffer.from(text);
    }
    if (kind === "certificate" && up.status === 200) noteIssued(out);
    entry.status = up.status;
    send(res, up.status, headers, out);
  }

  const server: Server = createServer({ cert: opts.pki.certPem, key: opts.pki.keyPem, keepAlive: true }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 502, { "content-type": "text/plain" }, `acme front: ${err instanceof Error ? err.message : String(err)}`);
      else res.destroy();
    });
  });
  server.on("secureConnection", (s: Socket) => {
    accepted++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  origin = `https://127.0.0.1:${port}`;
  const dirPath = upstream.pathname;

  return {
    directoryUrl: `${origin}${dirPath}`,
    origin,
    renewalInfoUrl: `${origin}${RENEWAL_INFO_PATH}`,
    log: () => log.map((e) => ({ ...e })),
    orders: () => log.filter((e) => e.kind === "newOrder").map((e) => ({ ...e })),
    issued: () => [...issued.values()].map((c) => ({ ...c })),
    hook(fn) {
      hooks.push(fn);
      return () => {
        hooks = hooks.filter((h) => h !== fn);
      };
    },
    setWindow(certId, window) {
      if (window === undefined) windows.delete(certId);
      else windows.set(certId, window);
    },
    setAri: (on) => void (ari = on),
    setProfiles: (p) => void (profiles = p),
    connections: () => accepted,
    reset(o) {
      hooks = [];
      if (!o?.keepLog) log = [];
      windows.clear();
      ari = opts.ari ?? true;
      profiles = opts.profiles === undefined ? DEFAULT_PROFILES : opts.profiles;
      for (const r of hung) r.destroy();
      hung.clear();
    },
    async close() {
      for (const r of hung) r.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      agent.destroy();
      await closed;
    },
  };
}
