/**
 * The object store behind the Kubernetes stand-in, with etcd-like semantics: one global resourceVersion counter,
 * uid and creationTimestamp set by the server, optimistic concurrency on update and delete preconditions,
 * AlreadyExists / NotFound / Conflict / Invalid as the real server reports them, and a bounded change history for
 * watches.
 */
import { randomUUID } from "node:crypto";
import type { KObj, ResourceDef } from "./kube-resources.js";
import { apiVersionOf } from "./kube-resources.js";
import { parseFieldSelector, parseLabelSelector } from "./kube-selectors.js";
import { KubeApiError, statusErrors } from "./kube-status.js";
import { rfc3339Seconds, validateObjectMeta } from "./kube-validation.js";

export type ChangeType = "ADDED" | "MODIFIED" | "DELETED";

export interface StoreChange {
  type: ChangeType;
  /** storage bucket, e.g. "secrets" */
  storage: string;
  /** the object as stored (core representation), a copy */
  object: KObj;
  resourceVersion: number;
}

export interface ListOptions {
  labelSelector?: string | null;
  fieldSelector?: string | null;
}

export interface WriteOptions {
  dryRun?: boolean;
}

const HISTORY = 1000;
const GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789";

const clone = <T>(v: T): T => structuredClone(v);
const keyOf = (ns: string, name: string) => `${ns}/${name}`;

function stableEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sortKeys(x)]));
  }
  return v;
}

export class KubeStore {
  private rv = 1000;
  private readonly buckets = new Map<string, Map<string, KObj>>();
  private readonly listeners = new Set<(c: StoreChange) => void>();
  private readonly history: StoreChange[] = [];
  private readonly now: () => Date;

  constructor(opts: { now?: () => Date } = {}) {
    this.now = opts.now ?? (() => new Date());
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** changes after `rv`, or undefined when they are no longer kept (410 Gone) */
  changesSince(rv: number): StoreChange[] | undefined {
    const first = this.history[0];
    if (first && rv < first.resourceVersion - 1) return undefined;
    return this.history.filter((c) => c.resourceVersion > rv).map(clone);
  }

  onChange(listener: (c: StoreChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private bucket(storage: string): Map<string, KObj> {
    let b = this.buckets.get(storage);
    if (!b) {
      b = new Map();
      this.buckets.set(storage, b);
    }
    return b;
  }

  private emit(type: ChangeType, storage: string, object: KObj): void {
    const change: StoreChange = { type, storage, object: clone(object), resourceVersion: this.rv };
    this.history.push(change);
    if (this.history.length > HISTORY) this.history.shift();
    for (const l of [...this.listeners]) {
      try {
        l(clone(change));
      } catch {
        // a listener's failure is not the writer's
      }
    }
  }

  private gr(def: ResourceDef) {
    return { group: def.group, resource: def.resource };
  }

  private external(def: ResourceDef, o: KObj): KObj {
    const c = clone(o);
    const out = def.fromStorage ? def.fromStorage(c) : c;
    return { apiVersion: apiVersionOf(def), kind: def.kind, ...out };
  }

  namespaceExists(ns: string): boolean {
    return this.bucket("namespaces").has(keyOf("", ns));
  }

  /** raw stored object (core representation) or undefined */
  peek(storage: string, ns: string, name: string): KObj | undefined {
    const o = this.bucket(storage).get(keyOf(ns, name));
    return o ? clone(o) : undefined;
  }

  /** all stored objects of a bucket (core representation), sorted by namespace and name */
  all(storage: string, ns?: string): KObj[] {
    return [...this.bucket(storage).entries()]
      .filter(([k]) => ns === undefined || k.startsWith(`${ns}/`))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => clone(o));
  }

  get(def: ResourceDef, ns: string, name: string): KObj {
    const o = this.bucket(def.storage).get(keyOf(def.namespaced ? ns : "", name));
    if (!o) throw statusErrors.notFound(this.gr(def), name);
    return this.external(def, o);
  }

  /** a predicate for one object, from the list's label and field selectors */
  matcher(def: ResourceDef, opts: ListOptions): (o: KObj) => boolean {
    const supported = ["metadata.name", "metadata.namespace", ...Object.keys(def.extraFields?.({ metadata: {} }) ?? {})];
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(opts.fieldSelector, supported);
    return (o) =>
      labels(o.metadata.labels ?? {}) &&
      fields({ "metadata.name": o.metadata.name ?? "", "metadata.namespace": o.metadata.namespace ?? "", ...(def.extraFields?.(o) ?? {}) });
  }

  list(def: ResourceDef, ns: string | undefined, opts: ListOptions = {}): { items: KObj[]; resourceVersion: string } {
    const match = this.matcher(def, opts);
    const items = this.all(def.storage, def.namespaced ? ns : undefined)
      .filter(match)
      .map((o) => {
        const e = this.external(def, o);
        delete e.apiVersion;
        delete e.kind;
        return e;
      });
    return { items, resourceVersion: this.resourceVersion };
  }

  create(def: ResourceDef, ns: string, body: KObj, opts: WriteOptions = {}): KObj {
    const obj = this.decode(def, body);
    const meta = obj.metadata;
    if (def.namespaced) {
      if (meta.namespace && meta.namespace !== ns) {
        throw statusErrors.badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      meta.namespace = ns;
    } else delete meta.namespace;
    if (!meta.name && meta.generateName) {
      let suffix = "";
      for (let i = 0; i < 5; i++) suffix += GENERATE_CHARS[Math.floor(Math.random() * GENERATE_CHARS.length)];
      meta.name = meta.generateName + suffix;
    }
    if (meta.resourceVersion) {
      throw new KubeApiError({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "resourceVersion should not be set on objects to be created", reason: "InternalError", details: { causes: [{ reason: "", message: "resourceVersion should not be set on objects to be created", field: "" }] }, code: 500 });
    }
    const problems = [...validateObjectMeta(meta), ...(def.prepare?.(obj, undefined) ?? [])];
    if (problems.length) throw statusErrors.invalid({ group: def.group, kind: def.kind }, meta.name ?? "", problems);
    if (def.namespaced && !this.namespaceExists(ns)) throw statusErrors.notFound({ group: "", resource: "namespaces" }, ns);
    const key = keyOf(def.namespaced ? ns : "", meta.name!);
    const b = this.bucket(def.storage);
    if (b.has(key)) throw statusErrors.alreadyExists(this.gr(def), meta.name!);
    meta.uid = randomUUID();
    meta.creationTimestamp = rfc3339Seconds(this.now());
    for (const k of ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]) delete meta[k];
    if (opts.dryRun) {
      meta.resourceVersion = "";
      return this.external(def, obj);
    }
    meta.resourceVersion = String(++this.rv);
    b.set(key, obj);
    this.emit("ADDED", def.storage, obj);
    return this.external(def, obj);
  }

  update(def: ResourceDef, ns: string, name: string, body: KObj, opts: WriteOptions = {}): KObj {
    const obj = this.decode(def, body);
    const meta = obj.metadata;
    if (meta.name && meta.name !== name) {
      throw statusErrors.badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    }
    if (def.namespaced && meta.namespace && meta.namespace !== ns) {
      throw statusErrors.badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const key = keyOf(def.namespaced ? ns : "", name);
    const b = this.bucket(def.storage);
    const old = b.get(key);
    if (!old) throw statusErrors.notFound(this.gr(def), name);
    if (meta.resourceVersion && meta.resourceVersion !== old.metadata.resourceVersion) throw statusErrors.modified(this.gr(def), name);
    if (meta.uid && meta.uid !== old.metadata.uid) {
      throw statusErrors.conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    return this.commitUpdate(def, key, old, obj, opts);
  }

  private commitUpdate(def: ResourceDef, key: string, old: KObj, obj: KObj, opts: WriteOptions): KObj {
    const meta = obj.metadata;
    meta.name = old.metadata.name;
    if (def.namespaced) meta.namespace = old.metadata.namespace;
    else delete meta.namespace;
    meta.uid = old.metadata.uid;
    meta.creationTimestamp = old.metadata.creationTimestamp;
    delete meta.generateName;
    if (old.metadata.generateName) meta.generateName = old.metadata.generateName;
    for (const k of ["managedFields", "selfLink"]) delete meta[k];
    for (const f of def.keepOnUpdate ?? []) {
      if (old[f] === undefined) delete obj[f];
      else obj[f] = clone(old[f]);
    }
    const problems = [...validateObjectMeta(meta), ...(def.prepare?.(obj, old) ?? [])];
    if (problems.length) throw statusErrors.invalid({ group: def.group, kind: def.kind }, meta.name ?? "", problems);
    meta.resourceVersion = old.metadata.resourceVersion;
    if (stableEqual(obj, old)) return this.external(def, old);
    if (opts.dryRun) return this.external(def, obj);
    meta.resourceVersion = String(++this.rv);
    this.bucket(def.storage).set(key, obj);
    this.emit("MODIFIED", def.storage, obj);
    return this.external(def, obj);
  }

  patch(def: ResourceDef, ns: string, name: string, contentType: string, patch: unknown, opts: WriteOptions = {}): KObj {
    const key = keyOf(def.namespaced ? ns : "", name);
    const old = this.bucket(def.storage).get(key);
    if (!old) throw statusErrors.notFound(this.gr(def), name);
    const current = this.external(def, old);
    let patched: unknown;
    if (contentType === "application/merge-patch+json" || contentType === "application/strategic-merge-patch+json") {
      patched = mergePatch(current, patch);
    } else if (contentType === "application/json-patch+json") {
      patched = jsonPatch(current, patch);
    } else throw statusErrors.unsupportedMediaType(contentType);
    const obj = this.decode(def, patched as KObj);
    if (obj.metadata.name !== name) throw statusErrors.badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    if (obj.metadata.resourceVersion && obj.metadata.resourceVersion !== old.metadata.resourceVersion) throw statusErrors.modified(this.gr(def), name);
    if (obj.metadata.uid && obj.metadata.uid !== old.metadata.uid) {
      throw statusErrors.conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${obj.metadata.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    return this.commitUpdate(def, key, old, obj, opts);
  }

  /** Returns the deleted object. */
  delete(def: ResourceDef, ns: string, name: string, preconditions: { uid?: string; resourceVersion?: string } = {}, opts: WriteOptions = {}): KObj {
    const key = keyOf(def.namespaced ? ns : "", name);
    const b = this.bucket(def.storage);
    const old = b.get(key);
    if (!old) throw statusErrors.notFound(this.gr(def), name);
    if (preconditions.uid && preconditions.uid !== old.metadata.uid) {
      throw statusErrors.conflict(this.gr(def), name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    if (preconditions.resourceVersion && preconditions.resourceVersion !== old.metadata.resourceVersion) {
      throw statusErrors.conflict(this.gr(def), name, `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
    }
    if (opts.dryRun) return this.external(def, old);
    b.delete(key);
    this.rv++;
    const gone = clone(old);
    gone.metadata.resourceVersion = String(this.rv);
    this.emit("DELETED", def.storage, gone);
    return this.external(def, old);
  }

  /** Write without validation or concurrency checks (harness seeding). Keeps uid and creationTimestamp of an existing object. */
  put(def: ResourceDef, obj: KObj): KObj {
    const o = this.decode(def, obj);
    const ns = def.namespaced ? (o.metadata.namespace ?? "default") : "";
    if (def.namespaced) o.metadata.namespace = ns;
    const key = keyOf(ns, o.metadata.name ?? "");
    const b = this.bucket(def.storage);
    const old = b.get(key);
    o.metadata.uid = old?.metadata.uid ?? randomUUID();
    o.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? rfc3339Seconds(this.now());
    o.metadata.resourceVersion = String(++this.rv);
    b.set(key, o);
    this.emit(old ? "MODIFIED" : "ADDED", def.storage, o);
    return this.external(def, o);
  }

  /** storage representation of a request body of `def` */
  private decode(def: ResourceDef, body: KObj): KObj {
    if (!body || typeof body !== "object" || Array.isArray(body)) {
      throw statusErrors.badRequest(`Object '${def.kind}' is missing in '${JSON.stringify(body)}'`);
    }
    const apiVersion = apiVersionOf(def);
    if (body.kind !== undefined && body.kind !== def.kind) {
      throw statusErrors.badRequest(`${body.kind} in version "${body.apiVersion ?? ""}" cannot be handled as a ${def.kind}: no kind "${body.kind}" is registered for version "${body.apiVersion ?? ""}" in scheme`);
    }
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersion) {
      throw statusErrors.badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersion})`);
    }
    const c = clone(body);
    c.metadata = c.metadata && typeof c.metadata === "object" ? c.metadata : {};
    const stored = def.toStorage ? def.toStorage(c) : c;
    delete stored.apiVersion;
    delete stored.kind;
    return stored;
  }
}

/** RFC 7386 JSON merge patch (and, for the maps amlcert uses, strategic merge patch) */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== "object" || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === "object" && !Array.isArray(target) ? clone(target as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (k === "$patch" || k.startsWith("$setElementOrder") || k === "$retainKeys") continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON patch: add, remove, replace, test, copy, move */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw statusErrors.badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  let doc = clone(target);
  const parse = (p: string) => p.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  const parentOf = (path: string): [Record<string, unknown> | unknown[], string] => {
    const parts = parse(path);
    const last = parts.pop();
    if (last === undefined) throw statusErrors.badRequest(`jsonpatch: invalid path "${path}"`);
    let cur: unknown = doc;
    for (const p of parts) {
      cur = (cur as Record<string, unknown>)?.[p];
      if (cur === undefined || cur === null || typeof cur !== "object") throw statusErrors.badRequest(`the server rejected our request due to an error in our request: doc is missing path: "${path}"`);
    }
    return [cur as Record<string, unknown>, last];
  };
  const get = (path: string): unknown => {
    let cur: unknown = doc;
    for (const p of parse(path)) cur = (cur as Record<string, unknown> | undefined)?.[p];
    return cur;
  };
  for (const op of ops as { op: string; path: string; value?: unknown; from?: string }[]) {
    if (op.path === "") {
      if (op.op === "add" || op.op === "replace") doc = clone(op.value);
      continue;
    }
    const [parent, key] = parentOf(op.path);
    const isArr = Array.isArray(parent);
    switch (op.op) {
      case "add":
        if (isArr) (parent as unknown[]).splice(key === "-" ? (parent as unknown[]).length : Number(key), 0, clone(op.value));
        else (parent as Record<string, unknown>)[key] = clone(op.value);
        break;
      case "replace":
      case "remove": {
        const exists = isArr ? Number(key) < (parent as unknown[]).length : Object.hasOwn(parent, key);
        if (!exists) throw statusErrors.badRequest(`the server rejected our request due to an error in our request: ${op.op} operation does not apply: doc is missing path: "${op.path}": missing value`);
        if (op.op === "remove") {
          if (isArr) (parent as unknown[]).splice(Number(key), 1);
          else delete (parent as Record<string, unknown>)[key];
        } else if (isArr) (parent as unknown[])[Number(key)] = clone(op.value);
        else (parent as Record<string, unknown>)[key] = clone(op.value);
        break;
      }
      case "test":
        if (!stableEqual(get(op.path), op.value)) throw statusErrors.unprocessable("the server rejected our request due to an error in our request: testing value failed");
        break;
      case "copy":
      case "move": {
        const v = get(op.from ?? "");
        if (op.op === "move") {
          const [fp, fk] = parentOf(op.from ?? "");
          if (Array.isArray(fp)) fp.splice(Number(fk), 1);
          else delete fp[fk];
        }
        const [p2, k2] = parentOf(op.path);
        if (Array.isArray(p2)) p2.splice(k2 === "-" ? p2.length : Number(k2), 0, clone(v));
        else p2[k2] = clone(v);
        break;
      }
      default:
        throw statusErrors.badRequest(`Unexpected kind: ${op.op}`);
    }
  }
  return doc;
}
