/**
 * The doctor's judgement, pure: facts in, checklist out. The e2e test (test/e2e/doctor.e2e.test.ts) gathers real
 * facts from the stand-ins; here each rule is tried on its edge.
 */
import { describe, expect, it } from "vitest";
import { allows, azureNeeds, judge, kubeNeeds, type DoctorFacts } from "../../src/app/doctor.js";
import { configSchema } from "../../src/config/schema.js";
import type { RenewSettings } from "../../src/renewal/deps.js";

const target = {
  fqdn: "ml.contoso.test",
  dnsZone: { subscriptionId: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" },
  secretName: "aml-tls",
};
const config = configSchema.parse({ targets: [target] });
const t = config.targets[0]!;
const settings = { fqdn: t.fqdn, names: [t.fqdn], secretName: "aml-tls", secretMode: "fixed", manageRecord: false } as unknown as RenewSettings;

const ok = <T>(value: T) => ({ ok: true as const, value });
const healthy = (): DoctorFacts => ({
  fqdn: t.fqdn,
  keyType: "rsa2048",
  identity: ok({ method: "workload-identity" as const, clientId: "c", objectId: "o", tenantId: "t" }),
  azure: azureNeeds(t, [t.fqdn]).map((need) => ({ need, permissions: ok([{ actions: ["*"], notActions: [] }]) })),
  delegation: { zone: "contoso.test", arm: ok(["ns1-01.azure-dns.com", "ns2-01.azure-dns.net"]), seen: ok(["NS2-01.azure-dns.net.", "ns1-01.azure-dns.com"]), resolvers: "the system resolver" },
  extension: ok({ extensionType: "microsoft.azureml.kubernetes", provisioningState: "Succeeded", configurationSettings: { enableInference: "True", sslSecret: "aml-tls", "scoringFe.sslSecret": "aml-tls", sslCname: t.fqdn }, protectedSettingKeys: [] }),
  kube: ok(kubeNeeds(config, t, settings).map((a) => ({ ...a, allowed: true }))),
  ingress: ok({ type: "LoadBalancer", ips: ["20.1.2.3"], hostnames: [] }),
  dns: ok({ ok: true, expected: ["20.1.2.3"], authoritative: ["20.1.2.3"], system: ["20.1.2.3"], problems: [] }),
  acme: ok({ directory: "https://acme.test/dir", account: "exists" as const, externalAccountRequired: false, eabConfigured: false }),
});
const states = (f: DoctorFacts) => Object.fromEntries(judge(f, settings).checks.map((c) => [c.id, c.state]));

describe("doctor: Azure permissions", () => {
  it("an action is allowed by a matching wildcard unless a NotAction matches it too, case aside", () => {
    expect(allows([{ actions: ["Microsoft.Network/dnszones/*"], notActions: [] }], "microsoft.network/dnszones/TXT/write")).toBe(true);
    expect(allows([{ actions: ["Microsoft.Network/dnszones/*"], notActions: ["Microsoft.Network/dnszones/TXT/*"] }], "Microsoft.Network/dnszones/TXT/write")).toBe(false);
    expect(allows([{ actions: ["Microsoft.Network/dnszones/read"], notActions: [] }, { actions: ["*"], notActions: [] }], "Microsoft.Network/dnszones/TXT/delete")).toBe(true);
    expect(allows([], "Microsoft.Network/dnszones/read")).toBe(false);
  });

  it("the TXT needs are on the record set of each name, the extension's on the cluster", () => {
    const needs = azureNeeds(t, ["ml.contoso.test", "api.contoso.test"]);
    const scopes = needs.filter((n) => n.action.endsWith("TXT/write")).map((n) => n.scope.split("/dnszones/")[1]);
    expect(scopes).toEqual(["contoso.test/TXT/_acme-challenge.ml", "contoso.test/TXT/_acme-challenge.api"]);
    expect(needs.find((n) => n.action === "Microsoft.KubernetesConfiguration/extensions/write")!.scope).toBe(
      "/subscriptions/3f2504e0-4f89-41d3-9a0c-0305e82c3301/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/aks-ml",
    );
    // the zone is read once, not once per name
    expect(needs.filter((n) => n.action === "Microsoft.Network/dnszones/read")).toHaveLength(1);
  });
});

describe("doctor: the judgement", () => {
  it("healthy facts pass every check", () => {
    const r = judge(healthy(), settings);
    expect(r.checks.filter((c) => c.state !== "pass")).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it("the delegation compares sets: order, case and trailing dots aside; a different set fails", () => {
    expect(states(healthy())["dns.delegation"]).toBe("pass");
    const f = healthy();
    f.delegation.seen = ok(["ns1-01.azure-dns.com"]);
    expect(states(f)["dns.delegation"]).toBe("fail");
  });

  it("disagreeing secret settings warn, protected PEM settings and TLS off fail, a failed last operation warns", () => {
    const f = healthy();
    if (!f.extension.ok) throw new Error("unreachable");
    f.extension.value.configurationSettings.sslSecret = "old-tls";
    f.extension.value.configurationSettings.allowInsecureConnections = "True";
    f.extension.value.protectedSettingKeys = ["scoringFe.sslKey"];
    f.extension.value.provisioningState = "Failed";
    const s = states(f);
    expect([s["extension.secret"], s["extension.insecure"], s["extension.protected-pem"], s["extension.state"]]).toEqual(["warn", "fail", "fail", "warn"]);
  });

  it("a CA that requires External Account Binding fails without acme.eab", () => {
    const f = healthy();
    f.acme = ok({ directory: "https://acme.test/dir", account: "no-key" as const, externalAccountRequired: true, eabConfigured: false });
    const r = judge(f, settings);
    expect(r.checks.find((c) => c.id === "acme.eab")).toMatchObject({ state: "fail", fix: "set acme.eab.keyId and acme.eab.hmacKeyFile (from your CA account)" });
    expect(r.ok).toBe(false);
  });

  it("an ECDSA key type warns; a permissions answer that could not be read warns instead of failing", () => {
    const f = { ...healthy(), keyType: "ecdsa-p256" };
    f.azure[0] = { need: f.azure[0]!.need, permissions: { ok: false, error: { code: "AZURE_ERROR", stage: "preflight", message: "socket hang up", exitCode: 3 } } };
    const s = states(f);
    expect([s["key-type"], s[f.azure[0].need.id]]).toEqual(["warn", "warn"]);
  });

  it("a Kubernetes call the Role does not allow fails with the rule to add", () => {
    const f = healthy();
    if (!f.kube.ok) throw new Error("unreachable");
    f.kube.value = f.kube.value.map((a) => (a.resource === "configmaps" && a.verb === "update" ? { ...a, allowed: false } : a));
    const c = judge(f, settings).checks.find((x) => x.id === "kubernetes.configmaps.update")!;
    expect(c.state).toBe("fail");
    expect(c.fix).toContain('resources: ["configmaps"]\n    resourceNames: ["amlcert-history"]\n    verbs: ["update"]');
  });
});
