/**
 * A loopback HTTPS stand-in for the Kubernetes API server, faithful enough that the real `kubectl` and the real
 * @kubernetes/client-node work against it unmodified: discovery (/version, /api, /apis and each group version),
 * Secrets, Services, ConfigMaps, Events (core and events.k8s.io), Leases, Namespaces, RBAC objects and
 * SelfSubjectAccessReview; tables for `kubectl get`; watches; bearer-token authentication; and RBAC authorization
 * from a Role file (the harness renders the shipped deploy/overlays), so a call that Role does not allow gets the real 403.
 *
 * Knobs for tests and the harness: fault injection (status codes, latency), a request log without tokens, direct
 * store access (seed and inspect secrets, services, events), and kubeconfig files that trust the test CA.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { stringify } from "yaml";
import type { TestPki } from "./pki.js";
import { discoveryDocument, toTable } from "./kube-discovery.js";
import { apiVersionOf, findDef, resourceDefs, type KObj, type ResourceDef } from "./kube-resources.js";
import {
  authorize,
  builtinRbac,
  forbiddenMessage,
  loadRbacFile,
  rulesFor,
  serviceAccountUser,
  type RbacSource,
  type RequestAttributes,
  type UserInfo,
} from "./kube-rbac.js";
import { decodeKubeProtobuf, PROTOBUF } from "./kube-protobuf.js";
import { KubeApiError, statusErrors, type KubeStatus } from "./kube-status.js";
import { KubeStore, type StoreChange } from "./kube-store.js";

export type { KObj } from "./kube-resources.js";

export interface ServiceSeed {
  name: string;
  namespace: string;
  /** default LoadBalancer */
  type?: string;
  clusterIP?: string;
  /** `status.loadBalancer.ingress` */
  ingress?: { ip?: string; hostname?: string }[];
  ports?: { name?: string; port: number; targetPort?: number; protocol?: string; nodePort?: number }[];
}

export interface KubeServerOptions {
  pki: Pick<TestPki, "certPem" | "keyPem" | "caPem">;
  /** multi-document YAML with ServiceAccounts, Roles and bindings (e.g. the rendered deploy/overlays/cronjob) */
  rbacFile: string;
  /** the ServiceAccount whose token is `saToken` (default azureml/amlcert); must be in rbacFile */
  serviceAccount?: { namespace: string; name: string };
  /** namespaces that exist (default, kube-system, kube-public and azureml always do) */
  namespaces?: string[];
  /** services to create at start; default: azureml/azureml-fe, LoadBalancer with ingress IP 127.0.0.1 */
  services?: ServiceSeed[];
  now?: () => Date;
}

export interface FaultSpec {
  /** HTTP method to match (any when omitted) */
  method?: string;
  /** substring of path + query to match (any when omitted) */
  pathIncludes?: string;
  /** only requests of this user name */
  user?: string;
  /** HTTP status to answer with; 0 means "only delay, then serve normally" */
  status: number;
  /** how many requests the fault applies to; default 1, Infinity for a permanent fault */
  times?: number;
  /** Status reason and message; default the real server's for that code (409 on a named object: "the object has been modified") */
  reason?: string;
  message?: string;
  /** latency added before answering */
  delayMs?: number;
  /** Retry-After of an injected 429/503 in seconds (default 1; 0 sends none, so the client backs off on its own) */
  retryAfterSeconds?: number;
  /** runs when the fault matches, before the request is served: e.g. another writer strikes between a client's read and write */
  before?: () => void | Promise<void>;
}

export interface FaultHandle {
  readonly spec: FaultSpec;
  /** requests this fault answered so far */
  readonly hits: number;
  remove(): void;
}

export interface Faults {
  add(spec: FaultSpec): FaultHandle;
  clear(): void;
  readonly active: readonly FaultHandle[];
}

export interface RequestRecord {
  method: string;
  /** path and query (never a token) */
  path: string;
  status: number;
  user?: string;
  verb?: string;
  resource?: string;
  namespace?: string;
  name?: string;
}

/**
 * Told of every authorized resource request before it is served (after authentication, RBAC and faults): a test
 * can act at that exact point (e.g. SIGKILL the CLI child). "refuse" answers 503 and the request is not applied;
 * anything else serves it as usual (a client killed in the hook never sees the answer of a request that was applied).
 */
export type KubeRequestHook = (req: RequestRecord) => "refuse" | void;

export interface SecretChange {
  type: "ADDED" | "MODIFIED" | "DELETED";
  namespace: string;
  name: string;
  secret: KObj;
}

export interface KubeServer {
  /** https://127.0.0.1:<port> */
  url: string;
  port: number;
  caPem: string;
  /** a system:masters user (full access), for kubectl in tests and seeding */
  adminToken: string;
  /** the token of the ServiceAccount (default azureml/amlcert) bound in rbacFile */
  saToken: string;
  /** the user name behind saToken, e.g. "system:serviceaccount:azureml:amlcert" */
  saUser: string;
  addToken(token: string, username: string, groups?: string[]): void;
  faults: Faults;
  /** see KubeRequestHook; undefined: none */
  requestHook?: KubeRequestHook;
  /** every request, in order */
  requests: RequestRecord[];
  /** Write a kubeconfig trusting the test CA (certificate-authority-data), one context per name, all on this server. */
  writeKubeconfig(path: string, opts: { token: string; contexts?: string[]; namespace?: string }): string;
  store: KubeStore;
  /** a secret's `data`, decoded as UTF-8 text (e.g. `["cert.pem"]`); undefined when the secret does not exist */
  getSecret(namespace: string, name: string): Record<string, string> | undefined;
  /** a secret's `data`, decoded as bytes */
  getSecretData(namespace: string, name: string): Record<string, Buffer> | undefined;
  /** the whole Secret object as the API serves it (data base64) */
  getSecretObject(namespace: string, name: string): KObj | undefined;
  /** create or overwrite a secret directly (no RBAC, no concurrency check; bumps resourceVersion) */
  putSecret(
    namespace: string,
    name: string,
    data: Record<string, string | Buffer>,
    opts?: { type?: string; labels?: Record<string, string>; annotations?: Record<string, string> },
  ): KObj;
  putService(namespace: string, svc: Omit<ServiceSeed, "namespace">): KObj;
  putObject(obj: KObj & { apiVersion: string; kind: string }): KObj;
  deleteObject(apiVersion: string, kind: string, namespace: string, name: string): void;
  /** core/v1 Events, optionally of one namespace */
  listEvents(namespace?: string): KObj[];
  onSecretChange(cb: (c: SecretChange) => void): () => void;
  close(): Promise<void>;
}

const MAX_BODY = 3 * 1024 * 1024;
const MAX_WATCH_SECONDS = 300;

function defFor(apiVersion: string, kind: string): ResourceDef {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const d = resourceDefs.find((x) => x.group === group && x.version === version && x.kind === kind);
  if (!d) throw new Error(`kube-server: no resource for ${apiVersion} ${kind}`);
  return d;
}

interface ResourcePath {
  group: string;
  version: string;
  namespace: string;
  resource: string;
  name: string;
  subresource: string;
}

/** The API server's RequestInfoFactory, for the paths served here. */
function parseResourcePath(segs: string[]): ResourcePath | undefined {
  let group = "";
  let version: string;
  let rest: string[];
  if (segs[0] === "api" && segs.length >= 3) {
    version = segs[1]!;
    rest = segs.slice(2);
  } else if (segs[0] === "apis" && segs.length >= 4) {
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
  } else return undefined;
  let namespace = "";
  if (rest[0] === "namespaces" && rest.length > 1) {
    namespace = rest[1]!;
    if (rest.length > 2 && rest[2] !== "status" && rest[2] !== "finalize") rest = rest.slice(2);
  }
  if (rest.length > 3) return undefined;
  return { group, version, namespace, resource: rest[0]!, name: rest[1] ?? "", subresource: rest[2] ?? "" };
}

function verbOf(method: string, p: ResourcePath, query: URLSearchParams): string {
  switch (method) {
    case "GET":
    case "HEAD":
      if (query.get("watch") === "true" || query.get("watch") === "1") return "watch";
      return p.name ? "get" : "list";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return p.name ? "delete" : "deletecollection";
    default:
      return method.toLowerCase();
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new KubeApiError({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `Request entity too large: limit is ${MAX_BODY}`, reason: "RequestEntityTooLarge", code: 413 }));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function parseJson(buf: Buffer, kind: string): unknown {
  if (buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch (e) {
    throw statusErrors.badRequest(`${kind} in version "v1" cannot be handled as a ${kind}: ${(e as Error).message}`);
  }
}

/** JSON or protobuf request body as JSON */
async function parseBody(req: IncomingMessage, kind: string): Promise<unknown> {
  const buf = await readBody(req);
  const ct = (req.headers["content-type"] ?? "application/json").split(";")[0]!.trim();
  if (ct === PROTOBUF) return buf.length ? decodeKubeProtobuf(buf) : undefined;
  return parseJson(buf, kind);
}

const wantsTable = (accept: string | undefined) => (accept ?? "").split(",").some((p) => /;\s*as=Table/.test(p) && /g=meta\.k8s\.io/.test(p));

export async function startKubeServer(opts: KubeServerOptions): Promise<KubeServer> {
  const now = opts.now ?? (() => new Date());
  const store = new KubeStore({ now });
  const sa = opts.serviceAccount ?? { namespace: "azureml", name: "amlcert" };
  const tokens = new Map<string, UserInfo>();
  const requests: RequestRecord[] = [];
  const faultList: { spec: FaultSpec; remaining: number; hits: number; handle: FaultHandle }[] = [];
  const openStreams = new Set<ServerResponse>();

  const def = (apiVersion: string, kind: string) => defFor(apiVersion, kind);
  for (const ns of new Set(["default", "kube-system", "kube-public", "kube-node-lease", "azureml", ...(opts.namespaces ?? [])])) {
    store.put(def("v1", "Namespace"), { metadata: { name: ns, labels: { "kubernetes.io/metadata.name": ns } }, spec: { finalizers: ["kubernetes"] }, status: { phase: "Active" } });
  }
  const rbacObjects = [...builtinRbac(), ...loadRbacFile(opts.rbacFile)];
  for (const o of rbacObjects) {
    const d = def(o.apiVersion ?? "", o.kind ?? "");
    if (d.namespaced && o.metadata.namespace && !store.namespaceExists(o.metadata.namespace)) {
      store.put(def("v1", "Namespace"), { metadata: { name: o.metadata.namespace }, status: { phase: "Active" } });
    }
    store.put(d, o);
  }
  if (!store.peek("serviceaccounts", sa.namespace, sa.name)) {
    throw new Error(`kube-server: ${opts.rbacFile} has no ServiceAccount ${sa.namespace}/${sa.name}`);
  }

  const adminToken = `admin-${randomBytes(16).toString("hex")}`;
  tokens.set(adminToken, { name: "kubernetes-admin", groups: ["system:masters", "system:authenticated"] });
  let saToken = "";
  for (const o of store.all("serviceaccounts")) {
    const token = `sa-${randomBytes(24).toString("hex")}`;
    const ns = o.metadata.namespace ?? "default";
    tokens.set(token, serviceAccountUser(ns, o.metadata.name ?? ""));
    if (ns === sa.namespace && o.metadata.name === sa.name) saToken = token;
  }

  const putService = (namespace: string, s: Omit<ServiceSeed, "namespace">): KObj => {
    const existing = store.peek("services", namespace, s.name);
    const type = s.type ?? "LoadBalancer";
    const clusterIP = s.clusterIP ?? (existing?.spec as { clusterIP?: string } | undefined)?.clusterIP ?? `10.0.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;
    const ports = s.ports ?? [
      { name: "http", port: 80, targetPort: 9001, protocol: "TCP" },
      { name: "https", port: 443, targetPort: 9001, protocol: "TCP" },
    ];
    return store.put(def("v1", "Service"), {
      metadata: { name: s.name, namespace, labels: { app: s.name } },
      spec: { type, clusterIP, clusterIPs: [clusterIP], ports, selector: { app: s.name }, sessionAffinity: "None" },
      status: { loadBalancer: s.ingress && s.ingress.length ? { ingress: s.ingress } : {} },
    });
  };
  for (const s of opts.services ?? [{ name: "azureml-fe", namespace: "azureml", ingress: [{ ip: "127.0.0.1" }] }]) {
    putService(s.namespace, s);
  }

  const rbac: RbacSource = {
    roles: (ns) => store.all("roles", ns),
    clusterRoles: () => store.all("clusterroles"),
    roleBindings: (ns) => store.all("rolebindings", ns),
    clusterRoleBindings: () => store.all("clusterrolebindings"),
  };

  let baseUrl = "";

  const send = (res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      "Content-Type": "application/json",
      "Cache-Control": "no-cache, private",
      "Content-Length": Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  };

  const selfSubjectAccessReview = (user: UserInfo, body: KObj): Record<string, unknown> => {
    const spec = (body.spec ?? {}) as { resourceAttributes?: Record<string, string>; nonResourceAttributes?: Record<string, string> };
    const ra = spec.resourceAttributes;
    const na = spec.nonResourceAttributes;
    if (!ra && !na) {
      throw statusErrors.invalid({ group: "authorization.k8s.io", kind: "SelfSubjectAccessReview" }, "", [
        { reason: "FieldValueRequired", message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified", field: "spec.resourceAttributes" },
      ]);
    }
    const attrs: RequestAttributes = ra
      ? { user, verb: ra.verb ?? "", resourceRequest: true, path: "", namespace: ra.namespace ?? "", apiGroup: ra.group ?? "", apiVersion: ra.version ?? "", resource: ra.resource ?? "", subresource: ra.subresource ?? "", name: ra.name ?? "" }
      : { user, verb: na!.verb ?? "", resourceRequest: false, path: na!.path ?? "", namespace: "", apiGroup: "", apiVersion: "", resource: "", subresource: "", name: "" };
    const d = authorize(rbac, attrs);
    const status: Record<string, unknown> = { allowed: d.allowed };
    if (d.reason) status.reason = d.reason;
    return { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", metadata: { creationTimestamp: null }, spec, status };
  };

  const selfSubjectRulesReview = (user: UserInfo, body: KObj): Record<string, unknown> => {
    const spec = (body.spec ?? {}) as { namespace?: string };
    const rules = rulesFor(rbac, user, spec.namespace ?? "");
    return {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectRulesReview",
      metadata: { creationTimestamp: null },
      spec,
      status: {
        resourceRules: rules.filter((r) => !r.nonResourceURLs).map((r) => ({ verbs: r.verbs, apiGroups: r.apiGroups ?? [], resources: r.resources ?? [], ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}) })),
        nonResourceRules: rules.filter((r) => r.nonResourceURLs).map((r) => ({ verbs: r.verbs, nonResourceURLs: r.nonResourceURLs })),
        incomplete: false,
      },
    };
  };

  const watch = (req: IncomingMessage, res: ServerResponse, d: ResourceDef, ns: string | undefined, query: URLSearchParams) => {
    const match = store.matcher(d, { labelSelector: query.get("labelSelector"), fieldSelector: query.get("fieldSelector") });
    const table = wantsTable(req.headers.accept);
    const includeObject = query.get("includeObject") ?? "Metadata";
    const timeout = Math.min(Number(query.get("timeoutSeconds") ?? MAX_WATCH_SECONDS) || MAX_WATCH_SECONDS, MAX_WATCH_SECONDS);
    const inScope = (c: StoreChange) => c.storage === d.storage && (!d.namespaced || ns === undefined || c.object.metadata.namespace === ns);
    const render = (c: StoreChange) => {
      const o = d.fromStorage ? d.fromStorage(structuredClone(c.object)) : structuredClone(c.object);
      const obj = { apiVersion: apiVersionOf(d), kind: d.kind, ...o };
      return { type: c.type, object: table ? toTable(d, [obj], { resourceVersion: String(c.resourceVersion) }, includeObject, now()) : obj };
    };
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private", "Transfer-Encoding": "chunked" });
    openStreams.add(res);
    const write = (ev: unknown) => res.write(JSON.stringify(ev) + "\n");
    const rvParam = query.get("resourceVersion") ?? "";
    if (rvParam === "" || rvParam === "0") {
      for (const o of store.all(d.storage, d.namespaced ? ns : undefined).filter(match)) {
        write(render({ type: "ADDED", storage: d.storage, object: o, resourceVersion: Number(o.metadata.resourceVersion) }));
      }
    } else {
      const past = store.changesSince(Number(rvParam));
      if (!past) {
        write({ type: "ERROR", object: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${rvParam} (${store.resourceVersion})`, reason: "Expired", code: 410 } });
        res.end();
        openStreams.delete(res);
        return;
      }
      for (const c of past) if (inScope(c) && match(c.object)) write(render(c));
    }
    const unsubscribe = store.onChange((c) => {
      if (inScope(c) && match(c.object)) write(render(c));
    });
    const timer = setTimeout(() => res.end(), timeout * 1000);
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      openStreams.delete(res);
    };
    res.on("close", done);
    res.on("finish", done);
  };

  const handleResource = async (
    req: IncomingMessage,
    res: ServerResponse,
    user: UserInfo,
    p: ResourcePath,
    verb: string,
    query: URLSearchParams,
  ): Promise<number> => {
    const d = findDef(p.group, p.version, p.resource);
    if (!d) throw statusErrors.pathNotFound();
    if (d.namespaced === false && p.namespace && p.resource !== "namespaces") throw statusErrors.pathNotFound();
    const dryRun = query.getAll("dryRun").includes("All");
    const method = req.method ?? "GET";
    if (d.storage === "") {
      if (method !== "POST" || p.name) throw statusErrors.methodNotAllowed();
      const body = await parseBody(req, d.kind) as KObj;
      const out = d.resource === "selfsubjectaccessreviews" ? selfSubjectAccessReview(user, body) : selfSubjectRulesReview(user, body);
      send(res, 201, out);
      return 201;
    }
    const ns = d.namespaced ? p.namespace : "";
    if (p.subresource && !(d.subresources ?? []).includes(p.subresource)) throw statusErrors.pathNotFound();
    if (p.subresource === "finalize") throw statusErrors.methodNotAllowed();
    switch (method) {
      case "GET":
      case "HEAD": {
        if (verb === "watch") {
          watch(req, res, d, d.namespaced ? p.namespace || undefined : undefined, query);
          return 200;
        }
        const table = wantsTable(req.headers.accept);
        const includeObject = query.get("includeObject") ?? "Metadata";
        if (p.name) {
          const o = store.get(d, ns, p.name);
          send(res, 200, table ? toTable(d, [o], { resourceVersion: o.metadata.resourceVersion }, includeObject, now()) : o);
          return 200;
        }
        const { items, resourceVersion } = store.list(d, d.namespaced ? p.namespace || undefined : undefined, {
          labelSelector: query.get("labelSelector"),
          fieldSelector: query.get("fieldSelector"),
        });
        const limit = Number(query.get("limit") ?? "0");
        let start = 0;
        const cont = query.get("continue");
        if (cont) {
          try {
            start = (JSON.parse(Buffer.from(cont, "base64url").toString("utf8")) as { start: number }).start;
          } catch {
            throw statusErrors.badRequest(`continue key is not valid: ${cont}`);
          }
        }
        const page = limit > 0 ? items.slice(start, start + limit) : items.slice(start);
        const listMeta: Record<string, unknown> = { resourceVersion };
        if (limit > 0 && start + limit < items.length) {
          listMeta.continue = Buffer.from(JSON.stringify({ start: start + limit })).toString("base64url");
          listMeta.remainingItemCount = items.length - start - limit;
        }
        if (table) send(res, 200, toTable(d, page, listMeta, includeObject, now()));
        else send(res, 200, { kind: `${d.kind}List`, apiVersion: apiVersionOf(d), metadata: listMeta, items: page });
        return 200;
      }
      case "POST": {
        if (p.name) throw statusErrors.methodNotAllowed();
        if (d.namespaced && !p.namespace) throw statusErrors.methodNotAllowed();
        const body = await parseBody(req, d.kind) as KObj;
        const o = store.create(d, ns, body, { dryRun });
        send(res, 201, o);
        return 201;
      }
      case "PUT": {
        if (!p.name) throw statusErrors.methodNotAllowed();
        const body = await parseBody(req, d.kind) as KObj;
        let o: KObj;
        if (p.subresource === "status") {
          const current = store.get(d, ns, p.name);
          if (body?.metadata?.resourceVersion && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
            throw statusErrors.modified({ group: d.group, resource: d.resource }, p.name);
          }
          o = store.put(d, { ...current, status: body?.status });
        } else o = store.update(d, ns, p.name, body, { dryRun });
        send(res, 200, o);
        return 200;
      }
      case "PATCH": {
        if (!p.name) throw statusErrors.methodNotAllowed();
        const ct = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
        const patch = await parseBody(req, d.kind);
        if (p.subresource === "status") {
          const current = store.get(d, ns, p.name);
          const patched = store.patch(d, ns, p.name, ct, patch, { dryRun: true });
          send(res, 200, store.put(d, { ...current, status: patched.status }));
          return 200;
        }
        const o = store.patch(d, ns, p.name, ct, patch, { dryRun });
        send(res, 200, o);
        return 200;
      }
      case "DELETE": {
        if (!p.name) throw statusErrors.methodNotAllowed();
        const body = await parseBody(req, "DeleteOptions") as { preconditions?: { uid?: string; resourceVersion?: string }; dryRun?: string[] } | undefined;
        const o = store.delete(d, ns, p.name, body?.preconditions ?? {}, { dryRun: dryRun || (body?.dryRun ?? []).includes("All") });
        const details: Record<string, unknown> = { name: p.name };
        if (d.group) details.group = d.group;
        details.kind = d.resource;
        details.uid = o.metadata.uid;
        send(res, 200, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details });
        return 200;
      }
      default:
        throw statusErrors.methodNotAllowed();
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const method = req.method ?? "GET";
    const record: RequestRecord = { method, path: url.pathname + url.search, status: 0 };
    if (requests.length < 10_000) requests.push(record);
    const segs = url.pathname.split("/").filter(Boolean);
    try {
      const auth = req.headers.authorization ?? "";
      const m = auth.match(/^Bearer\s+(.+)$/i);
      const user = m ? tokens.get(m[1]!.trim()) : undefined;
      if (!user) throw statusErrors.unauthorized();
      record.user = user.name;

      const p = parseResourcePath(segs);
      const rp = p && p.resource ? p : undefined;
      const verb = rp ? verbOf(method, rp, url.searchParams) : method === "GET" || method === "HEAD" ? "get" : method.toLowerCase();
      if (rp) {
        record.verb = verb;
        record.resource = rp.subresource ? `${rp.resource}/${rp.subresource}` : rp.resource;
        if (rp.namespace) record.namespace = rp.namespace;
        if (rp.name) record.name = rp.name;
      }

      for (const f of faultList) {
        if (f.remaining <= 0) continue;
        if (f.spec.method && f.spec.method.toUpperCase() !== method) continue;
        if (f.spec.pathIncludes && !record.path.includes(f.spec.pathIncludes)) continue;
        if (f.spec.user && f.spec.user !== user.name) continue;
        f.remaining--;
        f.hits++;
        if (f.spec.before) await f.spec.before();
        if (f.spec.delayMs) await new Promise((r) => setTimeout(r, f.spec.delayMs));
        if (f.spec.status) {
          const gr = rp ? { group: rp.group, resource: rp.resource } : undefined;
          throw statusErrors.injected(f.spec.status, gr, rp?.name ?? "", f.spec.reason, f.spec.message, f.spec.retryAfterSeconds);
        }
        break;
      }

      const attrs: RequestAttributes = rp
        ? { user, verb, resourceRequest: true, path: url.pathname, namespace: rp.namespace, apiGroup: rp.group, apiVersion: rp.version, resource: rp.resource, subresource: rp.subresource, name: rp.name }
        : { user, verb, resourceRequest: false, path: url.pathname, namespace: "", apiGroup: "", apiVersion: "", resource: "", subresource: "", name: "" };
      const decision = authorize(rbac, attrs);
      if (!decision.allowed) {
        const gr = rp ? { group: rp.group, resource: rp.resource } : undefined;
        throw statusErrors.forbidden(gr, rp?.name ?? "", forbiddenMessage(attrs));
      }

      if (rp && kubeServer.requestHook?.(record) === "refuse") {
        throw statusErrors.injected(503, { group: rp.group, resource: rp.resource }, rp.name ?? "");
      }

      if (!rp) {
        const doc = method === "GET" ? discoveryDocument(segs, baseUrl) : undefined;
        if (doc === undefined) throw statusErrors.pathNotFound();
        send(res, 200, doc);
        record.status = 200;
        return;
      }
      record.status = await handleResource(req, res, user, rp, verb, url.searchParams);
    } catch (e) {
      const status: KubeStatus =
        e instanceof KubeApiError
          ? e.status
          : { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `Internal error occurred: ${(e as Error).message}`, reason: "InternalError", code: 500 };
      record.status = status.code;
      if (res.headersSent) {
        res.end();
        return;
      }
      const headers: Record<string, string> = {};
      if (status.details?.retryAfterSeconds) headers["Retry-After"] = String(status.details.retryAfterSeconds);
      send(res, status.code, status, headers);
    }
  };

  const server: Server = createServer({ key: opts.pki.keyPem, cert: opts.pki.certPem }, (req, res) => {
    void handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  baseUrl = `https://127.0.0.1:${port}`;

  const faults: Faults = {
    add(spec) {
      const entry = { spec: { ...spec }, remaining: spec.times ?? 1, hits: 0, handle: undefined as unknown as FaultHandle };
      entry.handle = {
        spec: entry.spec,
        get hits() {
          return entry.hits;
        },
        remove() {
          const i = faultList.indexOf(entry);
          if (i >= 0) faultList.splice(i, 1);
        },
      };
      faultList.push(entry);
      return entry.handle;
    },
    clear() {
      faultList.length = 0;
    },
    get active() {
      return faultList.filter((f) => f.remaining > 0).map((f) => f.handle);
    },
  };

  const secretDef = def("v1", "Secret");
  const secretData = (namespace: string, name: string): Record<string, Buffer> | undefined => {
    const o = store.peek("secrets", namespace, name);
    if (!o) return undefined;
    return Object.fromEntries(Object.entries((o.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, "base64")]));
  };

  const kubeServer: KubeServer = {
    url: baseUrl,
    port,
    caPem: opts.pki.caPem,
    adminToken,
    saToken,
    saUser: serviceAccountUser(sa.namespace, sa.name).name,
    addToken(token, username, groups = ["system:authenticated"]) {
      tokens.set(token, { name: username, groups: groups.includes("system:authenticated") ? groups : [...groups, "system:authenticated"] });
    },
    faults,
    requests,
    writeKubeconfig(path, { token, contexts = ["amlcert-test"], namespace = "azureml" }) {
      const caData = Buffer.from(opts.pki.caPem).toString("base64");
      const doc = {
        apiVersion: "v1",
        kind: "Config",
        clusters: contexts.map((c) => ({ name: c, cluster: { server: baseUrl, "certificate-authority-data": caData } })),
        users: contexts.map((c) => ({ name: `${c}-user`, user: { token } })),
        contexts: contexts.map((c) => ({ name: c, context: { cluster: c, user: `${c}-user`, namespace } })),
        "current-context": contexts[0],
        preferences: {},
      };
      writeFileSync(path, stringify(doc), { mode: 0o600 });
      return path;
    },
    store,
    getSecret(namespace, name) {
      const data = secretData(namespace, name);
      return data && Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString("utf8")]));
    },
    getSecretData: secretData,
    getSecretObject(namespace, name) {
      const o = store.peek("secrets", namespace, name);
      return o ? { apiVersion: "v1", kind: "Secret", ...o } : undefined;
    },
    putSecret(namespace, name, data, o = {}) {
      const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, (Buffer.isBuffer(v) ? v : Buffer.from(v, "utf8")).toString("base64")]));
      const metadata: KObj["metadata"] = { name, namespace };
      if (o.labels) metadata.labels = o.labels;
      if (o.annotations) metadata.annotations = o.annotations;
      return store.put(secretDef, { metadata, type: o.type ?? "Opaque", data: encoded });
    },
    putService,
    putObject: (obj) => store.put(def(obj.apiVersion, obj.kind), obj),
    deleteObject(apiVersion, kind, namespace, name) {
      const d = def(apiVersion, kind);
      if (store.peek(d.storage, d.namespaced ? namespace : "", name)) store.delete(d, namespace, name);
    },
    listEvents: (namespace) => store.all("events", namespace).map((o) => ({ apiVersion: "v1", kind: "Event", ...o })),
    onSecretChange(cb) {
      return store.onChange((c) => {
        if (c.storage !== "secrets") return;
        cb({ type: c.type, namespace: c.object.metadata.namespace ?? "", name: c.object.metadata.name ?? "", secret: { apiVersion: "v1", kind: "Secret", ...c.object } });
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of openStreams) r.end();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return kubeServer;
}
