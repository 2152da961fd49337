/**
 * Azure cloud presets: where Azure Resource Manager lives, which Entra ID authority issues its tokens, and the
 * token scope ARM accepts. Sovereign clouds, private endpoints and the test harness override single fields.
 */

export const CloudNames = ["AzurePublicCloud", "AzureChinaCloud", "AzureUSGovernment"] as const;
export type CloudName = (typeof CloudNames)[number];

export interface CloudEndpoints {
  /** ARM base URL, e.g. https://management.azure.com (no trailing slash) */
  resourceManagerEndpoint: string;
  /** Entra ID authority host, e.g. https://login.microsoftonline.com (no trailing slash) */
  authorityHost: string;
  /** scope requested for ARM tokens, e.g. https://management.azure.com/.default */
  tokenScope: string;
}

export interface ResolvedCloud extends CloudEndpoints {
  name: CloudName;
  /** "override" when the authority host was set explicitly; "preset" when it came from the cloud's defaults.
   * A preset authority yields to AZURE_AUTHORITY_HOST (as the Azure SDK does); an override does not. */
  authorityHostSource: "preset" | "override";
}

export const cloudPresets: Readonly<Record<CloudName, Readonly<CloudEndpoints>>> = {
  AzurePublicCloud: {
    resourceManagerEndpoint: "https://management.azure.com",
    authorityHost: "https://login.microsoftonline.com",
    tokenScope: "https://management.azure.com/.default",
  },
  AzureChinaCloud: {
    resourceManagerEndpoint: "https://management.chinacloudapi.cn",
    authorityHost: "https://login.chinacloudapi.cn",
    tokenScope: "https://management.chinacloudapi.cn/.default",
  },
  AzureUSGovernment: {
    resourceManagerEndpoint: "https://management.usgovcloudapi.net",
    authorityHost: "https://login.microsoftonline.us",
    tokenScope: "https://management.usgovcloudapi.net/.default",
  },
};

/** Authority hosts Microsoft operates; MSAL may validate these through instance discovery. Any other host
 * (a test stand-in, a private proxy) needs instance discovery turned off. */
const microsoftAuthorityHosts = new Set([
  "login.microsoftonline.com",
  "login.microsoft.com",
  "login.windows.net",
  "sts.windows.net",
  "login.chinacloudapi.cn",
  "login.partner.microsoftonline.cn",
  "login.microsoftonline.us",
  "login.usgovcloudapi.net",
  "login-us.microsoftonline.com",
  "login.microsoftonline.de",
]);

const trimSlash = (s: string) => s.replace(/\/+$/, "");

export function isMicrosoftAuthorityHost(authorityHost: string): boolean {
  try {
    return microsoftAuthorityHosts.has(new URL(authorityHost).hostname.toLowerCase());
  } catch {
    return false;
  }
}

/** The cloud preset `name` with any of its endpoints overridden. Trailing slashes are removed from URLs. */
export function resolveCloud(name: CloudName = "AzurePublicCloud", overrides: Partial<CloudEndpoints> = {}): ResolvedCloud {
  const preset = cloudPresets[name];
  if (!preset) throw new Error(`unknown Azure cloud "${String(name)}" (expected one of ${CloudNames.join(", ")})`);
  const resourceManagerEndpoint = trimSlash(overrides.resourceManagerEndpoint ?? preset.resourceManagerEndpoint);
  return {
    name,
    resourceManagerEndpoint,
    authorityHost: trimSlash(overrides.authorityHost ?? preset.authorityHost),
    // like the Azure SDK clients: an overridden ARM endpoint asks for tokens for itself unless the scope is set too
    tokenScope: overrides.tokenScope ?? (overrides.resourceManagerEndpoint === undefined ? preset.tokenScope : `${resourceManagerEndpoint}/.default`),
    authorityHostSource: overrides.authorityHost === undefined ? "preset" : "override",
  };
}
