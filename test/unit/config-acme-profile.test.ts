/** acme.profile, targets[].profile, the ACME transport bounds, and renewBefore against a profile's lifetime. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";

const SUB = "11111111-2222-3333-4444-555555555555";
const target = (over: Record<string, unknown> = {}, i = 0) => ({
  fqdn: `ml${i}.contoso.test`,
  dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName: `aks${i}`, name: "azureml" },
  kubernetes: { kubeconfig: "/tmp/kc", context: "aks" },
  secretName: "aml-tls",
  ...over,
});
function load(config: Record<string, unknown>, env: Record<string, string> = {}): { config?: Config; problems: string[] } {
  try {
    return { config: loadConfig({ path: "/cfg.yaml", env, readFile: () => JSON.stringify(config) }).config, problems: [] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.problems };
  }
}

describe("ACME profiles and transport bounds in the configuration", () => {
  it("when nothing is set, no profile is ordered and the CA's requests are bounded by 30 s, 3 retries and a 2 min Retry-After", () => {
    const { config } = load({ targets: [target()] });
    expect(config!.acme.profile).toBeUndefined();
    expect(config!.targets[0]!.profile).toBeUndefined();
    expect([config!.acme.requestTimeout, config!.acme.maxRetries, config!.acme.maxRetryAfter]).toEqual([30_000, 3, 120_000]);
  });

  it("when a profile is set globally and per target, both are kept (trimmed), and the variables set the bounds", () => {
    const { config } = load(
      { acme: { profile: " tlsserver " }, targets: [target({ profile: "shortlived" })] },
      { AMLCERT_ACME_REQUEST_TIMEOUT: "5s", AMLCERT_ACME_MAX_RETRY_AFTER: "10s", AMLCERT_ACME_MAX_RETRIES: "1" },
    );
    expect([config!.acme.profile, config!.targets[0]!.profile]).toEqual(["tlsserver", "shortlived"]);
    expect([config!.acme.requestTimeout, config!.acme.maxRetries, config!.acme.maxRetryAfter]).toEqual([5_000, 1, 10_000]);
  });

  it("when a profile is not a token, the field is named", () => {
    expect(load({ acme: { profile: "tls server" }, targets: [target({ profile: "" })] }).problems).toEqual([
      "acme.profile: must be a profile name such as classic, tlsserver or shortlived",
      "targets[0].profile: must be a profile name such as classic, tlsserver or shortlived",
    ]);
  });

  it("when renewBefore is as long as a known profile's lifetime, it is a config error naming the profile's field", () => {
    expect(load({ acme: { profile: "tlsserver" }, renewal: { renewBefore: "45d" }, targets: [target()] }).problems).toEqual([
      "renewal.renewBefore: must be shorter than the 45 days that tlsserver certificates live (acme.profile); e.g. 15 days, or leave it out to renew at 2/3 of the lifetime",
    ]);
    expect(load({ renewal: { renewBefore: "7d" }, targets: [target(), target({ profile: "shortlived" }, 1)] }).problems).toEqual([
      "renewal.renewBefore: must be shorter than the 160 hours that shortlived certificates live (targets[1].profile); e.g. 53.3 hours, or leave it out to renew at 2/3 of the lifetime",
    ]);
  });

  it("when renewBefore is shorter than the profile's lifetime, or the profile's lifetime is unknown, it is accepted", () => {
    expect(load({ acme: { profile: "tlsserver" }, renewal: { renewBefore: "44d" }, targets: [target()] }).problems).toEqual([]);
    expect(load({ acme: { profile: "custom-7d" }, renewal: { renewBefore: "30d" }, targets: [target()] }).problems).toEqual([]);
  });
});
