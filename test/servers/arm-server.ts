/**
 * A loopback HTTPS stand-in for Azure Resource Manager, driven by the real @azure/arm-dns and
 * @azure/arm-kubernetesconfiguration clients (only `endpoint` and `credentialScopes` differ from production).
 *
 * Every request passes, in order: authentication (`Authorization: Bearer`, checked with the Entra stand-in: 401 +
 * WWW-Authenticate otherwise), the api-version check, injected faults, authorization (arm-rbac.ts: deny rules and
 * role assignments from the shipped custom role files), then the resource provider: Azure DNS (arm-dns.ts) or
 * Microsoft.KubernetesConfiguration/extensions (arm-extensions.ts). The request log never holds a credential.
 */
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createDnsRoutes } from "./arm-dns.js";
import { createExtensionRoutes, type ExtensionKnobs, type ExtensionRecord, type ExtensionRef, type ExtensionSeed, type LroSettings } from "./arm-extensions.js";
import { ArmHttpError, readBody, sendJson, type ArmRequestRecord } from "./arm-http.js";
import { createArmRbac, type DenyRule, type RoleAssignment } from "./arm-rbac.js";
import { createPermissionsRoutes } from "./arm-permissions.js";
import type { VerifiedToken } from "./entra-server.js";
import type { TestPki } from "./pki.js";
import type { ZoneStore } from "./zone-store.js";

export type { ArmRequestRecord } from "./arm-http.js";
export type { DenyRule, RoleAssignment, RoleDefinitionFile } from "./arm-rbac.js";
export type { ClusterType, ExtensionRecord, ExtensionRef, ExtensionSeed, LroSettings } from "./arm-extensions.js";

export interface ArmFaultSpec {
  method?: string;
  pathIncludes?: string;
  status: number;
  /** how many matching requests fail (default 1; Infinity for all) */
  times?: number;
  retryAfterSeconds?: number;
  code?: string;
  message?: string;
  /** hold each matching request unanswered (`status` is not sent) until `release()` or close: a hung ARM. A request
   * released after its client gave up is dropped; one whose client still waits is then served normally */
  hang?: boolean;
}

export interface ArmFaultHandle {
  /** how many requests this fault has failed (or held) so far */
  readonly hits: number;
  /** let the requests a `hang` fault holds go on (and stop holding new ones) */
  release(): void;
  remove(): void;
}

export interface ArmFaults {
  add(spec: ArmFaultSpec): ArmFaultHandle;
  clear(): void;
}

export interface ArmServerOptions {
  pki: Pick<TestPki, "certPem" | "keyPem">;
  entra: { url: string; verifyAccessToken(token: string): (Pick<VerifiedToken, "oid" | "appid" | "tid"> & { aud?: string }) | undefined };
  zones: ZoneStore;
  /** token audiences accepted; default: this server's URL and the public ARM audiences */
  audiences?: string[];
}

export interface ArmServer {
  url: string;
  zones: ZoneStore;
  faults: ArmFaults;
  /** refuse an action (403 AuthorizationFailed) */
  deny(rule: DenyRule): void;
  /** allow `principalOid` only the Actions of this custom role file at `scope` (and below) */
  assignRole(assignment: RoleAssignment): void;
  /** drop every deny rule and role assignment */
  clearAuthorization(): void;
  /** outcome of the next extension update operations */
  lro: LroSettings;
  /** how GET shows configurationProtectedSettings: keys with empty values (default) or omitted */
  protectedSettingsView: "keys" | "omit";
  /** delay before every response */
  latencyMs: number;
  /** called after authentication and authorization, before the request is handled (e.g. to play a concurrent writer) */
  beforeHandle?: (request: ArmRequestRecord) => void | Promise<void>;
  addExtension(seed: ExtensionSeed): ExtensionRecord;
  /** a snapshot, including protected values (for assertions) */
  getExtension(ref: ExtensionRef): ExtensionRecord | undefined;
  /** called (and awaited before ARM reports Succeeded) when an extension update succeeds; returns an unsubscribe function */
  onExtensionUpdated(cb: (ext: ExtensionRecord) => void | Promise<void>): () => void;
  /** finish every running extension operation now with its outcome (for a harness that stops polling) */
  settleOperations(): Promise<void>;
  readonly requests: ArmRequestRecord[];
  close(): Promise<void>;
}

const DEFAULT_FAULT_CODE: Record<number, string> = {
  400: "BadRequest",
  409: "Conflict",
  412: "PreconditionFailed",
  429: "TooManyRequests",
  500: "InternalServerError",
  502: "BadGateway",
  503: "ServiceUnavailable",
  504: "GatewayTimeout",
};

interface Fault extends ArmFaultSpec {
  remaining: number;
  hits: number;
  /** resolves when a hang fault is released */
  released?: Promise<void>;
  release?: () => void;
}

export async function startArmServer(opts: ArmServerOptions): Promise<ArmServer> {
  const { zones, entra } = opts;
  const requests: ArmRequestRecord[] = [];
  const faults: Fault[] = [];
  /** faults that may hold requests, released on clear() and close() */
  const holds: Fault[] = [];
  const rbac = createArmRbac();
  const knobs: ExtensionKnobs = {
    lro: { outcome: "Succeeded", pollsBeforeDone: 1, error: { code: "ExtensionOperationFailed", message: "The extension operation failed." } },
    protectedSettingsView: "keys",
  };
  const dns = createDnsRoutes(zones);
  const extensions = createExtensionRoutes(knobs);
  const permissions = createPermissionsRoutes(rbac);
  let url = "";
  let audiences: string[] = [];

  function authenticate(req: IncomingMessage) {
    const challenge = (description: string) => ({
      "www-authenticate": `Bearer authorization_uri="${entra.url}/", error="invalid_token", error_description="${description}"`,
    });
    const authz = req.headers.authorization;
    if (!authz || !/^Bearer\s+\S+$/i.test(authz)) {
      throw new ArmHttpError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.", challenge("The authentication failed because of missing 'Authorization' header."));
    }
    const principal = entra.verifyAccessToken(authz.replace(/^Bearer\s+/i, ""));
    if (!principal) throw new ArmHttpError(401, "InvalidAuthenticationToken", "The access token is invalid.", challenge("The access token is invalid."));
    const aud = principal.aud;
    if (aud !== undefined && !audiences.some((a) => a.replace(/\/$/, "") === aud.replace(/\/$/, ""))) {
      throw new ArmHttpError(
        401,
        "InvalidAuthenticationTokenAudience",
        `The access token has been obtained for wrong audience or resource '${aud}'. It should exactly match with one of the allowed audiences ${audiences.map((a) => `'${a}'`).join(",")}.`,
        challenge("The access token has an invalid audience."),
      );
    }
    return principal;
  }

  function injectedFault(method: string, path: string): ArmHttpError | Fault | undefined {
    const f = faults.find(
      (x) => x.remaining > 0 && (!x.method || x.method.toUpperCase() === method) && (!x.pathIncludes || path.toLowerCase().includes(x.pathIncludes.toLowerCase())),
    );
    if (!f) return undefined;
    f.remaining -= 1;
    f.hits += 1;
    if (f.hang) return f;
    const message =
      f.message ??
      (f.status === 429
        ? "The request is being throttled as the limit has been reached for operation type. For more information, refer to - https://aka.ms/srpthrottlinglimits"
        : `Injected failure (${f.status}).`);
    return new ArmHttpError(f.status, f.code ?? DEFAULT_FAULT_CODE[f.status] ?? "Error", message, f.retryAfterSeconds !== undefined ? { "retry-after": String(f.retryAfterSeconds) } : {});
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", url);
    const method = (req.method ?? "GET").toUpperCase();
    const path = u.pathname;
    const record: ArmRequestRecord = { method, path, status: 0 };
    const apiVersion = u.searchParams.get("api-version") ?? undefined;
    if (apiVersion) record.apiVersion = apiVersion;
    const { "if-match": ifMatch, "if-none-match": ifNoneMatch } = req.headers;
    if (typeof ifMatch === "string") record.ifMatch = ifMatch;
    if (typeof ifNoneMatch === "string") record.ifNoneMatch = ifNoneMatch;
    requests.push(record);
    // every answer, from any module, lands in the log with its status
    const writeHead = res.writeHead.bind(res) as (status: number, ...rest: unknown[]) => ServerResponse;
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      record.status = status;
      return writeHead(status, ...rest);
    }) as typeof res.writeHead;

    const raw = await readBody(req);
    if (server.latencyMs > 0) await new Promise((r) => setTimeout(r, server.latencyMs));
    try {
      const principal = authenticate(req);
      record.principalOid = principal.oid;
      if (!apiVersion) {
        throw new ArmHttpError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.");
      }
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw);
        } catch {
          throw new ArmHttpError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.");
        }
        record.body = body;
      }
      const fault = injectedFault(method, path);
      if (fault instanceof ArmHttpError) throw fault;
      if (fault) {
        await fault.released;
        // the client gave up (its timeout) while the request was held: nobody is left to answer
        if (res.destroyed || req.socket.destroyed) {
          res.destroy();
          return;
        }
      }
      const route = dns.route(method, path) ?? extensions.route(method, path) ?? permissions.route(method, path);
      if (!route) throw new ArmHttpError(404, "NotFound", `No HTTP resource was found that matches the request URI '${url}${path}'.`);
      record.action = route.action;
      if (!route.anyPrincipal) rbac.authorize(principal, route.action, route.scope);
      if (server.beforeHandle) await server.beforeHandle(record);
      await route.handle({ req, res, method, apiVersion, body, record, baseUrl: url });
    } catch (err) {
      if (err instanceof ArmHttpError) sendJson(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
      else if (!res.headersSent) sendJson(res, 500, { error: { code: "InternalServerError", message: `stand-in error: ${String(err)}` } });
      else res.destroy();
    }
  }

  const http: Server = createServer({ cert: opts.pki.certPem, key: opts.pki.keyPem }, (req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", () => resolve());
  });
  url = `https://127.0.0.1:${(http.address() as AddressInfo).port}`;
  audiences = opts.audiences ?? [url, "https://management.azure.com", "https://management.azure.com/", "https://management.core.windows.net/", "https://management.core.windows.net"];

  const server: ArmServer = {
    url,
    zones,
    latencyMs: 0,
    get lro() {
      return knobs.lro;
    },
    set lro(value) {
      knobs.lro = value;
    },
    get protectedSettingsView() {
      return knobs.protectedSettingsView;
    },
    set protectedSettingsView(value) {
      knobs.protectedSettingsView = value;
    },
    faults: {
      add(spec) {
        const f: Fault = { ...spec, remaining: spec.times ?? 1, hits: 0 };
        if (spec.hang) f.released = new Promise<void>((resolve) => (f.release = resolve));
        faults.push(f);
        holds.push(f);
        return {
          get hits() {
            return f.hits;
          },
          release() {
            f.remaining = 0;
            f.release?.();
          },
          remove() {
            const i = faults.indexOf(f);
            if (i >= 0) faults.splice(i, 1);
          },
        };
      },
      clear() {
        faults.length = 0;
        for (const f of holds.splice(0)) f.release?.();
      },
    },
    deny: (rule) => rbac.deny(rule),
    assignRole: (assignment) => rbac.assignRole(assignment),
    clearAuthorization: () => rbac.clear(),
    addExtension: (seed) => extensions.addExtension(seed),
    getExtension: (ref) => extensions.getExtension(ref),
    onExtensionUpdated: (cb) => extensions.onExtensionUpdated(cb),
    settleOperations: () => extensions.settleOperations(),
    requests,
    close() {
      for (const f of holds.splice(0)) f.release?.();
      return new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
  return server;
}
