/**
 * A target's `source` (issue 9): what the schema accepts and refuses, the vault URL following azure.cloud, and
 * which source the composition root builds for each.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { vaultDnsSuffix, vaultUrlFor, vaultUrlProblem } from "../../src/keyvault/vault-url.js";
import { createSourceFactory } from "../../src/sources/configured-source.js";
import type { CertificateSource } from "../../src/ports.js";

const SUB = "11111111-2222-3333-4444-555555555555";
const target = (source?: unknown) => ({
  fqdn: "ml.contoso.test",
  dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName: "aks", name: "azureml" },
  kubernetes: { kubeconfig: "/tmp/kc", context: "aks" },
  secretName: "aml-tls",
  ...(source === undefined ? {} : { source }),
});
function load(source: unknown, azure: Record<string, unknown> = {}): { config?: Config; problems: string[] } {
  try {
    return { config: loadConfig({ path: "/cfg.yaml", env: {}, readFile: () => JSON.stringify({ azure, targets: [target(source)] }) }).config, problems: [] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.problems };
  }
}

describe("vault URLs follow azure.cloud", () => {
  it("names each cloud's Key Vault DNS suffix, and an override wins", () => {
    expect(vaultDnsSuffix("AzurePublicCloud")).toBe("vault.azure.net");
    expect(vaultDnsSuffix("AzureChinaCloud")).toBe("vault.azure.cn");
    expect(vaultDnsSuffix("AzureUSGovernment")).toBe("vault.usgovcloudapi.net");
    expect(vaultDnsSuffix("AzurePublicCloud", ".Vault.Localhost.")).toBe("vault.localhost");
    expect(vaultUrlFor("KV-Web", "vault.azure.cn")).toBe("https://kv-web.vault.azure.cn");
  });

  it("accepts a vault of the cloud (with a port) and refuses another cloud's, a path, http and a nested host", () => {
    expect(vaultUrlProblem("https://kv-web.vault.azure.net", "vault.azure.net")).toBeUndefined();
    expect(vaultUrlProblem("https://kv-web.vault.localhost:8443/", "vault.localhost")).toBeUndefined();
    expect(vaultUrlProblem("https://kv-web.vault.azure.net", "vault.azure.cn")).toBe(
      "is not a vault of this cloud: its host must be <vault>.vault.azure.cn (azure.cloud, or azure.keyVaultDnsSuffix for another cloud)",
    );
    expect(vaultUrlProblem("https://kv-web.vault.azure.net/certificates/web", "vault.azure.net")).toBe("must be the vault's URL only (no path), e.g. https://my-vault.vault.azure.net");
    expect(vaultUrlProblem("http://kv-web.vault.azure.net", "vault.azure.net")).toBe("must be an https:// URL");
    expect(vaultUrlProblem("https://a.kv-web.vault.azure.net", "vault.azure.net")).toContain("is not a vault of this cloud");
    expect(vaultUrlProblem("not a url", "vault.azure.net")).toBe("must be an https:// URL such as https://my-vault.vault.azure.net");
  });
});

describe("targets[].source", () => {
  it("when left out, the target has no source setting (ACME)", () => {
    expect(load(undefined).config!.targets[0]!.source).toBeUndefined();
  });

  it("when keyVault names a vault of the configured cloud, it loads with fetchIntermediates off by default", () => {
    const { config, problems } = load({ keyVault: { vaultUrl: "https://kv-web.vault.azure.cn", certificateName: "ml-contoso" } }, { cloud: "AzureChinaCloud" });
    expect(problems).toEqual([]);
    expect(config!.targets[0]!.source).toEqual({ keyVault: { vaultUrl: "https://kv-web.vault.azure.cn", certificateName: "ml-contoso", fetchIntermediates: false } });
  });

  it("when the vault URL belongs to another cloud, the problem names the field and the cloud's suffix", () => {
    expect(load({ keyVault: { vaultUrl: "https://kv-web.vault.azure.net", certificateName: "ml-contoso" } }, { cloud: "AzureUSGovernment" }).problems).toEqual([
      "targets[0].source.keyVault.vaultUrl: is not a vault of this cloud: its host must be <vault>.vault.usgovcloudapi.net (azure.cloud, or azure.keyVaultDnsSuffix for another cloud)",
    ]);
  });

  it("when both or neither of vaultUrl and vaultName are set, or the version is not 32 hex digits, each is named", () => {
    const both = load({ keyVault: { vaultUrl: "https://kv-web.vault.azure.net", vaultName: "kv-web", certificateName: "c" } }).problems;
    expect(both).toEqual(["targets[0].source.keyVault: set either vaultUrl or vaultName"]);
    expect(load({ keyVault: { certificateName: "c" } }).problems).toEqual(["targets[0].source.keyVault: set either vaultUrl or vaultName"]);
    expect(load({ keyVault: { vaultName: "kv-web", certificateName: "c", version: "v1" } }).problems).toEqual(["targets[0].source.keyVault.version: must be a certificate version (32 hex digits)"]);
  });

  it("when two sources are set, or none inside source, it says set exactly one", () => {
    const two = load({ acme: {}, kubernetesTls: { namespace: "web", secretName: "tls" } }).problems;
    expect(two).toEqual(["targets[0].source: set exactly one of acme, keyVault, kubernetesTls"]);
    expect(load({}).problems).toEqual(["targets[0].source: set exactly one of acme, keyVault, kubernetesTls"]);
  });

  it("when kubernetesTls names a namespace and a secret, it loads; a bad namespace is named", () => {
    expect(load({ kubernetesTls: { namespace: "web-certs", secretName: "ml-contoso.tls" } }).config!.targets[0]!.source).toEqual({ kubernetesTls: { namespace: "web-certs", secretName: "ml-contoso.tls" } });
    expect(load({ kubernetesTls: { namespace: "Web_Certs", secretName: "tls" } }).problems).toEqual(["targets[0].source.kubernetesTls.namespace: must be a namespace name (DNS-1123 label)"]);
  });
});

describe("createSourceFactory", () => {
  const acme: CertificateSource = { kind: "acme", obtain: () => Promise.reject(new Error("not in this test")) };
  const factory = (cloud: Config["azure"]["cloud"] = "AzurePublicCloud") =>
    createSourceFactory({
      config: { azure: { cloud } as Config["azure"] },
      credential: { getToken: () => Promise.resolve(null) },
      kube: () => ({ getSecret: () => Promise.resolve(undefined) }),
    });

  it("builds ACME when no source is set, Key Vault for keyVault (the vault name following the cloud), the TLS secret reader for kubernetesTls", () => {
    const f = factory("AzureChinaCloud");
    expect(f.forTarget(load(undefined).config!.targets[0]!, () => acme)).toBe(acme);
    const kv = f.forTarget(load({ keyVault: { vaultName: "kv-web", certificateName: "ml-contoso" } }, { cloud: "AzureChinaCloud" }).config!.targets[0]!, () => acme);
    expect([kv.kind, kv.origin]).toEqual(["keyVault", "keyVault https://kv-web.vault.azure.cn/certificates/ml-contoso"]);
    const tls = f.forTarget(load({ kubernetesTls: { namespace: "web-certs", secretName: "ml-tls" } }).config!.targets[0]!, () => acme);
    expect([tls.kind, tls.origin]).toEqual(["kubernetesTls", "kubernetesTls web-certs/ml-tls"]);
  });
});

describe("amlcert status names the source", () => {
  it("when the facts name a source, the status line carries it; without one, there is no source field", async () => {
    const { statusLine } = await import("../../src/app/status-view.js");
    const now = new Date("2031-01-10T06:00:00.000Z");
    const facts = { fqdn: "ml.contoso.test", reason: "UpToDate", problems: [], notAfter: new Date("2031-03-01T00:00:00.000Z"), renewAt: new Date("2031-02-01T00:00:00.000Z") };
    expect(statusLine({ ...facts, source: "keyVault https://kv-web.vault.azure.net/certificates/ml-contoso" }, undefined, now).source).toBe(
      "keyVault https://kv-web.vault.azure.net/certificates/ml-contoso",
    );
    expect("source" in statusLine(facts, undefined, now)).toBe(false);
  });
});
