/**
 * A loopback HTTPS stand-in for the Azure Key Vault data plane, as the real `@azure/keyvault-certificates` and
 * `@azure/keyvault-secrets` use it: GET a certificate (latest: `/certificates/{name}/`, or a version), GET its backing
 * secret (`/secrets/{name}/{version}`), both shaped like Key Vault's REST answers (api-version required).
 *
 * Like the real service it answers an unauthenticated request with 401 and the bearer challenge
 * (`WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="https://vault.localhost"`); the SDK then
 * asks the Entra stand-in for a token for `https://vault.localhost/.default` and sends it. The vault is served at
 * `https://<name>.vault.localhost:<port>` (a certificate for `*.vault.localhost` signed by the trusted test CA), so
 * the SDK's challenge-resource check (the request host must end in `.<resource host>`) stays on and passes; names
 * under localhost resolve to loopback through ./localhost-names.ts.
 *
 * Authorization is Azure RBAC on data actions: role assignments at the vault or at one certificate or secret; a
 * call without a matching assignment is 403 ForbiddenByRbac naming the action, as Key Vault answers it. A missing
 * certificate, secret or version is 404 (CertificateNotFound, SecretNotFound).
 */
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EntraServer } from "./entra-server.js";
import type { TestPki } from "./pki.js";
import { pkcs12Of } from "../support/source-certs.js";

export const VAULT_DNS_SUFFIX = "vault.localhost";
/** the challenge's resource: what real Key Vault calls https://vault.azure.net */
export const VAULT_RESOURCE = `https://${VAULT_DNS_SUFFIX}`;
export const API_VERSIONS = ["7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"];

export type VaultRole = "Key Vault Secrets User" | "Key Vault Certificate User" | "Key Vault Reader" | "Key Vault Administrator";
/** The data actions of each built-in role (Azure's role definitions, abridged to what the stand-in checks). */
const ROLE_ACTIONS: Record<VaultRole, string[]> = {
  "Key Vault Secrets User": ["Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
  "Key Vault Certificate User": [
    "Microsoft.KeyVault/vaults/certificates/read",
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "Microsoft.KeyVault/vaults/keys/read",
  ],
  "Key Vault Reader": ["Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
  "Key Vault Administrator": ["Microsoft.KeyVault/vaults/*"],
};
const CERTIFICATE_READ = "Microsoft.KeyVault/vaults/certificates/read";
const SECRET_GET = "Microsoft.KeyVault/vaults/secrets/getSecret/action";

export interface RoleAssignment {
  principalId: string;
  role: VaultRole;
  /** "vault", or one object: `certificates/<name>` or `secrets/<name>` */
  scope: "vault" | `certificates/${string}` | `secrets/${string}`;
}

export type SecretContentType = "application/x-pkcs12" | "application/x-pem-file";

export interface CertificateVersionSeed {
  /** the leaf and whatever else Key Vault holds, in the order it holds them (only the leaf, or the chain in any order) */
  certsPem: string;
  keyPem: string;
  contentType: SecretContentType;
  /** default true; false: the policy says keyProperties.exportable=false and the secret carries no key */
  exportable?: boolean;
  /** PEM content: the order of the blocks in the secret (default: key, then certsPem as given) */
  pemValue?: string;
  /** default: a random 32-hex version, as Key Vault makes them */
  version?: string;
  enabled?: boolean;
}

interface StoredVersion {
  version: string;
  leaf: X509Certificate;
  contentType: SecretContentType;
  exportable: boolean;
  enabled: boolean;
  secretValue: string;
  created: number;
}

export interface KeyVaultRequest {
  method: string;
  path: string;
  status: number;
  /** the bearer token was present and valid */
  authenticated: boolean;
  apiVersion?: string;
}

export interface KeyVaultServer {
  /** https://<vault>.vault.localhost:<port> */
  readonly url: string;
  readonly vaultName: string;
  readonly port: number;
  /** add a version of certificate `name` (the new current one); returns its version id */
  putCertificate(name: string, seed: CertificateVersionSeed): Promise<string>;
  deleteCertificate(name: string): void;
  /** the versions of `name`, oldest first */
  versions(name: string): string[];
  assign(a: RoleAssignment): void;
  clearAssignments(): void;
  /** answer the challenge with this resource instead of https://vault.localhost (to see the SDK's check refuse it) */
  challengeResource: string;
  /** answer the next `times` authenticated requests with 429 and this Retry-After (seconds), as Key Vault throttles */
  throttle(o: { retryAfterSeconds: number; times?: number }): void;
  readonly requests: KeyVaultRequest[];
  /** everything back as started: no certificates, no role assignments, default challenge; the request log is kept */
  reset(): void;
  close(): Promise<void>;
}

export interface KeyVaultServerOptions {
  /** the PKI this process trusts (NODE_EXTRA_CA_CERTS): its CA signs the stand-in's `*.vault.localhost` certificate */
  pki: TestPki;
  entra: EntraServer;
  vaultName?: string;
  subscriptionId?: string;
  resourceGroup?: string;
}

const randomVersion = () => createHash("sha256").update(`${Date.now()}-${Math.random()}`).digest("hex").slice(0, 32);

/** A server certificate for *.vault.localhost signed by the test CA, made with openssl. */
function vaultServerCertificate(pki: TestPki): { certPem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), "amlcert-kv-"));
  try {
    const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.ec.pem"]);
    run(["pkcs8", "-topk8", "-nocrypt", "-in", "key.ec.pem", "-out", "key.pem"]);
    run(["req", "-new", "-key", "key.pem", "-subj", `/CN=*.${VAULT_DNS_SUFFIX}`, "-out", "server.csr"]);
    writeFileSync(
      join(dir, "server.ext"),
      `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:*.${VAULT_DNS_SUFFIX},DNS:${VAULT_DNS_SUFFIX}\n`,
    );
    run(["x509", "-req", "-in", "server.csr", "-CA", pki.caFile, "-CAkey", join(pki.dir, "ca-key.pem"), "-CAcreateserial", "-CAserial", join(dir, "ca.srl"), "-days", "2", "-sha256", "-extfile", "server.ext", "-out", "server.pem"]);
    return { certPem: readFileSync(join(dir, "server.pem"), "utf8"), keyPem: readFileSync(join(dir, "key.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const unix = (d: Date | number) => Math.floor((typeof d === "number" ? d : d.getTime()) / 1000);

export async function startKeyVaultServer(opts: KeyVaultServerOptions): Promise<KeyVaultServer> {
  const vaultName = opts.vaultName ?? "amlcert-kv";
  const armId = `/subscriptions/${opts.subscriptionId ?? "3f2504e0-4f89-41d3-9a0c-0305e82c3301"}/resourcegroups/${opts.resourceGroup ?? "kv-rg"}/providers/microsoft.keyvault/vaults/${vaultName}`;
  const certificates = new Map<string, StoredVersion[]>();
  let assignments: RoleAssignment[] = [];
  const requests: KeyVaultRequest[] = [];
  const throttles: { retryAfterSeconds: number; remaining: number }[] = [];
  let url = "";

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      "cache-control": "no-cache",
      "x-ms-keyvault-service-version": "1.9.2000.1",
      "x-ms-keyvault-network-info": "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
      "x-ms-request-id": randomVersion(),
      ...headers,
    });
    res.end(text);
  };
  const kvError = (res: ServerResponse, status: number, code: string, message: string, inner?: string, headers?: Record<string, string>) =>
    send(res, status, { error: { code, message, ...(inner ? { innererror: { code: inner } } : {}) } }, headers);

  const allowed = (principalId: string, action: string, object: `certificates/${string}` | `secrets/${string}`) =>
    assignments.some((a) => {
      if (a.principalId.toLowerCase() !== principalId.toLowerCase()) return false;
      if (a.scope !== "vault" && a.scope.toLowerCase() !== object.toLowerCase()) return false;
      return ROLE_ACTIONS[a.role].some((granted) => {
        if (granted === action) return true;
        if (granted.endsWith("/*")) return action.startsWith(granted.slice(0, -1));
        if (granted.endsWith("/*/read")) return action.startsWith(granted.slice(0, -"*/read".length)) && action.endsWith("/read");
        return false;
      });
    });

  const entityUrl = (kind: "certificates" | "secrets" | "keys", name: string, version?: string) => `${url}/${kind}/${name}${version ? `/${version}` : ""}`;
  const attributes = (v: StoredVersion) => ({
    enabled: v.enabled,
    nbf: unix(new Date(v.leaf.validFrom)),
    exp: unix(new Date(v.leaf.validTo)),
    created: unix(v.created),
    updated: unix(v.created),
    recoveryLevel: "Recoverable+Purgeable",
    recoverableDays: 90,
  });
  const certificateBundle = (name: string, v: StoredVersion) => {
    const key = v.leaf.publicKey;
    return {
      id: entityUrl("certificates", name, v.version),
      kid: entityUrl("keys", name, v.version),
      sid: entityUrl("secrets", name, v.version),
      x5t: Buffer.from(v.leaf.fingerprint.replace(/:/g, ""), "hex").toString("base64url"),
      cer: v.leaf.raw.toString("base64"),
      attributes: attributes(v),
      tags: {},
      policy: {
        id: `${entityUrl("certificates", name)}/policy`,
        key_props: { exportable: v.exportable, kty: key.asymmetricKeyType === "ec" ? "EC" : "RSA", ...(key.asymmetricKeyType === "ec" ? { crv: "P-256" } : { key_size: key.asymmetricKeyDetails?.modulusLength ?? 2048 }), reuse_key: false },
        secret_props: { contentType: v.contentType },
        x509_props: {
          subject: v.leaf.subject.replace(/\n/g, ", "),
          sans: { dns_names: (v.leaf.subjectAltName ?? "").split(/,\s*/).filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4)) },
          ekus: ["1.3.6.1.5.5.7.3.1"],
          key_usage: ["digitalSignature", "keyEncipherment"],
          validity_months: 12,
          basic_constraints: { ca: false },
        },
        lifetime_actions: [{ trigger: { lifetime_percentage: 80 }, action: { action_type: "AutoRenew" } }],
        issuer: { name: "Unknown" },
        attributes: { enabled: true, created: unix(v.created), updated: unix(v.created) },
      },
      pending: { id: `${entityUrl("certificates", name)}/pending` },
    };
  };
  const secretBundle = (name: string, v: StoredVersion) => ({
    value: v.secretValue,
    contentType: v.contentType,
    id: entityUrl("secrets", name, v.version),
    managed: true,
    attributes: attributes(v),
    kid: entityUrl("keys", name, v.version),
    tags: {},
  });

  const notFound = (res: ServerResponse, kind: "certificate" | "secret", id: string) =>
    kvError(
      res,
      404,
      kind === "certificate" ? "CertificateNotFound" : "SecretNotFound",
      `A ${kind} with (name/id) ${id} was not found in this key vault. If you recently deleted this ${kind} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
    );

  function handle(req: IncomingMessage, res: ServerResponse, record: KeyVaultRequest): void {
    const u = new URL(req.url ?? "/", url);
    const apiVersion = u.searchParams.get("api-version") ?? undefined;
    record.apiVersion = apiVersion;
    const host = (req.headers.host ?? "").toLowerCase();
    if (host !== new URL(url).host) return kvError(res, 404, "NotFound", `no vault at ${host}`);
    // the bearer challenge first, as Key Vault does
    const auth = req.headers.authorization;
    const bearer = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
    const challenge = `Bearer authorization="${opts.entra.url}/${opts.entra.tenantId}", resource="${server.challengeResource}"`;
    if (!bearer) return kvError(res, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", undefined, { "www-authenticate": challenge });
    const token = opts.entra.verifyAccessToken(bearer);
    if (!token || token.aud.replace(/\/$/, "") !== VAULT_RESOURCE) {
      return kvError(res, 401, "Unauthorized", `AKV10022: Invalid audience. Expected ${VAULT_RESOURCE}, found: ${token?.aud ?? "(invalid token)"}.`, undefined, { "www-authenticate": challenge });
    }
    record.authenticated = true;
    if (throttles.length > 0) {
      const t = throttles[0]!;
      if (--t.remaining <= 0) throttles.shift();
      return kvError(res, 429, "Throttled", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached", undefined, { "retry-after": String(t.retryAfterSeconds) });
    }
    if (!apiVersion || !API_VERSIONS.includes(apiVersion)) {
      return kvError(res, 400, "BadParameter", `The specified version (${apiVersion ?? ""}) is not recognized. Consider using the latest supported version (${API_VERSIONS.at(-1)}).`);
    }
    if (req.method !== "GET") return kvError(res, 405, "MethodNotAllowed", `${req.method ?? ""} is not supported by this stand-in`);
    const segs = u.pathname.split("/").filter(Boolean);
    const [kind, name, version] = segs as [string | undefined, string | undefined, string | undefined];
    if ((kind !== "certificates" && kind !== "secrets") || !name || segs.length > 3) return kvError(res, 404, "NotFound", `no route for GET ${u.pathname}`);
    const action = kind === "certificates" ? CERTIFICATE_READ : SECRET_GET;
    if (!allowed(token.oid, action, `${kind}/${name}`)) {
      return kvError(
        res,
        403,
        "Forbidden",
        `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n` +
          `Caller: appid=${token.appid};oid=${token.oid};iss=https://sts.windows.net/${token.tid}/\r\nAction: '${action}'\r\nResource: '${armId}/${kind}/${name}'\r\n` +
          `Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: ${vaultName};location=westeurope\r\n`,
        "ForbiddenByRbac",
      );
    }
    const versions = certificates.get(name.toLowerCase());
    const v = version ? versions?.find((x) => x.version === version) : versions?.at(-1);
    if (!v) return notFound(res, kind === "certificates" ? "certificate" : "secret", version ? `${name}/${version}` : name);
    if (kind === "certificates") return send(res, 200, certificateBundle(name, v));
    if (!v.enabled) return kvError(res, 403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled");
    return send(res, 200, secretBundle(name, v));
  }

  const { certPem, keyPem } = vaultServerCertificate(opts.pki);
  const https: Server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
    const record: KeyVaultRequest = { method: req.method ?? "GET", path: (req.url ?? "/").split("?")[0]!, status: 0, authenticated: false };
    requests.push(record);
    res.on("finish", () => (record.status = res.statusCode));
    req.resume();
    req.on("end", () => {
      try {
        handle(req, res, record);
      } catch (err) {
        if (!res.headersSent) kvError(res, 500, "InternalError", String(err));
        else res.destroy();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    https.once("error", reject);
    https.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (https.address() as AddressInfo).port;
  url = `https://${vaultName}.${VAULT_DNS_SUFFIX}:${port}`;

  const server: KeyVaultServer = {
    url,
    vaultName,
    port,
    challengeResource: VAULT_RESOURCE,
    requests,
    async putCertificate(name, seed) {
      // the certificate object is the leaf: the one the key belongs to, wherever it is in certsPem
      const key = createPrivateKey(seed.keyPem);
      const leaf = [...seed.certsPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0])).find((c) => c.checkPrivateKey(key));
      if (!leaf) throw new Error(`putCertificate ${name}: keyPem belongs to none of the certificates`);
      const exportable = seed.exportable ?? true;
      let secretValue: string;
      if (seed.contentType === "application/x-pkcs12") {
        // a non-exportable certificate's secret carries the certificate only
        secretValue = pkcs12Of(exportable ? seed.keyPem : "", seed.certsPem).toString("base64");
      } else {
        secretValue = exportable ? (seed.pemValue ?? seed.keyPem + seed.certsPem) : seed.certsPem;
      }
      const version = seed.version ?? randomVersion();
      const list = certificates.get(name.toLowerCase()) ?? [];
      list.push({ version, leaf, contentType: seed.contentType, exportable, enabled: seed.enabled ?? true, secretValue, created: Date.now() });
      certificates.set(name.toLowerCase(), list);
      return version;
    },
    deleteCertificate(name) {
      certificates.delete(name.toLowerCase());
    },
    versions: (name) => (certificates.get(name.toLowerCase()) ?? []).map((v) => v.version),
    assign(a) {
      assignments.push(a);
    },
    throttle(o) {
      throttles.push({ retryAfterSeconds: o.retryAfterSeconds, remaining: o.times ?? 1 });
    },
    clearAssignments() {
      assignments = [];
    },
    reset() {
      throttles.length = 0;
      certificates.clear();
      assignments = [];
      server.challengeResource = VAULT_RESOURCE;
    },
    close() {
      return new Promise<void>((resolve) => {
        https.close(() => resolve());
        https.closeAllConnections();
      });
    },
  };
  return server;
}
