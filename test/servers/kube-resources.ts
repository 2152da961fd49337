/**
 * The API resources the Kubernetes stand-in serves: what discovery says about them (verbs, scope, short names),
 * their selectable fields, their table columns for `kubectl get`, and per-kind validation and defaulting
 * (Secret data/stringData, Lease MicroTime, Event references, Service status).
 */
import { randomInt } from "node:crypto";
import type { StatusCause } from "./kube-status.js";
import { statusErrors } from "./kube-status.js";
import { causes, checkMicroTime, configKeyProblem, decodeBase64Strict, normalizeTime } from "./kube-validation.js";

export interface KMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** A Kubernetes object as JSON. */
export interface KObj {
  apiVersion?: string;
  kind?: string;
  metadata: KMeta;
  [key: string]: unknown;
}

export interface Column {
  name: string;
  type: "string" | "integer" | "date";
  format?: string;
  priority?: number;
  description: string;
}

export interface ResourceDef {
  group: string;
  version: string;
  /** plural, as in the URL */
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
  /** discovery-only entries such as "status" */
  subresources?: string[];
  /** objects of two API resources can share one storage (core and events.k8s.io Events) */
  storage: string;
  /** field selectors beyond metadata.name / metadata.namespace */
  extraFields?: (o: KObj) => Record<string, string>;
  /** validate and default a create (old undefined) or an update; returns field problems (422), throws for 400s */
  prepare?: (o: KObj, old: KObj | undefined) => StatusCause[];
  /** fields whose value comes from the old object on update (status subresource) */
  keepOnUpdate?: string[];
  toStorage?: (o: KObj) => KObj;
  fromStorage?: (o: KObj) => KObj;
  columns?: Column[];
  cells?: (o: KObj, now: Date) => unknown[];
}

const CRUD = ["create", "delete", "get", "list", "patch", "update", "watch"];

export const nameColumn: Column = { name: "Name", type: "string", format: "name", description: "Name must be unique within a namespace." };
export const ageColumn: Column = { name: "Age", type: "string", description: "CreationTimestamp is a timestamp representing the server time when this object was created." };

/** kubectl's duration.HumanDuration */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  const days = Math.floor(hours / 24) % 365;
  if (hours < 24 * 365 * 8) return days === 0 ? `${years}y` : `${years}y${days}d`;
  return `${years}y`;
}

export const age = (o: KObj, now: Date): string => {
  const t = o.metadata.creationTimestamp;
  return t ? humanDuration(now.getTime() - Date.parse(t)) : "<unknown>";
};

const rec = (v: unknown): Record<string, unknown> => (v && typeof v === "object" ? (v as Record<string, unknown>) : {});
const str = (v: unknown): string => (typeof v === "string" ? v : "");

function prepareSecret(o: KObj, old: KObj | undefined): StatusCause[] {
  const problems: StatusCause[] = [];
  if (o.type === undefined || o.type === "") o.type = "Opaque";
  if (old && old.type !== o.type) problems.push(causes.immutable("type", o.type));
  const data: Record<string, string> = {};
  let size = 0;
  for (const [k, v] of Object.entries(rec(o.data))) {
    const bytes = decodeBase64Strict("Secret", v);
    const p = configKeyProblem(k);
    if (p) problems.push(causes.invalid(`data[${k}]`, k, p));
    data[k] = bytes.toString("base64");
    size += bytes.length;
  }
  for (const [k, v] of Object.entries(rec(o.stringData))) {
    if (typeof v !== "string") throw statusErrors.badRequest(`Secret in version "v1" cannot be handled as a Secret: json: cannot unmarshal ${typeof v} into Go struct field Secret.stringData of type string`);
    const p = configKeyProblem(k);
    if (p) problems.push(causes.invalid(`stringData[${k}]`, k, p));
    if (data[k] !== undefined) size -= Buffer.from(data[k]!, "base64").length;
    data[k] = Buffer.from(v, "utf8").toString("base64");
    size += Buffer.byteLength(v);
  }
  delete o.stringData;
  if (Object.keys(data).length > 0) o.data = data;
  else delete o.data;
  if (size > 1024 * 1024) problems.push(causes.tooLong("data", 1024 * 1024));
  if (o.type === "kubernetes.io/tls") {
    for (const k of ["tls.crt", "tls.key"]) if (data[k] === undefined) problems.push(causes.required(`data[${k}]`));
  }
  if (old?.immutable === true && JSON.stringify(old.data ?? {}) !== JSON.stringify(o.data ?? {})) {
    problems.push(causes.forbidden("data", "field is immutable when `immutable` is set"));
  }
  return problems;
}

function prepareLease(o: KObj): StatusCause[] {
  const spec = rec(o.spec);
  checkMicroTime("Lease", spec.acquireTime);
  checkMicroTime("Lease", spec.renewTime);
  const problems: StatusCause[] = [];
  const d = spec.leaseDurationSeconds;
  if (d !== undefined && d !== null && (typeof d !== "number" || !Number.isInteger(d) || d <= 0)) {
    problems.push(causes.invalid("spec.leaseDurationSeconds", d, "must be greater than 0"));
  }
  const t = spec.leaseTransitions;
  if (t !== undefined && t !== null && (typeof t !== "number" || !Number.isInteger(t) || t < 0)) {
    problems.push(causes.invalid("spec.leaseTransitions", t, "must be greater than or equal to 0"));
  }
  o.spec = spec;
  return problems;
}

/** core/v1 Event; `eventTime` set means a "new" event with the stricter rules */
function prepareCoreEvent(o: KObj, old: KObj | undefined): StatusCause[] {
  for (const f of ["firstTimestamp", "lastTimestamp"]) {
    const v = normalizeTime("Event", o[f]);
    if (v === undefined) delete o[f];
    else o[f] = v;
  }
  checkMicroTime("Event", o.eventTime);
  const problems: StatusCause[] = [];
  const ns = o.metadata.namespace ?? "";
  const involved = rec(o.involvedObject);
  const involvedNs = str(involved.namespace);
  if (!o.eventTime) {
    if (involvedNs === "" ? ns !== "" && ns !== "default" : involvedNs !== ns) {
      problems.push(causes.invalid("involvedObject.namespace", involvedNs, "does not match event.namespace"));
    }
  } else {
    if (involvedNs === "" && ns !== "default" && ns !== "kube-system") {
      problems.push(causes.invalid("involvedObject.namespace", involvedNs, "does not match event.namespace"));
    }
    if (!str(o.reportingComponent)) problems.push(causes.required("reportingController"));
    if (!str(o.reportingInstance)) problems.push(causes.required("reportingInstance"));
    if (!str(o.action)) problems.push(causes.required("action"));
    if (!str(o.reason)) problems.push(causes.required("reason"));
    if (o.type !== "Normal" && o.type !== "Warning") {
      problems.push({ reason: "FieldValueNotSupported", message: `Unsupported value: ${JSON.stringify(o.type ?? "")}: supported values: "Normal", "Warning"`, field: "type" });
    }
  }
  if (str(o.message).length > 4096) o.message = str(o.message).slice(0, 4093) + "...";
  if (old) {
    // an update may bump count and lastTimestamp; the reference is fixed
    if (JSON.stringify(old.involvedObject) !== JSON.stringify(o.involvedObject)) problems.push(causes.immutable("involvedObject", o.involvedObject));
  }
  return problems;
}

/** events.k8s.io/v1 <-> core/v1 (same storage, renamed fields) */
const eventFieldMap: [string, string][] = [
  ["regarding", "involvedObject"],
  ["note", "message"],
  ["reportingController", "reportingComponent"],
  ["deprecatedSource", "source"],
  ["deprecatedFirstTimestamp", "firstTimestamp"],
  ["deprecatedLastTimestamp", "lastTimestamp"],
  ["deprecatedCount", "count"],
];

function eventsV1ToCore(o: KObj): KObj {
  const out: KObj = { ...o, apiVersion: "v1", kind: "Event" };
  for (const [from, to] of eventFieldMap) {
    delete out[from];
    if (o[from] !== undefined) out[to] = o[from];
  }
  return out;
}

function coreToEventsV1(o: KObj): KObj {
  const out: KObj = { ...o, apiVersion: "events.k8s.io/v1", kind: "Event" };
  for (const [to, from] of eventFieldMap) {
    delete out[from];
    if (o[from] !== undefined) out[to] = o[from];
  }
  return out;
}

function prepareEventsV1(o: KObj, old: KObj | undefined): StatusCause[] {
  const problems: StatusCause[] = [];
  if (!o.eventTime) problems.push(causes.required("eventTime"));
  return [...problems, ...prepareCoreEvent(o, old)];
}

function prepareService(o: KObj, old: KObj | undefined): StatusCause[] {
  const spec = rec(o.spec);
  if (!spec.type) spec.type = "ClusterIP";
  if (!spec.clusterIP) spec.clusterIP = old ? rec(old.spec).clusterIP : `10.0.${randomInt(0, 255)}.${randomInt(1, 254)}`;
  if (!spec.clusterIPs) spec.clusterIPs = [spec.clusterIP];
  if (!spec.sessionAffinity) spec.sessionAffinity = "None";
  o.spec = spec;
  if (!old) o.status = { loadBalancer: {} };
  return [];
}

function serviceCells(o: KObj, now: Date): unknown[] {
  const spec = rec(o.spec);
  const ingress = (rec(rec(o.status).loadBalancer).ingress as { ip?: string; hostname?: string }[] | undefined) ?? [];
  const external = ingress.map((i) => i.ip ?? i.hostname ?? "").filter(Boolean);
  const ports = ((spec.ports as { port?: number; nodePort?: number; protocol?: string }[] | undefined) ?? [])
    .map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol ?? "TCP"}`)
    .join(",");
  const selector = Object.entries(rec(spec.selector)).map(([k, v]) => `${k}=${String(v)}`).join(",");
  const ext = external.length ? external.join(",") : spec.type === "LoadBalancer" ? "<pending>" : "<none>";
  return [o.metadata.name, spec.type, spec.clusterIP ?? "<none>", ext, ports || "<none>", age(o, now), selector || "<none>"];
}

export const resourceDefs: ResourceDef[] = [
  {
    group: "", version: "v1", resource: "namespaces", singular: "namespace", kind: "Namespace", namespaced: false,
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["ns"], subresources: ["status", "finalize"],
    storage: "namespaces", keepOnUpdate: ["status"],
    prepare: (o, old) => {
      if (!old) o.status = { phase: "Active" };
      return [];
    },
    columns: [nameColumn, { name: "Status", type: "string", description: "The status of the namespace" }, ageColumn],
    cells: (o, now) => [o.metadata.name, str(rec(o.status).phase), age(o, now)],
  },
  {
    group: "", version: "v1", resource: "secrets", singular: "secret", kind: "Secret", namespaced: true, verbs: CRUD,
    storage: "secrets", prepare: prepareSecret,
    extraFields: (o) => ({ type: str(o.type) }),
    columns: [
      nameColumn,
      { name: "Type", type: "string", description: "Used to facilitate programmatic handling of secret data." },
      { name: "Data", type: "integer", description: "Contains the secret data." },
      ageColumn,
    ],
    cells: (o, now) => [o.metadata.name, o.type, Object.keys(rec(o.data)).length, age(o, now)],
  },
  {
    group: "", version: "v1", resource: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, verbs: CRUD,
    shortNames: ["cm"], storage: "configmaps",
    columns: [nameColumn, { name: "Data", type: "integer", description: "Contains the configuration data." }, ageColumn],
    cells: (o, now) => [o.metadata.name, Object.keys(rec(o.data)).length + Object.keys(rec(o.binaryData)).length, age(o, now)],
  },
  {
    group: "", version: "v1", resource: "services", singular: "service", kind: "Service", namespaced: true, verbs: CRUD,
    shortNames: ["svc"], subresources: ["status"], storage: "services", prepare: prepareService, keepOnUpdate: ["status"],
    columns: [
      nameColumn,
      { name: "Type", type: "string", description: "Type determines how the Service is exposed." },
      { name: "Cluster-IP", type: "string", description: "clusterIP is the IP address of the service." },
      { name: "External-IP", type: "string", description: "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service." },
      { name: "Port(s)", type: "string", description: "The list of ports that are exposed by this service." },
      ageColumn,
      { name: "Selector", type: "string", priority: 1, description: "Route service traffic to pods with label keys and values matching this selector." },
    ],
    cells: serviceCells,
  },
  {
    group: "", version: "v1", resource: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount", namespaced: true,
    verbs: CRUD, shortNames: ["sa"], storage: "serviceaccounts",
  },
  {
    group: "", version: "v1", resource: "events", singular: "event", kind: "Event", namespaced: true, verbs: CRUD,
    shortNames: ["ev"], storage: "events", prepare: prepareCoreEvent,
    extraFields: (o) => {
      const io = rec(o.involvedObject);
      const src = rec(o.source);
      return {
        "involvedObject.kind": str(io.kind), "involvedObject.namespace": str(io.namespace), "involvedObject.name": str(io.name),
        "involvedObject.uid": str(io.uid), "involvedObject.apiVersion": str(io.apiVersion),
        "involvedObject.resourceVersion": str(io.resourceVersion), "involvedObject.fieldPath": str(io.fieldPath),
        reason: str(o.reason), reportingComponent: str(o.reportingComponent), source: str(src.component), type: str(o.type),
      };
    },
    columns: [
      { name: "Last Seen", type: "string", description: "Time when this Event was last seen" },
      { name: "Type", type: "string", description: "Type of this event (Normal, Warning)" },
      { name: "Reason", type: "string", description: "Short, machine understandable string that gives the reason for this event being generated." },
      { name: "Object", type: "string", description: "The object this Event is about." },
      { name: "Message", type: "string", description: "A human-readable description of the status of this operation." },
    ],
    cells: (o, now) => {
      const io = rec(o.involvedObject);
      const last = str(o.lastTimestamp) || str(o.eventTime) || str(o.metadata.creationTimestamp);
      return [last ? humanDuration(now.getTime() - Date.parse(last)) : "<unknown>", o.type, o.reason, `${str(io.kind).toLowerCase()}/${str(io.name)}`, o.message];
    },
  },
  {
    group: "events.k8s.io", version: "v1", resource: "events", singular: "event", kind: "Event", namespaced: true, verbs: CRUD,
    shortNames: ["ev"], storage: "events", prepare: prepareEventsV1, toStorage: eventsV1ToCore, fromStorage: coreToEventsV1,
  },
  {
    group: "coordination.k8s.io", version: "v1", resource: "leases", singular: "lease", kind: "Lease", namespaced: true, verbs: CRUD,
    storage: "leases", prepare: (o) => prepareLease(o),
    columns: [nameColumn, { name: "Holder", type: "string", description: "holderIdentity contains the identity of the holder of a current lease." }, ageColumn],
    cells: (o, now) => [o.metadata.name, str(rec(o.spec).holderIdentity), age(o, now)],
  },
  ...(["roles", "rolebindings", "clusterroles", "clusterrolebindings"] as const).map(
    (r): ResourceDef => ({
      group: "rbac.authorization.k8s.io", version: "v1", resource: r, singular: r.slice(0, -1),
      kind: { roles: "Role", rolebindings: "RoleBinding", clusterroles: "ClusterRole", clusterrolebindings: "ClusterRoleBinding" }[r],
      namespaced: !r.startsWith("cluster"), verbs: CRUD, storage: r,
    }),
  ),
];

/** Virtual, create-only resources answered by the server itself (not stored). */
export const reviewDefs: ResourceDef[] = [
  {
    group: "authorization.k8s.io", version: "v1", resource: "selfsubjectaccessreviews", singular: "selfsubjectaccessreview",
    kind: "SelfSubjectAccessReview", namespaced: false, verbs: ["create"], storage: "",
  },
  {
    group: "authorization.k8s.io", version: "v1", resource: "selfsubjectrulesreviews", singular: "selfsubjectrulesreview",
    kind: "SelfSubjectRulesReview", namespaced: false, verbs: ["create"], storage: "",
  },
];

export const allDefs = [...resourceDefs, ...reviewDefs];

export function findDef(group: string, version: string, resource: string): ResourceDef | undefined {
  return allDefs.find((d) => d.group === group && d.version === version && d.resource === resource);
}

export function apiVersionOf(def: ResourceDef): string {
  return def.group === "" ? def.version : `${def.group}/${def.version}`;
}
