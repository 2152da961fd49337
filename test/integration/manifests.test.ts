/**
 * The shipped manifests as `kubectl kustomize` (kustomize built into the real kubectl) renders each overlay:
 * every object validates against the Kubernetes OpenAPI schemas (kubernetes-models, offline; the Prometheus
 * operator's CRD schemas for ServiceMonitor and PrometheusRule), both pod templates meet the Pod Security Standard
 * "restricted", the default Role names every Secret it touches and grants no list, watch or `*`, the objects that
 * Role cannot create are in the manifests (contract C1), and the NetworkPolicy lets out only DNS, the API and HTTPS.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isMap, isSeq, parseAllDocuments, type YAMLMap } from "yaml";
import { ROOT } from "../harness/harness.js";
import { loadConfig } from "../../src/config/load.js";
import type { KObj as K } from "../servers/kube-resources.js";
import { DEPLOY_OVERLAYS, renderKustomization, type DeployOverlay } from "../servers/kube-rbac.js";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as batch from "kubernetes-models/batch/v1";
import * as coordination from "kubernetes-models/coordination.k8s.io/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as rbac from "kubernetes-models/rbac.authorization.k8s.io/v1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

type KObj = K & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } };

const OVERLAYS = DEPLOY_OVERLAYS;
type Overlay = DeployOverlay;
const renderOverlay = (overlay: Overlay) => renderKustomization(`${ROOT}/deploy/overlays/${overlay}`) as KObj[];

const rendered = Object.fromEntries(OVERLAYS.map((o) => [o, renderOverlay(o)])) as Record<Overlay, KObj[]>;
const one = (objs: KObj[], kind: string, name?: string) => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0]! as any;
};

/** The schema modules by apiVersion: kubernetes-models for built-in kinds, the operator's package for its CRDs. */
const MODELS: Record<string, Record<string, unknown>> = {
  v1: core,
  "apps/v1": apps,
  "batch/v1": batch,
  "coordination.k8s.io/v1": coordination,
  "networking.k8s.io/v1": networking,
  "rbac.authorization.k8s.io/v1": rbac,
  "monitoring.coreos.com/v1": monitoring,
};

function modelFor(apiVersion: string, kind: string): new (o: unknown) => { validate(): void } {
  const model = MODELS[apiVersion]?.[kind];
  if (typeof model !== "function") throw new Error(`no schema for ${apiVersion} ${kind}`);
  return model as new (o: unknown) => { validate(): void };
}

async function schemaProblems(o: KObj): Promise<string | undefined> {
  const Model = modelFor(o.apiVersion, o.kind);
  try {
    new Model(o).validate();
    return undefined;
  } catch (err) {
    return `${o.kind} ${o.metadata.name}: ${(err as Error).message}`;
  }
}

// --- Pod Security Standard "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/) ---

const RESTRICTED_VOLUME_TYPES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/** Every way `pod` breaks the restricted profile (baseline checks included), each naming the field. */
function restrictedProblems(pod: any): string[] {
  const p: string[] = [];
  const psc = pod.securityContext ?? {};
  for (const f of ["hostNetwork", "hostPID", "hostIPC"]) if (pod[f] === true) p.push(`spec.${f} is true`);
  for (const v of pod.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== "name");
    if (!type || !RESTRICTED_VOLUME_TYPES.includes(type)) p.push(`volume ${v.name} is of type ${type}`);
  }
  if (psc.runAsUser === 0) p.push("spec.securityContext.runAsUser is 0");
  const podSeccomp = psc.seccompProfile?.type;
  if (podSeccomp !== undefined && !["RuntimeDefault", "Localhost"].includes(podSeccomp)) p.push(`spec.securityContext.seccompProfile.type is ${podSeccomp}`);
  if ((psc.sysctls ?? []).length > 0) p.push("spec.securityContext.sysctls is set");
  if (psc.seLinuxOptions?.type !== undefined && !["container_t", "container_init_t", "container_kvm_t"].includes(psc.seLinuxOptions.type)) p.push("spec.securityContext.seLinuxOptions.type is not allowed");
  const containers = [...(pod.initContainers ?? []), ...(pod.containers ?? []), ...(pod.ephemeralContainers ?? [])];
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const at = `container ${c.name}`;
    if (sc.privileged === true) p.push(`${at}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) p.push(`${at}: allowPrivilegeEscalation is not false`);
    if (sc.runAsNonRoot !== true && psc.runAsNonRoot !== true) p.push(`${at}: runAsNonRoot is not true (neither container nor pod)`);
    if (sc.runAsNonRoot === false) p.push(`${at}: runAsNonRoot is false`);
    if (sc.runAsUser === 0) p.push(`${at}: runAsUser is 0`);
    const seccomp = sc.seccompProfile?.type ?? podSeccomp;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp)) p.push(`${at}: seccompProfile.type is ${seccomp ?? "unset"} (neither container nor pod)`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) p.push(`${at}: capabilities.drop does not include ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== "NET_BIND_SERVICE") p.push(`${at}: capabilities.add ${cap}`);
    if (sc.procMount !== undefined && sc.procMount !== "Default") p.push(`${at}: procMount ${sc.procMount}`);
    for (const port of c.ports ?? []) if (port.hostPort) p.push(`${at}: hostPort ${port.hostPort}`);
  }
  return p;
}

const podTemplates = (objs: KObj[]) =>
  objs.flatMap((o: any) => (o.kind === "CronJob" ? [o.spec.jobTemplate.spec.template] : o.kind === "Deployment" ? [o.spec.template] : []));

// --- RBAC ---

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** What makes a Role broader than it must be, each problem naming the rule. */
function roleProblems(role: KObj): string[] {
  const p: string[] = [];
  ((role.rules as Rule[] | undefined) ?? []).forEach((r, i) => {
    const at = `rules[${i}] (${(r.resources ?? []).join(",")})`;
    for (const f of ["apiGroups", "resources", "verbs", "resourceNames"] as const) {
      if ((r[f] ?? []).includes("*")) p.push(`${at}: ${f} contains *`);
    }
    if ((r.resources ?? []).some((x) => x === "secrets" || x.startsWith("secrets/"))) {
      for (const v of ["list", "watch"]) if (r.verbs.includes(v)) p.push(`${at}: ${v} on secrets`);
      if (!r.resourceNames || r.resourceNames.length === 0) p.push(`${at}: a secrets rule without resourceNames`);
    }
  });
  return p;
}

/** The default Role of contract C1, for target secretName `base`. */
const contractRules = (base: string): Rule[] => [
  { apiGroups: [""], resources: ["secrets"], resourceNames: [`${base}-a`, `${base}-b`, "amlcert-acme-account"], verbs: ["get", "update"] },
  { apiGroups: [""], resources: ["services"], resourceNames: ["azureml-fe"], verbs: ["get"] },
  { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: ["amlcert"], verbs: ["get", "update"] },
  { apiGroups: [""], resources: ["configmaps"], resourceNames: ["amlcert-history"], verbs: ["get", "update"] },
  { apiGroups: [""], resources: ["events"], verbs: ["create"] },
];

const configOf = (objs: KObj[]) => {
  const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("amlcert-config-")) as any;
  return loadConfig({ path: "amlcert.yaml", env: {}, readFile: () => cm.data["amlcert.yaml"] }).config;
};

describe("deploy/overlays (kubectl kustomize): every rendered object validates against its schema", () => {
  it.each(OVERLAYS)("when overlay %s is rendered, every object is valid for kubernetes-models / the operator's CRDs", async (overlay) => {
    const problems = (await Promise.all(rendered[overlay].map(schemaProblems))).filter((x) => x !== undefined);
    expect(problems).toEqual([]);
  });

  it("the schema check fails on an object that breaks its schema (a string runAsUser, a numeric ServiceMonitor port)", async () => {
    const cron = structuredClone(one(rendered.cronjob, "CronJob"));
    cron.spec.jobTemplate.spec.template.spec.securityContext.runAsUser = "65532";
    expect(await schemaProblems(cron)).toContain("runAsUser must be integer");
    const sm = structuredClone(one(rendered.daemon, "ServiceMonitor"));
    sm.spec.endpoints[0].port = 9464;
    expect(await schemaProblems(sm)).toContain("port must be string");
  });

  it("each overlay renders exactly its objects, in namespace azureml (the PrometheusRule in monitoring)", () => {
    const ids = (objs: KObj[]) => objs.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name.replace(/^amlcert-config-.*/, "amlcert-config-<hash>")}`).sort();
    const base = [
      "ConfigMap/azureml/amlcert-config-<hash>",
      "ConfigMap/azureml/amlcert-history",
      "Lease/azureml/amlcert",
      "NetworkPolicy/azureml/amlcert",
      "Role/azureml/amlcert",
      "RoleBinding/azureml/amlcert",
      "Secret/azureml/amlcert-acme-account",
      "Secret/azureml/amlcert-tls-a",
      "Secret/azureml/amlcert-tls-b",
      "ServiceAccount/azureml/amlcert",
    ];
    expect(ids(rendered.cronjob)).toEqual([...base, "CronJob/azureml/amlcert"].sort());
    expect(ids(rendered.versioned)).toEqual([...base, "CronJob/azureml/amlcert"].sort());
    expect(ids(rendered.daemon)).toEqual(
      [...base, "Deployment/azureml/amlcert", "Service/azureml/amlcert-metrics", "ServiceMonitor/azureml/amlcert", "NetworkPolicy/azureml/amlcert-metrics", "PrometheusRule/monitoring/amlcert"].sort(),
    );
  });
});

describe("deploy/overlays: the pods meet the Pod Security Standard restricted", () => {
  it.each(OVERLAYS)("when overlay %s is rendered, its pod template has no restricted violation", (overlay) => {
    const pods = podTemplates(rendered[overlay]);
    expect(pods).toHaveLength(1);
    expect(restrictedProblems(pods[0].spec)).toEqual([]);
  });

  it.each(OVERLAYS)("overlay %s: non-root uid and gid 65532 (the Dockerfile's USER), no escalation, no capabilities, read-only root filesystem", (overlay) => {
    const pod = podTemplates(rendered[overlay])[0].spec;
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } });
    expect(pod.containers[0].securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(readFileSync(`${ROOT}/Dockerfile`, "utf8")).toMatch(/^USER 65532:65532$/m);
    expect(pod.hostNetwork ?? false).toBe(false);
  });

  it("the restricted check finds each violation it looks for", () => {
    const good = podTemplates(rendered.cronjob)[0].spec;
    const broken = (edit: (p: any) => void) => {
      const p = structuredClone(good);
      edit(p);
      return restrictedProblems(p);
    };
    expect(broken((p) => (p.hostNetwork = true))).toEqual(["spec.hostNetwork is true"]);
    expect(broken((p) => p.volumes.push({ name: "h", hostPath: { path: "/" } }))).toEqual(["volume h is of type hostPath"]);
    expect(broken((p) => (p.containers[0].securityContext.allowPrivilegeEscalation = true))).toEqual(["container amlcert: allowPrivilegeEscalation is not false"]);
    expect(broken((p) => ((p.securityContext.runAsNonRoot = undefined), (p.containers[0].securityContext.runAsNonRoot = undefined)))).toEqual(["container amlcert: runAsNonRoot is not true (neither container nor pod)"]);
    expect(broken((p) => (p.securityContext.seccompProfile = undefined))).toEqual(["container amlcert: seccompProfile.type is unset (neither container nor pod)"]);
    expect(broken((p) => (p.containers[0].securityContext.capabilities = { drop: ["ALL"], add: ["NET_ADMIN"] }))).toEqual(["container amlcert: capabilities.add NET_ADMIN"]);
    expect(broken((p) => (p.containers[0].securityContext.capabilities = {}))).toEqual(["container amlcert: capabilities.drop does not include ALL"]);
    expect(broken((p) => (p.securityContext.runAsUser = 0))).toEqual(["spec.securityContext.runAsUser is 0"]);
    expect(broken((p) => (p.containers[0].securityContext.privileged = true))).toEqual(["container amlcert: privileged"]);
    expect(broken((p) => (p.containers[0].ports = [{ containerPort: 80, hostPort: 80 }]))).toEqual(["container amlcert: hostPort 80"]);
  });

  it.each(OVERLAYS)("overlay %s: workload identity (pod label, ServiceAccount with the client-id annotation), and the config read-only with /tmp the only writable path", (overlay) => {
    const objs = rendered[overlay];
    const tpl = podTemplates(objs)[0];
    expect(tpl.metadata.labels["azure.workload.identity/use"]).toBe("true");
    expect(tpl.spec.serviceAccountName).toBe("amlcert");
    expect(one(objs, "ServiceAccount", "amlcert").metadata.annotations).toEqual({ "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000" });
    const config = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("amlcert-config-"))!;
    expect(tpl.spec.volumes).toEqual([
      { name: "config", configMap: { name: config.metadata.name } },
      { name: "tmp", emptyDir: { sizeLimit: "16Mi" } },
    ]);
    expect(tpl.spec.containers[0].volumeMounts).toEqual([
      { name: "config", mountPath: "/etc/amlcert", readOnly: true },
      { name: "tmp", mountPath: "/tmp" },
    ]);
  });
});

describe("deploy/overlays: the Role names what it touches", () => {
  it.each(["cronjob", "daemon"] as const)("overlay %s: the Role grants no list or watch on Secrets, no Secrets rule without resourceNames, no *", (overlay) => {
    expect(roleProblems(one(rendered[overlay], "Role", "amlcert"))).toEqual([]);
  });

  it.each(["cronjob", "daemon"] as const)("overlay %s: the Role is exactly contract C1's default Role for the configured secretName", (overlay) => {
    const base = configOf(rendered[overlay]).targets[0]!.secretName;
    expect(base).toBe("amlcert-tls");
    expect(one(rendered[overlay], "Role", "amlcert").rules).toEqual(contractRules(base));
    const binding = one(rendered[overlay], "RoleBinding", "amlcert");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "amlcert" });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "amlcert", namespace: "azureml" }]);
  });

  it("overlay versioned adds exactly one rule, Secrets get/list/create/update/delete, and nothing else (still no watch, patch or *)", () => {
    const rules = one(rendered.versioned, "Role", "amlcert").rules as Rule[];
    expect(rules.slice(0, -1)).toEqual(contractRules("amlcert-tls"));
    expect(rules.at(-1)).toEqual({ apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "create", "update", "delete"] });
    expect(roleProblems(one(rendered.versioned, "Role", "amlcert"))).toEqual(["rules[5] (secrets): list on secrets", "rules[5] (secrets): a secrets rule without resourceNames"]);
    const cron = one(rendered.versioned, "CronJob");
    expect(cron.spec.jobTemplate.spec.template.spec.containers[0].env).toContainEqual({ name: "AMLCERT_RENEWAL_SECRET_MODE", value: "versioned" });
  });

  it("the Role check finds a wildcard, a watch and an unnamed Secrets rule", () => {
    const role = structuredClone(one(rendered.cronjob, "Role", "amlcert"));
    role.rules[0].verbs.push("watch");
    role.rules[1].verbs = ["*"];
    role.rules.push({ apiGroups: [""], resources: ["secrets"], verbs: ["create"] });
    expect(roleProblems(role)).toEqual(["rules[0] (secrets): watch on secrets", "rules[1] (services): verbs contains *", "rules[5] (secrets): a secrets rule without resourceNames"]);
  });

  it("every rule in deploy/base/rbac.yaml and every patch of the versioned component carries a comment saying what needs it", () => {
    const docs = parseAllDocuments(readFileSync(`${ROOT}/deploy/base/rbac.yaml`, "utf8"));
    const role = docs.find((d) => d.get("kind") === "Role")!;
    const rules = role.get("rules") as unknown;
    expect(isSeq(rules)).toBe(true);
    const items = (rules as { items: YAMLMap[] }).items;
    expect(items).toHaveLength(5);
    items.forEach((item, i) => {
      expect(isMap(item)).toBe(true);
      // the comment above a sequence item is kept on the item, or (for the first) on the sequence
      const comment = item.commentBefore ?? (i === 0 ? (rules as { commentBefore?: string }).commentBefore : undefined);
      expect(comment, `rules[${i}] has no comment`).toMatch(/\S{3,}/);
    });
    // the versioned component's extra rule: each verb with its reason, in the file's header
    const component = readFileSync(`${ROOT}/deploy/components/versioned/kustomization.yaml`, "utf8");
    for (const verb of ["list", "create", "get, update", "delete"]) expect(component).toMatch(new RegExp(`^#  - ${verb}: +\\S`, "m"));
  });
});

describe("deploy/base/state.yaml: the objects the default Role may not create (contract C1)", () => {
  it.each(OVERLAYS)("overlay %s: both slots, the account secret, the Lease and the history, empty, with the names the config and the Role use", (overlay) => {
    const objs = rendered[overlay];
    const config = configOf(objs);
    const base = config.targets[0]!.secretName;
    const labels = { "app.kubernetes.io/managed-by": "amlcert", "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/part-of": "amlcert" };
    for (const slot of [`${base}-a`, `${base}-b`]) {
      const s = one(objs, "Secret", slot);
      expect(s).toEqual({ apiVersion: "v1", kind: "Secret", type: "Opaque", metadata: { name: slot, namespace: "azureml", labels: { ...labels, "amlcert.io/secret-base": base } } });
    }
    expect(config.acme.accountKey.secret).toBe("amlcert-acme-account");
    expect(one(objs, "Secret", "amlcert-acme-account")).toEqual({ apiVersion: "v1", kind: "Secret", type: "Opaque", metadata: { name: "amlcert-acme-account", namespace: "azureml", labels } });
    expect(one(objs, "Lease", "amlcert")).toEqual({ apiVersion: "coordination.k8s.io/v1", kind: "Lease", spec: {}, metadata: { name: "amlcert", namespace: "azureml", labels: { "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/part-of": "amlcert" } } });
    expect(config.history.configMap).toBe("amlcert-history");
    expect(one(objs, "ConfigMap", "amlcert-history")).toEqual({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "amlcert-history", namespace: "azureml", labels: { "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/part-of": "amlcert" } } });
  });
});

describe("deploy/base/networkpolicy.yaml: egress to DNS, the Kubernetes API and HTTPS only", () => {
  it.each(OVERLAYS)("overlay %s: the pods' egress is 53/UDP, 53/TCP, 443/TCP and 6443/TCP, nothing else", (overlay) => {
    const np = one(rendered[overlay], "NetworkPolicy", "amlcert");
    expect(np.spec).toEqual({
      podSelector: { matchLabels: { "app.kubernetes.io/name": "amlcert" } },
      policyTypes: ["Egress"],
      egress: [
        { ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] },
        { ports: [{ protocol: "TCP", port: 443 }] },
        { ports: [{ protocol: "TCP", port: 6443 }] },
      ],
    });
    // it selects the pod it is meant for
    const tpl = podTemplates(rendered[overlay])[0];
    expect(tpl.metadata.labels["app.kubernetes.io/name"]).toBe("amlcert");
  });

  it("overlay daemon: only the metrics port is open inbound, on the daemon's pods", () => {
    const np = one(rendered.daemon, "NetworkPolicy", "amlcert-metrics");
    expect(np.spec).toEqual({
      podSelector: { matchLabels: { "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/component": "daemon" } },
      policyTypes: ["Ingress"],
      ingress: [{ ports: [{ protocol: "TCP", port: 9464 }] }],
    });
  });
});

describe("deploy/azure/role-assignments.sh (against a stub az that records its arguments)", () => {
  const SUB = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
  const OID = "0c8d6e4f-1a2b-4c3d-8e9f-a0b1c2d3e4f5";
  const ZONE = `/subscriptions/${SUB}/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/contoso.com`;
  const CLUSTER = `/subscriptions/${SUB}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/aks-ml`;
  const run = (mode: string, extra: Record<string, string> = {}) => {
    const dir = mkdtempSync(join(tmpdir(), "amlcert-az-"));
    try {
      const log = join(dir, "az.log");
      // one line per call, arguments separated by " | "; a custom role the list finds nothing of; role files copied
      writeFileSync(
        join(dir, "az"),
        `#!/usr/bin/env bash\n(IFS='|'; echo "$*") >> "${log}"\nif [ "$1 $2" = "role definition" ] && [ "$3" = "create" ]; then cp "$5" "${dir}/role-$(wc -l < "${log}").json"; fi\n`,
        { mode: 0o755 },
      );
      const r = spawnSync("bash", [`${ROOT}/deploy/azure/role-assignments.sh`, mode], {
        env: { PATH: `${dir}:${process.env.PATH}`, PRINCIPAL_ID: OID, SUBSCRIPTION_ID: SUB, DNS_RG: "dns-rg", DNS_ZONE: "contoso.com", CLUSTER_RG: "aks-rg", CLUSTER_NAME: "aks-ml", ...extra },
        encoding: "utf8",
      });
      const calls = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
      const roles = readdirSync(dir).filter((f) => f.startsWith("role-")).map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as { Name: string; AssignableScopes: string[] });
      return { status: r.status, stderr: r.stderr, calls, roles };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const assignment = (role: string, scope: string) => `role|assignment|create|--assignee-object-id|${OID}|--assignee-principal-type|ServicePrincipal|--role|${role}|--scope|${scope}|--output|none`;
  const list = (name: string) => `role|definition|list|--custom-role-only|true|--name|${name}|--query|[].id|--output|tsv`;

  it("zone: DNS Zone Contributor on the zone, and the custom extension role (created for this subscription) on the cluster", () => {
    const r = run("zone");
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls.filter((c) => !c.startsWith("role|definition|create"))).toEqual([
      assignment("DNS Zone Contributor", ZONE),
      list("amlcert Azure ML extension updater"),
      assignment("amlcert Azure ML extension updater", CLUSTER),
    ]);
    expect(r.roles.map((x) => [x.Name, x.AssignableScopes])).toEqual([["amlcert Azure ML extension updater", [`/subscriptions/${SUB}`]]]);
  });

  it("recordset: each _acme-challenge record set kept by a placeholder and given the record-set role, Reader on the zone, the extension role on the cluster", () => {
    const r = run("recordset", { RECORDS: "ml scoring" });
    expect(r.status, r.stderr).toBe(0);
    const writer = "amlcert DNS-01 record set writer";
    const placeholder = (name: string) => `network|dns|record-set|txt|add-record|--subscription|${SUB}|-g|dns-rg|-z|contoso.com|-n|${name}|-v|amlcert-placeholder|--output|none`;
    expect(r.calls.filter((c) => !c.startsWith("role|definition|create"))).toEqual([
      list(writer),
      placeholder("_acme-challenge.ml"),
      assignment(writer, `${ZONE}/TXT/_acme-challenge.ml`),
      placeholder("_acme-challenge.scoring"),
      assignment(writer, `${ZONE}/TXT/_acme-challenge.scoring`),
      assignment("Reader", ZONE),
      list("amlcert Azure ML extension updater"),
      assignment("amlcert Azure ML extension updater", CLUSTER),
    ]);
    expect(r.roles.map((x) => [x.Name, x.AssignableScopes])).toEqual([
      [writer, [`/subscriptions/${SUB}`]],
      ["amlcert Azure ML extension updater", [`/subscriptions/${SUB}`]],
    ]);
  });

  it("refuses to run without the identity, and with an unknown mode", () => {
    expect(run("zone", { PRINCIPAL_ID: "" }).status).not.toBe(0);
    const bad = run("everything");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("usage:");
  });
});
