/**
 * What the Kubernetes stand-in says about itself: /version, the legacy discovery documents (/api, /api/v1, /apis,
 * /apis/<group>[/<version>]; kubectl asks for aggregated discovery first and falls back to these), the least of
 * OpenAPI v3 kubectl needs, and meta.k8s.io/v1 Tables for `kubectl get`.
 */
import { age, ageColumn, allDefs, apiVersionOf, nameColumn, type KObj, type ResourceDef } from "./kube-resources.js";

const OPENAPI_HASH = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";

/**
 * The least of an OpenAPI v3 document per group version that kubectl needs: its query-parameter verifier looks for a
 * PATCH operation tagged with the kind's x-kubernetes-group-version-kind that accepts `fieldValidation`, and then
 * leaves validation to the server (fieldValidation=Strict) instead of downloading schemas.
 */
function openApiV3(defs: ResourceDef[]): unknown {
  const paths: Record<string, unknown> = {};
  for (const d of defs) {
    if (!d.verbs.includes("patch")) continue;
    const prefix = d.group === "" ? `/api/${d.version}` : `/apis/${d.group}/${d.version}`;
    const path = d.namespaced ? `${prefix}/namespaces/{namespace}/${d.resource}/{name}` : `${prefix}/${d.resource}/{name}`;
    const gvk = { group: d.group, version: d.version, kind: d.kind };
    const query = (name: string) => ({ name, in: "query", schema: { type: "string", uniqueItems: true } });
    const op = (id: string) => ({
      operationId: `${id}${d.kind}`,
      parameters: [query("dryRun"), query("fieldManager"), query("fieldValidation")],
      responses: { "200": { description: "OK" } },
      "x-kubernetes-action": id === "patch" ? "patch" : "put",
      "x-kubernetes-group-version-kind": gvk,
    });
    paths[path] = { get: { operationId: `read${d.kind}`, responses: { "200": { description: "OK" } }, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk }, put: op("replace"), patch: op("patch") };
  }
  return { openapi: "3.0.0", info: { title: "Kubernetes", version: "v1.32.4" }, paths, components: { schemas: {} } };
}

/** The document at a non-resource path (split into segments), or undefined when there is none (404). */
export function discoveryDocument(segs: string[], baseUrl: string): unknown | undefined {
  const path = "/" + segs.join("/");
  if (path === "/version" || path === "/version/") {
    return {
      major: "1", minor: "32", gitVersion: "v1.32.4", gitCommit: "59526cd4867447956156ae3a602fcbac10a2c335",
      gitTreeState: "clean", buildDate: "2025-04-22T16:02:27Z", goVersion: "go1.23.6", compiler: "gc", platform: "linux/amd64",
    };
  }
  if (path === "/api") {
    return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: baseUrl.replace("https://", "") }] };
  }
  const groups = new Map<string, string[]>();
  for (const d of allDefs) {
    if (d.group === "") continue;
    const vs = groups.get(d.group) ?? [];
    if (!vs.includes(d.version)) vs.push(d.version);
    groups.set(d.group, vs);
  }
  if (path === "/apis") {
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: [...groups].map(([name, vs]) => ({
        name,
        versions: vs.map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
        preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] },
      })),
    };
  }
  if (segs[0] === "apis" && segs.length === 2 && groups.has(segs[1]!)) {
    const vs = groups.get(segs[1]!)!;
    return {
      kind: "APIGroup", apiVersion: "v1", name: segs[1],
      versions: vs.map((v) => ({ groupVersion: `${segs[1]}/${v}`, version: v })),
      preferredVersion: { groupVersion: `${segs[1]}/${vs[0]}`, version: vs[0] },
    };
  }
  if (path === "/openapi/v3") {
    const gvs = new Set(allDefs.map((d) => apiVersionOf(d)));
    return {
      paths: Object.fromEntries(
        [...gvs].map((gv) => {
          const p = gv.includes("/") ? `apis/${gv}` : `api/${gv}`;
          return [p, { serverRelativeURL: `/openapi/v3/${p}?hash=${OPENAPI_HASH}` }];
        }),
      ),
    };
  }
  if (segs[0] === "openapi" && segs[1] === "v3" && segs.length > 3) {
    const rest = segs.slice(2);
    const gv = rest[0] === "api" ? ["", rest[1]!] : [rest[1]!, rest[2]!];
    const defs = allDefs.filter((d) => d.group === gv[0] && d.version === gv[1]);
    return defs.length ? openApiV3(defs) : undefined;
  }
  let gv: [string, string] | undefined;
  if (segs[0] === "api" && segs.length === 2) gv = ["", segs[1]!];
  if (segs[0] === "apis" && segs.length === 3) gv = [segs[1]!, segs[2]!];
  if (gv) {
    const defs = allDefs.filter((d) => d.group === gv[0] && d.version === gv[1]);
    if (defs.length === 0) return undefined;
    const resources: unknown[] = [];
    for (const d of defs) {
      const r: Record<string, unknown> = { name: d.resource, singularName: d.singular, namespaced: d.namespaced, kind: d.kind, verbs: d.verbs };
      if (d.shortNames) r.shortNames = d.shortNames;
      resources.push(r);
      for (const sub of d.subresources ?? []) {
        resources.push({ name: `${d.resource}/${sub}`, singularName: "", namespaced: d.namespaced, kind: d.kind, verbs: sub === "finalize" ? ["update"] : ["get", "patch", "update"] });
      }
    }
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: gv[0] ? `${gv[0]}/${gv[1]}` : gv[1], resources };
  }
  return undefined;
}

/** A meta.k8s.io/v1 Table of `items`; `includeObject` is None, Metadata (the default) or Object, as the query asks. */
export function toTable(d: ResourceDef, items: KObj[], listMeta: Record<string, unknown>, includeObject: string, t: Date): unknown {
  const columns = d.columns ?? [nameColumn, ageColumn];
  const cells = d.cells ?? ((o: KObj, n: Date) => [o.metadata.name, age(o, n)]);
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: listMeta,
    columnDefinitions: columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? "", description: c.description, priority: c.priority ?? 0 })),
    rows: items.map((o) => {
      const row: Record<string, unknown> = { cells: cells(o, t) };
      if (includeObject === "Object") row.object = { apiVersion: apiVersionOf(d), kind: d.kind, ...o };
      else if (includeObject !== "None") row.object = { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
      return row;
    }),
  };
}
