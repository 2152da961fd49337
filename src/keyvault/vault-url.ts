/**
 * Where a cloud's key vaults live: `https://<vault>.<suffix>`, the suffix following `azure.cloud` (or
 * `azure.keyVaultDnsSuffix` for a private cloud or the test stand-in). No SDK here: the schema validates with it.
 */
import type { CloudName } from "../azure/cloud.js";

export const VAULT_DNS_SUFFIXES: Readonly<Record<CloudName, string>> = {
  AzurePublicCloud: "vault.azure.net",
  AzureChinaCloud: "vault.azure.cn",
  AzureUSGovernment: "vault.usgovcloudapi.net",
};

export function vaultDnsSuffix(cloud: CloudName, override?: string): string {
  return (override ?? VAULT_DNS_SUFFIXES[cloud]).replace(/^\.+|\.+$/g, "").toLowerCase();
}

/** The vault URL for a vault name in a cloud. */
export function vaultUrlFor(vaultName: string, suffix: string): string {
  return `https://${vaultName.toLowerCase()}.${suffix}`;
}

/** Why `vaultUrl` is not a vault of a cloud whose suffix is `suffix` (undefined when it is). */
export function vaultUrlProblem(vaultUrl: string, suffix: string): string | undefined {
  let u: URL;
  try {
    u = new URL(vaultUrl);
  } catch {
    return "must be an https:// URL such as https://my-vault.vault.azure.net";
  }
  if (u.protocol !== "https:") return "must be an https:// URL";
  if (u.pathname !== "/" || u.search || u.hash) return "must be the vault's URL only (no path), e.g. https://my-vault.vault.azure.net";
  const host = u.hostname.toLowerCase();
  if (!host.endsWith(`.${suffix}`) || host.slice(0, -(suffix.length + 1)).includes(".")) {
    return `is not a vault of this cloud: its host must be <vault>.${suffix} (azure.cloud, or azure.keyVaultDnsSuffix for another cloud)`;
  }
  return undefined;
}
