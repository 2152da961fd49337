/**
 * `amlcert doctor`: a first-run preflight that writes nothing. Per target it gathers facts read-only (who amlcert is
 * in Azure and what ARM's permissions API says it may do, the zone's delegation as resolvers see it, the extension,
 * what the Kubernetes identity may do by SelfSubjectAccessReview, azureml-fe, DNS, the ACME directory and account),
 * then judges them with pure rules into a checklist: each item passes, warns or fails, and a failing item says what
 * to add or change, and where. Anything that would stop a renewal fails, and then the exit code is 3.
 */
import type { Config, TargetConfig } from "../config/schema.js";
import { ExitCode } from "../errors.js";
import type { ExtensionState } from "../ports.js";
import type { AzureIdentity } from "../azure/credential.js";
import type { PermissionSet } from "../azure/permissions.js";
import type { KubeAccess, KubeAccessAnswer } from "../kubernetes/access-review.js";
import type { RenewSettings } from "../renewal/deps.js";
import { AZUREML_EXTENSION_TYPE, AZUREML_FE_SERVICE, extensionBusy, namedSecret, PROTECTED_PEM_KEYS, tlsOff, type Ingress } from "../renewal/inspect.js";
import { operationFailed } from "../renewal/policies.js";
import { slotNames } from "../renewal/certificate-version.js";
import { outcomeError } from "../renewal/recorder.js";
import type { OutcomeError } from "../renewal/events.js";
import type { DnsCheck } from "../renewal/verify-dns.js";
import { checkDns } from "../renewal/verify-dns.js";
import { AZUREML_NAMESPACE, type App } from "./compose.js";

export type CheckState = "pass" | "warn" | "fail";

export interface DoctorCheck {
  /** stable identifier, e.g. "azure.dns.txt-write" */
  id: string;
  state: CheckState;
  /** what was checked, and what was found */
  message: string;
  /** what to do about a warning or a failure */
  fix?: string;
}

export interface DoctorReport {
  fqdn: string;
  /** no check failed: a renewal can run */
  ok: boolean;
  checks: DoctorCheck[];
}

export type Found<T> = { ok: true; value: T } | { ok: false; error: OutcomeError };

/** One Azure action amlcert needs at one scope. */
export interface AzureNeed {
  id: string;
  /** in words: "read zone contoso.test" */
  what: string;
  action: string;
  scope: string;
  /** the role to assign, and where the definition lives */
  role: string;
}

export interface DoctorFacts {
  fqdn: string;
  keyType: string;
  identity: Found<AzureIdentity>;
  /** each need with what ARM's permissions API says at its scope */
  azure: { need: AzureNeed; permissions: Found<PermissionSet[]> }[];
  delegation: { zone: string; arm: Found<string[]>; seen: Found<string[]>; resolvers: string };
  extension: Found<ExtensionState>;
  kube: Found<KubeAccessAnswer[]>;
  ingress: Found<Ingress | undefined>;
  dns?: Found<DnsCheck>;
  acme?: Found<{ directory: string; account: "exists" | "missing" | "no-key"; externalAccountRequired: boolean; eabConfigured: boolean }>;
}

const DNS_ROLE = '"amlcert DNS-01 challenge writer" (deploy/azure/amlcert-dns-role.json) or the built-in "DNS Zone Contributor"';
const EXTENSION_ROLE = '"amlcert Azure ML extension updater" (deploy/azure/amlcert-extension-role.json) or the built-in "Kubernetes Extension Contributor"';
const CLUSTER_RP = { managedClusters: "Microsoft.ContainerService", connectedClusters: "Microsoft.Kubernetes" } as const;

/** ARM's wildcard rule: `*` matches any run of characters; case does not matter. */
function matches(pattern: string, action: string): boolean {
  return new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, "\\$&")).join(".*")}$`, "i").test(action);
}

/** Whether some role assignment grants `action` (its Actions match, its NotActions do not). */
export function allows(sets: PermissionSet[], action: string): boolean {
  return sets.some((s) => s.actions.some((a) => matches(a, action)) && !s.notActions.some((a) => matches(a, action)));
}

const zoneId = (z: { subscriptionId: string; resourceGroup: string; zone: string }) =>
  `/subscriptions/${z.subscriptionId}/resourceGroups/${z.resourceGroup}/providers/Microsoft.Network/dnszones/${z.zone}`;

/** The record-set name of `fqdn` inside `zone` ("@" at the apex). */
const relative = (fqdn: string, zone: string) => (fqdn === zone ? "@" : fqdn.slice(0, -(zone.length + 1)));

/** Every Azure action a renewal of `t` makes, at the narrowest scope it is made on. */
export function azureNeeds(t: TargetConfig, names: string[]): AzureNeed[] {
  const zones = [t.dnsZone, ...t.challengeZones];
  const zoneOf = (name: string) => zones.filter((z) => name === z.zone || name.endsWith(`.${z.zone}`)).sort((a, b) => b.zone.length - a.zone.length)[0] ?? t.dnsZone;
  const needs: AzureNeed[] = [];
  const seen = new Set<string>();
  const add = (n: AzureNeed) => {
    const key = `${n.action}@${n.scope}`.toLowerCase();
    if (!seen.has(key)) (seen.add(key), needs.push(n));
  };
  for (const name of names) {
    const z = zoneOf(name);
    const zid = zoneId(z);
    add({ id: "azure.dns.zone-read", what: `read zone ${z.zone} (its name servers)`, action: "Microsoft.Network/dnszones/read", scope: zid, role: DNS_ROLE });
    const challenge = relative(`_acme-challenge.${name}`, z.zone);
    for (const [verb, does] of [
      ["read", "read"],
      ["write", "add values to"],
      ["delete", "remove"],
    ] as const) {
      add({ id: `azure.dns.txt-${verb}`, what: `${does} TXT record set ${challenge} in zone ${z.zone}`, action: `Microsoft.Network/dnszones/TXT/${verb}`, scope: `${zid}/TXT/${challenge}`, role: DNS_ROLE });
    }
    add({ id: "azure.dns.cname-read", what: `look for a CNAME at ${challenge} in zone ${z.zone}`, action: "Microsoft.Network/dnszones/CNAME/read", scope: `${zid}/CNAME/${challenge}`, role: DNS_ROLE });
  }
  if (t.manageRecord) {
    const z = zoneOf(t.fqdn);
    const rel = relative(t.fqdn, z.zone);
    for (const verb of ["read", "write"] as const) {
      add({ id: `azure.dns.a-${verb}`, what: `${verb} A record set ${rel} in zone ${z.zone} (manageRecord)`, action: `Microsoft.Network/dnszones/A/${verb}`, scope: `${zoneId(z)}/A/${rel}`, role: DNS_ROLE });
    }
  }
  const e = t.extension;
  const cluster = `/subscriptions/${e.subscriptionId}/resourceGroups/${e.resourceGroup}/providers/${CLUSTER_RP[e.clusterType]}/${e.clusterType}/${e.clusterName}`;
  for (const [action, what] of [
    ["read", `read extension ${e.name}`],
    ["write", `update extension ${e.name}'s settings`],
    ["operations/read", `follow extension ${e.name}'s update operations`],
  ] as const) {
    add({ id: `azure.extension.${action.replace("/", "-")}`, what, action: `Microsoft.KubernetesConfiguration/extensions/${action}`, scope: cluster, role: EXTENSION_ROLE });
  }
  return needs;
}

/** The Kubernetes calls a renewal of `t` makes in namespace azureml (what the default Role grants, by name). */
export function kubeNeeds(config: Config, t: TargetConfig, s: RenewSettings): KubeAccess[] {
  const secrets = (verbs: string[], name?: string) => verbs.map((verb): KubeAccess => ({ verb, group: "", resource: "secrets", ...(name ? { name } : {}) }));
  const mode = s.secretMode as string;
  const needs: KubeAccess[] =
    mode === "slots"
      ? slotNames(s.secretName).flatMap((slot) => secrets(["get", "update"], slot))
      : mode === "fixed"
        ? secrets(["get", "update"], s.secretName)
        : secrets(["get", "list", "create", "update", "delete"]);
  const account = config.acme.accountKey;
  if (account.secret && sameCluster(account.kubernetes, t.kubernetes)) needs.push(...secrets(["get", "update"], account.secret));
  needs.push(
    { verb: "get", group: "coordination.k8s.io", resource: "leases", name: "amlcert" },
    { verb: "update", group: "coordination.k8s.io", resource: "leases", name: "amlcert" },
    { verb: "get", group: "", resource: "configmaps", name: config.history.configMap },
    { verb: "update", group: "", resource: "configmaps", name: config.history.configMap },
    { verb: "get", group: "", resource: "services", name: AZUREML_FE_SERVICE },
    { verb: "create", group: "", resource: "events" },
  );
  return needs;
}

const sameCluster = (a: TargetConfig["kubernetes"], b: TargetConfig["kubernetes"]) =>
  a.inCluster === b.inCluster && (a.kubeconfig ?? "") === (b.kubeconfig ?? "") && (a.context ?? "") === (b.context ?? "");

const ruleFor = (a: KubeAccess) =>
  `- apiGroups: ["${a.group}"]\n    resources: ["${a.resource}"]\n${a.name ? `    resourceNames: ["${a.name}"]\n` : ""}    verbs: ["${a.verb}"]`;

const sameSet = (a: string[], b: string[]) => {
  const norm = (x: string[]) => [...new Set(x.map((s) => s.toLowerCase().replace(/\.$/, "")))].sort().join(",");
  return norm(a) === norm(b);
};

/** The pure judgement: facts in, checklist out. */
export function judge(f: DoctorFacts, s: RenewSettings): DoctorReport {
  const checks: DoctorCheck[] = [];
  const add = (id: string, state: CheckState, message: string, fix?: string) => checks.push({ id, state, message, ...(fix ? { fix } : {}) });
  const failed = (id: string, what: string, e: OutcomeError, fix?: string) => add(id, "fail", `could not ${what}: ${e.code}: ${e.message}`, fix);

  // Azure identity and permissions
  if (f.identity.ok) {
    const id = f.identity.value;
    add("azure.identity", "pass", `Azure identity: ${id.method}${id.clientId ? `, client ${id.clientId}` : ""}${id.objectId ? `, object ${id.objectId}` : ""}${id.tenantId ? `, tenant ${id.tenantId}` : ""}`);
  } else {
    failed("azure.identity", "sign in to Azure", f.identity.error, "check the identity settings (README: Azure identity); every Azure check below needs it");
  }
  for (const { need, permissions } of f.azure) {
    if (!permissions.ok) {
      add(need.id, "warn", `could not check whether amlcert may ${need.what} (${need.action}): ${permissions.error.message}`);
    } else if (allows(permissions.value, need.action)) {
      add(need.id, "pass", `may ${need.what}`);
    } else {
      add(need.id, "fail", `may not ${need.what}: no role assignment grants ${need.action} on ${need.scope}`, `assign ${need.role} to the identity${f.identity.ok && f.identity.value.objectId ? ` (object id ${f.identity.value.objectId})` : ""} on ${need.scope} or a parent scope`);
    }
  }

  // the zone's delegation
  const d = f.delegation;
  if (!d.arm.ok) failed("dns.delegation", `read zone ${d.zone}'s name servers from ARM`, d.arm.error);
  else if (!d.seen.ok) add("dns.delegation", "fail", `the zone ${d.zone} could not be resolved through ${d.resolvers}: ${d.seen.error.message}`, `delegate ${d.zone} to its Azure DNS name servers (${d.arm.value.join(", ")}) at the parent zone`);
  else if (d.seen.value.length === 0) add("dns.delegation", "fail", `${d.resolvers} know no NS records for ${d.zone}: the zone is not delegated`, `add NS records for ${d.zone} at the parent zone pointing at ${d.arm.value.join(", ")}`);
  else if (!sameSet(d.seen.value, d.arm.value)) {
    add(
      "dns.delegation",
      "fail",
      `${d.zone} is delegated to ${d.seen.value.join(", ")} but Azure DNS serves it from ${d.arm.value.join(", ")}: the CA will not see amlcert's TXT values, while amlcert's own check of the Azure servers passes`,
      `change the NS records for ${d.zone} at the parent zone (or the registrar) to ${d.arm.value.join(", ")}`,
    );
  } else add("dns.delegation", "pass", `${d.zone} is delegated to its Azure DNS name servers (${d.arm.value.join(", ")})`);

  // the extension
  if (!f.extension.ok) failed("extension", "read the extension", f.extension.error);
  else {
    const x = f.extension.value;
    const cs = x.configurationSettings;
    if (x.extensionType.toLowerCase() !== AZUREML_EXTENSION_TYPE.toLowerCase()) {
      add("extension.type", "fail", `the extension's type is ${x.extensionType}, not ${AZUREML_EXTENSION_TYPE}`, "point extension.name at the Azure ML extension (az k8s-extension list)");
    } else add("extension.type", "pass", `extension type ${x.extensionType}`);
    if ((cs.enableInference ?? "").toLowerCase() !== "true") add("extension.inference", "fail", "inference is not enabled on the extension (enableInference)", "az k8s-extension update ... --config enableInference=True");
    else add("extension.inference", "pass", "inference is enabled");
    const state = x.provisioningState ?? "unknown";
    if (extensionBusy(state)) add("extension.state", "fail", `the extension is busy (provisioningState ${state}); a renewal now would wait for it or be skipped`, "wait until az k8s-extension show reports Succeeded");
    else if (operationFailed(state)) add("extension.state", "warn", `the extension's last operation ended ${state}${x.health?.length ? ` (${x.health.join("; ")})` : ""}; the next renewal rolls out again`, "read az k8s-extension show; amlcert's next renewal makes a real change");
    else add("extension.state", "pass", `provisioningState ${state}`);
    const named = namedSecret(x);
    if (named.disagree) {
      add("extension.secret", "warn", `scoringFe.sslSecret (${named.disagree.scoringFe}) and sslSecret (${named.disagree.sslSecret}) disagree; the extension serves scoringFe.sslSecret`, "amlcert's next rollout sets both to the same secret");
    } else add("extension.secret", named.name ? "pass" : "warn", named.name ? `the extension names secret ${named.name}` : "the extension names no sslSecret yet: the first renewal sets it");
    const cname = cs.sslCname;
    if (cname && cname.toLowerCase() !== f.fqdn) add("extension.cname", "warn", `sslCname is ${cname}, not ${f.fqdn}`, "the next rollout sets sslCname to the target's fqdn");
    const pem = x.protectedSettingKeys.filter((k) => PROTECTED_PEM_KEYS.includes(k));
    if (pem.length > 0) {
      add("extension.protected-pem", "fail", `protected PEM settings (${pem.join(", ")}) take precedence over sslSecret: a renewed certificate would not be served`, "remove them once with az k8s-extension update ... --config-protected, leaving the PEM settings out");
    }
    if (tlsOff(x)) {
      add("extension.insecure", "fail", "the extension has allowInsecureConnections=True (TLS off); amlcert refuses to turn TLS on by itself", "run amlcert renew --enable-tls once: it issues the certificate, then turns TLS on (HTTP scoring clients stop working)");
    }
  }

  // Kubernetes
  if (!f.kube.ok) failed("kubernetes.access", "ask the Kubernetes API server what amlcert may do", f.kube.error);
  else {
    for (const a of f.kube.value) {
      const what = `${a.verb} ${a.resource}${a.name ? `/${a.name}` : ""}${a.group ? ` (${a.group})` : ""} in namespace ${AZUREML_NAMESPACE}`;
      if (a.allowed) add(`kubernetes.${a.resource}.${a.verb}`, "pass", `may ${what}`);
      else add(`kubernetes.${a.resource}.${a.verb}`, "fail", `may not ${what}${a.reason ? ` (${a.reason})` : ""}`, `add this rule to the Role amlcert in namespace ${AZUREML_NAMESPACE} (deploy/base/rbac.yaml):\n  ${ruleFor(a)}`);
    }
  }
  if (!f.ingress.ok) failed("kubernetes.azureml-fe", `read service ${AZUREML_FE_SERVICE}`, f.ingress.error);
  else if (!f.ingress.value) add("kubernetes.azureml-fe", "fail", `service ${AZUREML_FE_SERVICE} does not exist in namespace ${AZUREML_NAMESPACE}`, "install the extension with inference enabled (enableInference=True)");
  else {
    const ing = f.ingress.value;
    const addresses = [...ing.ips, ...ing.hostnames];
    if (addresses.length === 0 && !s.expectedAddress) add("kubernetes.azureml-fe", "warn", `service ${AZUREML_FE_SERVICE} (type ${ing.type}) has no external address`, "set expectedAddress for nodePort/clusterIP setups");
    else add("kubernetes.azureml-fe", "pass", `service ${AZUREML_FE_SERVICE} (type ${ing.type})${addresses.length ? ` at ${addresses.join(", ")}` : ""}`);
  }
  if (f.dns) {
    if (!f.dns.ok) failed("dns.fqdn", `resolve ${f.fqdn}`, f.dns.error);
    else if (f.dns.value.ok) add("dns.fqdn", "pass", `${f.fqdn} resolves to azureml-fe`);
    else add("dns.fqdn", "fail", `${f.fqdn}: ${f.dns.value.problems.join("; ")}`, s.manageRecord ? "amlcert fixes the A record on the next renewal (manageRecord)" : "point the A record at azureml-fe's address, or set manageRecord: true");
  }

  // ACME
  if (f.acme) {
    if (!f.acme.ok) failed("acme", "reach the ACME directory", f.acme.error, "check acme.directory and the network path to the CA");
    else {
      const a = f.acme.value;
      add("acme.directory", "pass", `ACME directory ${a.directory} answers`);
      if (a.externalAccountRequired && !a.eabConfigured) add("acme.eab", "fail", "the CA requires External Account Binding and acme.eab is not set", "set acme.eab.keyId and acme.eab.hmacKeyFile (from your CA account)");
      if (a.account === "exists") add("acme.account", "pass", "the ACME account exists");
      else add("acme.account", "pass", a.account === "no-key" ? "no ACME account key stored yet: the first renewal registers one" : "the stored account key has no account at this CA: the first renewal registers it");
    }
  }

  // key type
  if (/^ec/i.test(f.keyType)) add("key-type", "warn", `acme.keyType ${f.keyType}: ECDSA is unproven with the extension (Microsoft's troubleshooting checks the key with openssl rsa -check)`, "use rsa2048 (the default) unless you have tested ECDSA with your extension version");
  else add("key-type", "pass", `key type ${f.keyType}`);

  return { fqdn: f.fqdn, ok: !checks.some((c) => c.state === "fail"), checks };
}

export function doctorExitCode(reports: DoctorReport[]): number {
  return reports.every((r) => r.ok) ? ExitCode.Ok : ExitCode.RenewalFailed;
}

const found = async <T>(run: () => Promise<T>): Promise<Found<T>> => {
  try {
    return { ok: true, value: await run() };
  } catch (err) {
    return { ok: false, error: outcomeError(err, "preflight") };
  }
};

/** Gather the facts of one target, read-only: no writes anywhere, no ACME account created, no Lease. */
export async function gatherFacts(app: App, config: Config, t: TargetConfig): Promise<DoctorFacts> {
  const { deps, settings } = app.target(t);
  const identity = await found(() => app.azure.identity());
  const permissions = app.permissions();
  const byScope = new Map<string, Promise<Found<PermissionSet[]>>>();
  const at = (scope: string) => {
    let p = byScope.get(scope.toLowerCase());
    if (!p) byScope.set(scope.toLowerCase(), (p = found(() => permissions.at(scope))));
    return p;
  };
  const needs = azureNeeds(t, settings.names);
  const resolvers = config.dns.resolvers;
  const [azure, arm, seen, extension, kube, ingress, acme] = await Promise.all([
    Promise.all(needs.map(async (need) => ({ need, permissions: await at(need.scope) }))),
    found(() => deps.zone.nameServers()),
    found(() => deps.lookup.ns(t.dnsZone.zone, resolvers)),
    found(() => deps.extension.get()),
    found(() => app.accessReview(t.kubernetes).canI(kubeNeeds(config, t, settings))),
    found(() => deps.kube.getServiceIngress(AZUREML_FE_SERVICE)),
    found(() => app.acmeProbe()),
  ]);
  const expected = settings.expectedAddress ? [settings.expectedAddress] : ingress.ok && ingress.value ? [...ingress.value.ips, ...ingress.value.hostnames] : [];
  const dns = expected.length > 0 ? await found(() => checkDns(deps, settings, expected)) : undefined;
  return {
    fqdn: t.fqdn,
    keyType: config.acme.keyType,
    identity,
    azure,
    delegation: { zone: t.dnsZone.zone, arm, seen, resolvers: resolvers?.join(", ") ?? "the system resolver" },
    extension,
    kube,
    ingress,
    ...(dns ? { dns } : {}),
    acme: acme.ok ? { ok: true, value: { ...acme.value, eabConfigured: config.acme.eab !== undefined } } : acme,
  };
}

export async function runDoctor(app: App, config: Config, targets: TargetConfig[]): Promise<DoctorReport[]> {
  const reports: DoctorReport[] = [];
  for (const t of targets) reports.push(judge(await gatherFacts(app, config, t), app.target(t).settings));
  return reports;
}
