/**
 * RBAC as the API server's authorizer applies it: request attributes (verb, API group, resource, subresource, name,
 * namespace or non-resource path) are allowed when any (Cluster)RoleBinding that names the user, one of its groups or
 * its ServiceAccount grants a matching rule. Roles and bindings are read from the store on every request, so a test
 * that edits the Role sees the effect at once. Includes the built-in roles every cluster has (discovery, self
 * reviews, cluster-admin for system:masters).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";
import type { KObj } from "./kube-resources.js";

export interface UserInfo {
  name: string;
  groups: string[];
}

export interface RequestAttributes {
  user: UserInfo;
  verb: string;
  resourceRequest: boolean;
  /** for non-resource requests */
  path: string;
  namespace: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  name: string;
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface Subject {
  kind: "User" | "Group" | "ServiceAccount";
  name: string;
  namespace?: string;
}

interface Binding {
  kind: "RoleBinding" | "ClusterRoleBinding";
  name: string;
  namespace: string;
  roleRef: { kind: "Role" | "ClusterRole"; name: string };
  subjects: Subject[];
}

/** What the authorizer reads: roles and bindings as stored objects. */
export interface RbacSource {
  roles(namespace: string): KObj[];
  clusterRoles(): KObj[];
  roleBindings(namespace: string): KObj[];
  clusterRoleBindings(): KObj[];
}

export const serviceAccountUser = (namespace: string, name: string): UserInfo => ({
  name: `system:serviceaccount:${namespace}:${name}`,
  groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
});

/** The Roles, RoleBindings, ClusterRoles, ClusterRoleBindings and ServiceAccounts of a multi-document YAML file. */
export function loadRbacFile(path: string): KObj[] {
  const docs = parseAllDocuments(readFileSync(path, "utf8"));
  const out: KObj[] = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const o = doc.toJS() as KObj | null;
    if (!o) continue;
    if (!["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(o.kind ?? "")) {
      throw new Error(`${path}: unexpected kind ${o.kind} (an RBAC file holds ServiceAccounts, Roles and bindings)`);
    }
    out.push(o);
  }
  return out;
}

/** The overlays of deploy/overlays/ (kubectl apply -k deploy/overlays/<name>). */
export const DEPLOY_OVERLAYS = ["cronjob", "daemon", "versioned"] as const;
export type DeployOverlay = (typeof DEPLOY_OVERLAYS)[number];

/** Every object of a kustomization directory, as the real `kubectl kustomize` renders it. */
export function renderKustomization(dir: string): KObj[] {
  const text = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(`kubectl kustomize ${dir}: ${d.errors.map((e) => e.message).join("; ")}`);
      return d.toJS() as KObj | null;
    })
    .filter((o): o is KObj => o !== null);
}

const RBAC_KINDS = ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"];

/** The ServiceAccounts, Roles and bindings among rendered manifests (what an RBAC file holds). */
export const rbacObjectsOf = (objects: KObj[]): KObj[] => objects.filter((o) => RBAC_KINDS.includes(o.kind ?? ""));

/**
 * What the manifests create for amlcert to read and write (contract C1: the certificate slots, the ACME account
 * secret, the Lease, the history ConfigMap), in namespace `ns`: the rendered Secrets, Leases and ConfigMaps, except
 * the generated configuration (amlcert-config-<hash>), which only the pod mounts.
 */
export const stateObjectsOf = (objects: KObj[], ns = "azureml"): KObj[] =>
  objects.filter((o) => ["Secret", "Lease", "ConfigMap"].includes(o.kind ?? "") && o.metadata.namespace === ns && !(o.metadata.name ?? "").startsWith("amlcert-config-"));

/** The target secretName the shipped manifests are written for (deploy/base/amlcert.yaml; manifests.test.ts checks it). */
export const SHIPPED_SECRET_NAME = "amlcert-tls";

export interface DeployManifests {
  /** the ServiceAccount, Role and RoleBinding, as an RBAC file holds them */
  rbac: KObj[];
  /** the objects amlcert reads and writes, created empty by the manifests (stateObjectsOf) */
  state: KObj[];
}

/** The names a configuration gives the objects the manifests create (the shipped ones: amlcert-tls, ...). */
export interface ManifestNames {
  /** each target's secretName: its two slots <name>-a and <name>-b */
  secretNames: string[];
  /** acme.accountKey.secret (of every configuration that is used) */
  accountSecrets: string[];
  /** history.configMap */
  historyConfigMaps: string[];
}

const SHIPPED_NAMES: ManifestNames = { secretNames: [SHIPPED_SECRET_NAME], accountSecrets: ["amlcert-acme-account"], historyConfigMaps: ["amlcert-history"] };
const LABEL_SECRET_BASE = "amlcert.io/secret-base";
const rendered = new Map<string, KObj[]>();

/**
 * What `kubectl apply -k deploy/overlays/<overlay>` puts in a cluster, RBAC and state, after the edits README tells a
 * user to make when the configuration names its objects differently: the slot Secrets once per secretName (names and
 * secret-base label), the account secret and the history ConfigMap renamed, and the Role's resourceNames the same
 * names. Nothing else changes: the rules are the shipped ones. The overlay is rendered by `kubectl kustomize` once
 * per process.
 */
export function deployManifestsFor(root: string, overlay: DeployOverlay, names: ManifestNames): DeployManifests {
  const dir = `${root}/deploy/overlays/${overlay}`;
  const objects = rendered.get(dir) ?? renderKustomization(dir);
  rendered.set(dir, objects);
  const slotsOf = (base: string) => [`${base}-a`, `${base}-b`];
  const out: KObj[] = [];
  for (const shipped of objects) {
    const o = structuredClone(shipped);
    const name = o.metadata.name ?? "";
    if (o.kind === "Secret" && o.metadata.labels?.[LABEL_SECRET_BASE] === SHIPPED_SECRET_NAME) {
      const suffix = name.slice(SHIPPED_SECRET_NAME.length);
      for (const base of names.secretNames) {
        const slot = structuredClone(o);
        slot.metadata.name = `${base}${suffix}`;
        slot.metadata.labels = { ...slot.metadata.labels, [LABEL_SECRET_BASE]: base };
        out.push(slot);
      }
      continue;
    }
    const renamed = (list: string[]) =>
      list.map((n) => {
        const c = structuredClone(o);
        c.metadata.name = n;
        return c;
      });
    if (o.kind === "Secret" && name === SHIPPED_NAMES.accountSecrets[0]) {
      out.push(...renamed(names.accountSecrets));
      continue;
    }
    if (o.kind === "ConfigMap" && name === SHIPPED_NAMES.historyConfigMaps[0]) {
      out.push(...renamed(names.historyConfigMaps));
      continue;
    }
    if (o.kind === "Role") {
      for (const r of (o.rules as { resources?: string[]; resourceNames?: string[] }[] | undefined) ?? []) {
        if (!r.resourceNames) continue;
        if (r.resources?.includes("secrets")) r.resourceNames = [...names.secretNames.flatMap(slotsOf), ...names.accountSecrets];
        if (r.resources?.includes("configmaps")) r.resourceNames = [...names.historyConfigMaps];
      }
    }
    out.push(o);
  }
  return { rbac: rbacObjectsOf(out), state: stateObjectsOf(out) };
}

/** deployManifestsFor with the shipped names, but the one target's secretName `secretName`. */
export const deployManifests = (root: string, overlay: DeployOverlay, secretName = SHIPPED_SECRET_NAME): DeployManifests =>
  deployManifestsFor(root, overlay, { ...SHIPPED_NAMES, secretNames: [secretName] });

/** A multi-document YAML of `objects` (an RBAC file for startKubeServer's rbacFile). */
export const toYamlDocuments = (objects: KObj[]): string => objects.map((o) => stringify(o)).join("---\n");

/** ClusterRoles and ClusterRoleBindings that every cluster has (the parts of them that matter here). */
export function builtinRbac(): KObj[] {
  const crb = (name: string, role: string, groups: string[]): KObj => ({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name, labels: { "kubernetes.io/bootstrapping": "rbac-defaults" } },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
    subjects: groups.map((g) => ({ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: g })),
  });
  const cr = (name: string, rules: PolicyRule[]): KObj => ({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name, labels: { "kubernetes.io/bootstrapping": "rbac-defaults" } },
    rules,
  });
  return [
    cr("cluster-admin", [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }, { nonResourceURLs: ["*"], verbs: ["*"] }]),
    crb("cluster-admin", "cluster-admin", ["system:masters"]),
    cr("system:discovery", [
      { nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], verbs: ["get"] },
    ]),
    crb("system:discovery", "system:discovery", ["system:authenticated"]),
    cr("system:basic-user", [
      { apiGroups: ["authorization.k8s.io"], resources: ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], verbs: ["create"] },
      { apiGroups: ["authentication.k8s.io"], resources: ["selfsubjectreviews"], verbs: ["create"] },
    ]),
    crb("system:basic-user", "system:basic-user", ["system:authenticated"]),
    cr("system:public-info-viewer", [{ nonResourceURLs: ["/healthz", "/livez", "/readyz", "/version", "/version/"], verbs: ["get"] }]),
    crb("system:public-info-viewer", "system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
  ];
}

const has = (list: string[] | undefined, v: string) => (list ?? []).some((x) => x === "*" || x === v);

export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!a.resourceRequest) {
    return (rule.nonResourceURLs ?? []).some((u) => u === "*" || u === a.path || (u.endsWith("*") && a.path.startsWith(u.slice(0, -1))));
  }
  if (!has(rule.apiGroups, a.apiGroup)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resources = rule.resources ?? [];
  const resourceOk = resources.some((r) => r === "*" || r === combined || (a.subresource !== "" && r === `*/${a.subresource}`));
  if (!resourceOk) return false;
  const names = rule.resourceNames ?? [];
  return names.length === 0 || (a.name !== "" && names.includes(a.name));
}

function subjectMatches(s: Subject, user: UserInfo, bindingNamespace: string): string | undefined {
  switch (s.kind) {
    case "User":
      return s.name === user.name ? `User "${s.name}"` : undefined;
    case "Group":
      return user.groups.includes(s.name) ? `Group "${s.name}"` : undefined;
    case "ServiceAccount": {
      const ns = s.namespace ?? bindingNamespace;
      return user.name === `system:serviceaccount:${ns}:${s.name}` ? `ServiceAccount "${s.name}/${ns}"` : undefined;
    }
    default:
      return undefined;
  }
}

const asBinding = (o: KObj, kind: Binding["kind"]): Binding => ({
  kind,
  name: o.metadata.name ?? "",
  namespace: o.metadata.namespace ?? "",
  roleRef: o.roleRef as Binding["roleRef"],
  subjects: (o.subjects as Subject[] | undefined) ?? [],
});

export function authorize(src: RbacSource, a: RequestAttributes): Decision {
  const rulesOf = (ref: Binding["roleRef"], ns: string): PolicyRule[] => {
    const role =
      ref.kind === "ClusterRole"
        ? src.clusterRoles().find((r) => r.metadata.name === ref.name)
        : src.roles(ns).find((r) => r.metadata.name === ref.name);
    return (role?.rules as PolicyRule[] | undefined) ?? [];
  };
  const check = (b: Binding): string | undefined => {
    for (const s of b.subjects) {
      const who = subjectMatches(s, a.user, b.namespace);
      if (!who) continue;
      if (rulesOf(b.roleRef, b.namespace).some((r) => ruleAllows(r, a))) {
        const bname = b.kind === "RoleBinding" ? `"${b.name}/${b.namespace}"` : `"${b.name}"`;
        return `RBAC: allowed by ${b.kind} ${bname} of ${b.roleRef.kind} "${b.roleRef.name}" to ${who}`;
      }
    }
    return undefined;
  };
  for (const o of src.clusterRoleBindings()) {
    const reason = check(asBinding(o, "ClusterRoleBinding"));
    if (reason) return { allowed: true, reason };
  }
  if (a.resourceRequest && a.namespace) {
    for (const o of src.roleBindings(a.namespace)) {
      const reason = check(asBinding(o, "RoleBinding"));
      if (reason) return { allowed: true, reason };
    }
  }
  return { allowed: false, reason: "" };
}

/** The real server's Forbidden wording (responsewriters.forbiddenMessage). */
export function forbiddenMessage(a: RequestAttributes): string {
  if (!a.resourceRequest) return `User "${a.user.name}" cannot ${a.verb} path "${a.path}"`;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  if (a.namespace) {
    return `User "${a.user.name}" cannot ${a.verb} resource "${resource}" in API group "${a.apiGroup}" in the namespace "${a.namespace}"`;
  }
  return `User "${a.user.name}" cannot ${a.verb} resource "${resource}" in API group "${a.apiGroup}" at the cluster scope`;
}

/** Rules that apply to `user` in `namespace` (SelfSubjectRulesReview). */
export function rulesFor(src: RbacSource, user: UserInfo, namespace: string): PolicyRule[] {
  const out: PolicyRule[] = [];
  const collect = (b: Binding, roleNs: string) => {
    if (!b.subjects.some((s) => subjectMatches(s, user, b.namespace))) return;
    const role =
      b.roleRef.kind === "ClusterRole"
        ? src.clusterRoles().find((r) => r.metadata.name === b.roleRef.name)
        : src.roles(roleNs).find((r) => r.metadata.name === b.roleRef.name);
    out.push(...((role?.rules as PolicyRule[] | undefined) ?? []));
  };
  for (const o of src.clusterRoleBindings()) collect(asBinding(o, "ClusterRoleBinding"), "");
  if (namespace) for (const o of src.roleBindings(namespace)) collect(asBinding(o, "RoleBinding"), namespace);
  return out;
}
