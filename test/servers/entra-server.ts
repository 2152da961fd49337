/**
 * A loopback HTTPS stand-in for Microsoft Entra ID's token service, reached by the real @azure/identity (MSAL)
 * through `authorityHost` / AZURE_AUTHORITY_HOST. It serves the tenant's OpenID metadata, instance discovery, the
 * JWKS and the v2.0 token endpoint for the client-credentials grant with a client secret (service principal) or a
 * client assertion (workload identity federation). Access tokens are RS256 JWTs shaped like Entra's v1 app tokens
 * (aud, iss, tid, oid, appid, idtyp, exp, iat); the ARM stand-in checks them with `verifyAccessToken`.
 * Failures come back in Entra's AADSTS shape.
 */
import { generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestPki } from "./pki.js";

export interface EntraClient {
  clientId: string;
  /** object id of the service principal / managed identity (the `oid` claim) */
  objectId: string;
  secret?: string;
  /** the exact JWT a federated identity credential accepts (the projected service account token) */
  federatedAssertion?: string;
}

export interface VerifiedToken {
  oid: string;
  appid: string;
  tid: string;
  aud: string;
}

export interface EntraTokenRequest {
  tenant: string;
  clientId?: string;
  grantType?: string;
  scope?: string;
  /** "secret" | "assertion" | "none" – never the credential itself */
  credentialKind: "secret" | "assertion" | "none";
  status: number;
  /** AADSTS error code when the request failed */
  error?: string;
}

export interface EntraFault {
  status: number;
  /** how many token requests fail (default 1; Infinity for all) */
  times?: number;
  retryAfterSeconds?: number;
}

export interface EntraServer {
  url: string;
  tenantId: string;
  registerClient(client: EntraClient): void;
  verifyAccessToken(token: string): VerifiedToken | undefined;
  /** number of HTTP requests served (metadata, discovery, keys and token) */
  readonly requests: number;
  /** token endpoint calls, for assertions (no secrets or assertions recorded) */
  readonly tokenRequests: EntraTokenRequest[];
  /** paths of every request, in order (to see what MSAL asked for) */
  readonly paths: string[];
  /** lifetime of issued access tokens (default 3600 s) */
  tokenLifetimeSeconds: number;
  /** make the next token request(s) fail with a 5xx/429 */
  failTokenRequests(fault: EntraFault): void;
  close(): Promise<void>;
}

export interface EntraServerOptions {
  pki: Pick<TestPki, "certPem" | "keyPem">;
  tenantId: string;
  now?: () => number;
}

const b64url = (buf: Buffer | string) => Buffer.from(buf).toString("base64url");

function decodeJwtPart(token: string, index: 0 | 1): Record<string, unknown> | undefined {
  const part = token.split(".")[index];
  if (!part) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return value && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function startEntraServer(opts: EntraServerOptions): Promise<EntraServer> {
  const now = opts.now ?? Date.now;
  const tenantId = opts.tenantId.toLowerCase();
  const clients = new Map<string, EntraClient>();
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = randomUUID();
  const tokenRequests: EntraTokenRequest[] = [];
  const paths: string[] = [];
  const faults: Array<{ status: number; remaining: number; retryAfterSeconds?: number }> = [];
  let requests = 0;
  let url = "";

  const issuerFor = (tenant: string) => `${url}/${tenant}/v2.0`;
  const accessTokenIssuer = () => `${url}/${tenantId}/`;

  function signJwt(payload: Record<string, unknown>, key: KeyObject): string {
    const header = { typ: "JWT", alg: "RS256", kid };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
    return `${input}.${b64url(sign("sha256", Buffer.from(input), key))}`;
  }

  function aadError(res: ServerResponse, status: number, error: string, code: number, description: string): void {
    const traceId = randomUUID();
    const correlationId = randomUUID();
    const timestamp = new Date(now()).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
    sendJson(res, status, {
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
      error_codes: [code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
      error_uri: `${url}/error?code=${code}`,
    });
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-store, no-cache",
      "x-ms-request-id": randomUUID(),
      ...headers,
    });
    res.end(text);
  }

  function openIdConfiguration(tenant: string) {
    const base = `${url}/${tenant}`;
    return {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
      jwks_uri: `${base}/discovery/v2.0/keys`,
      response_modes_supported: ["query", "fragment", "form_post"],
      subject_types_supported: ["pairwise"],
      id_token_signing_alg_values_supported: ["RS256"],
      response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      issuer: issuerFor(tenant),
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${url}/oidc/userinfo`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      claims_supported: ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
      kerberos_endpoint: `${base}/kerberos`,
      tenant_region_scope: null,
      cloud_instance_name: new URL(url).host,
      cloud_graph_host_name: new URL(url).host,
      msgraph_host: new URL(url).host,
      rbac_url: url,
    };
  }

  const knownTenant = (t: string) => t.toLowerCase() === tenantId || t === "organizations" || t === "common";

  async function token(req: IncomingMessage, res: ServerResponse, tenant: string): Promise<void> {
    const form = new URLSearchParams(await readBody(req));
    const clientId = form.get("client_id") ?? undefined;
    const grantType = form.get("grant_type") ?? undefined;
    const scope = form.get("scope") ?? undefined;
    const secret = form.get("client_secret");
    const assertion = form.get("client_assertion");
    const record: EntraTokenRequest = {
      tenant,
      clientId,
      grantType,
      scope,
      credentialKind: secret ? "secret" : assertion ? "assertion" : "none",
      status: 200,
    };
    tokenRequests.push(record);
    const fail = (status: number, error: string, code: number, description: string) => {
      record.status = status;
      record.error = `AADSTS${code}`;
      aadError(res, status, error, code, description);
    };

    const fault = faults[0];
    if (fault) {
      fault.remaining -= 1;
      if (fault.remaining <= 0) faults.shift();
      record.status = fault.status;
      record.error = "injected";
      const headers: Record<string, string> = fault.retryAfterSeconds !== undefined ? { "retry-after": String(fault.retryAfterSeconds) } : {};
      sendJson(res, fault.status, { error: "temporarily_unavailable", error_description: "AADSTS90033: A transient error has occurred. Please try again." }, headers);
      return;
    }

    if (tenant.toLowerCase() !== tenantId) {
      fail(400, "invalid_request", 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
      return;
    }
    if (grantType !== "client_credentials") {
      fail(400, "unsupported_grant_type", 70003, `The app requested an unsupported grant type '${grantType ?? ""}'.`);
      return;
    }
    if (!clientId) {
      fail(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.");
      return;
    }
    if (!scope || !/\/\.default$/.test(scope.split(" ")[0] ?? "")) {
      fail(400, "invalid_scope", 1002012, `The provided value for scope ${scope ?? ""} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
      return;
    }
    const client = clients.get(clientId.toLowerCase());
    if (!client) {
      fail(400, "unauthorized_client", 700016, `Application with identifier '${clientId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`);
      return;
    }
    let appidacr = "1";
    if (secret !== null) {
      if (client.secret === undefined || client.secret !== secret) {
        fail(401, "invalid_client", 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${client.clientId}'.`);
        return;
      }
    } else if (assertion !== null) {
      if (form.get("client_assertion_type") !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        fail(400, "invalid_request", 7000216, "'client_assertion_type' must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.");
        return;
      }
      const claims = decodeJwtPart(assertion, 1);
      if (!claims) {
        fail(400, "invalid_client", 50027, "JWT token is invalid or malformed.");
        return;
      }
      const exp = typeof claims.exp === "number" ? claims.exp : undefined;
      if (exp !== undefined && exp * 1000 < now()) {
        fail(400, "invalid_client", 700024, `Client assertion is not within its valid time range. Current time: ${new Date(now()).toISOString()}, assertion valid from ${typeof claims.nbf === "number" ? new Date(claims.nbf * 1000).toISOString() : "-"}, expiry time of assertion ${new Date(exp * 1000).toISOString()}.`);
        return;
      }
      if (client.federatedAssertion === undefined || client.federatedAssertion !== assertion.trim()) {
        fail(400, "invalid_request", 70021, `No matching federated identity record found for presented assertion. Assertion Issuer: '${String(claims.iss ?? "")}'. Assertion Subject: '${String(claims.sub ?? "")}'. Assertion Audience: '${String(Array.isArray(claims.aud) ? claims.aud.join(",") : (claims.aud ?? ""))}'.`);
        return;
      }
      appidacr = "2";
    } else {
      fail(400, "invalid_client", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.");
      return;
    }

    const resource = (scope.split(" ")[0] ?? "").replace(/\/\.default$/, "");
    const iat = Math.floor(now() / 1000);
    const accessToken = signJwt(
      {
        aud: resource,
        iss: accessTokenIssuer(),
        iat,
        nbf: iat,
        exp: iat + server.tokenLifetimeSeconds,
        aio: b64url(randomUUID()),
        appid: client.clientId,
        appidacr,
        idp: accessTokenIssuer(),
        idtyp: "app",
        oid: client.objectId,
        rh: b64url(randomUUID()),
        sub: client.objectId,
        tid: tenantId,
        uti: b64url(randomUUID()).slice(0, 22),
        ver: "1.0",
      },
      privateKey,
    );
    sendJson(res, 200, {
      token_type: "Bearer",
      expires_in: server.tokenLifetimeSeconds,
      ext_expires_in: server.tokenLifetimeSeconds,
      access_token: accessToken,
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests += 1;
    const u = new URL(req.url ?? "/", url);
    paths.push(`${req.method ?? "GET"} ${u.pathname}`);
    const segs = u.pathname.split("/").filter(Boolean);
    const tenant = segs[0] ?? "";

    // MSAL instance discovery (only when instance discovery is on): GET /common/discovery/instance
    if (req.method === "GET" && segs.length === 3 && segs[1] === "discovery" && segs[2] === "instance") {
      const host = new URL(url).host;
      sendJson(res, 200, {
        tenant_discovery_endpoint: `${url}/${tenantId}/v2.0/.well-known/openid-configuration`,
        "api-version": "1.1",
        metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
      });
      return;
    }
    if (req.method === "GET" && u.pathname.endsWith("/.well-known/openid-configuration")) {
      if (!knownTenant(tenant)) {
        aadError(res, 400, "invalid_tenant", 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
        return;
      }
      sendJson(res, 200, openIdConfiguration(tenant));
      return;
    }
    if (req.method === "GET" && segs.length === 4 && segs[1] === "discovery" && segs[3] === "keys") {
      const jwk = publicKey.export({ format: "jwk" });
      sendJson(res, 200, { keys: [{ kty: "RSA", use: "sig", kid, n: jwk.n, e: jwk.e, issuer: issuerFor(tenant) }] });
      return;
    }
    if (req.method === "POST" && segs.length === 4 && segs[1] === "oauth2" && segs[2] === "v2.0" && segs[3] === "token") {
      await token(req, res, tenant);
      return;
    }
    sendJson(res, 404, { error: "not_found", error_description: `No route for ${req.method ?? ""} ${u.pathname}` });
  }

  const http: Server = createServer({ cert: opts.pki.certPem, key: opts.pki.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: "server_error", error_description: String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(0, "127.0.0.1", () => resolve());
  });
  url = `https://127.0.0.1:${(http.address() as AddressInfo).port}`;

  const server: EntraServer = {
    url,
    tenantId,
    tokenLifetimeSeconds: 3600,
    registerClient(client) {
      clients.set(client.clientId.toLowerCase(), { ...client, federatedAssertion: client.federatedAssertion?.trim() });
    },
    verifyAccessToken(tokenText) {
      const parts = tokenText.split(".");
      if (parts.length !== 3) return undefined;
      const [h, p, s] = parts as [string, string, string];
      const header = decodeJwtPart(tokenText, 0);
      if (!header || header.alg !== "RS256" || header.kid !== kid) return undefined;
      if (!verify("sha256", Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, "base64url"))) return undefined;
      const claims = decodeJwtPart(tokenText, 1);
      if (!claims) return undefined;
      if (claims.iss !== accessTokenIssuer()) return undefined;
      if (typeof claims.exp !== "number" || claims.exp * 1000 <= now()) return undefined;
      if (typeof claims.oid !== "string" || typeof claims.appid !== "string" || typeof claims.tid !== "string" || typeof claims.aud !== "string") {
        return undefined;
      }
      return { oid: claims.oid, appid: claims.appid, tid: claims.tid, aud: claims.aud };
    },
    get requests() {
      return requests;
    },
    tokenRequests,
    paths,
    failTokenRequests(fault) {
      faults.push({ status: fault.status, remaining: fault.times ?? 1, retryAfterSeconds: fault.retryAfterSeconds });
    },
    close() {
      return new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
  return server;
}
