/**
 * extension.busyTimeout and extension.busyInterval: from the configuration (file or environment) through the
 * composition root's target settings to the wait for a busy extension (renewTarget's preflight), on a fake clock.
 */
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { createApp, type App } from "../../src/app/compose.js";
import { renewTarget } from "../../src/renewal/renew.js";
import { makeDeps, silentLogger } from "../support/fakes.js";

const SUB = "11111111-2222-3333-4444-555555555555";
const FQDN = "ml.contoso.test";
const target = {
  fqdn: FQDN,
  dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName: "aks", name: "azureml" },
  kubernetes: { kubeconfig: "/nonexistent/kubeconfig", context: "aks" },
  secretName: "aml-tls",
};

const apps: App[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.shutdown();
});

/** The settings the composition root gives the target, for this configuration and environment. */
function settingsFor(extension: Record<string, unknown> | undefined, env: Record<string, string> = {}) {
  const yaml = JSON.stringify({ ...(extension ? { extension } : {}), targets: [target] });
  const { config } = loadConfig({ path: "/cfg.yaml", env, readFile: () => yaml });
  const world = makeDeps({ fqdn: FQDN });
  const app = createApp({ config, env, logger: silentLogger(), clock: world.clock, force: false, holder: "test/1" });
  apps.push(app);
  return app.target(config.targets[0]!).settings;
}

describe("extension.busyTimeout and extension.busyInterval reach the wait for a busy extension", () => {
  it("when they are not set, a target waits up to 10 minutes, reading every 15 s", () => {
    expect(settingsFor(undefined)).toMatchObject({ extensionBusyTimeoutMs: 600_000, extensionBusyIntervalMs: 15_000 });
  });

  it("when the file sets busyTimeout 1m and busyInterval 20s, a busy extension is read every 20 s, three times, and the run is skipped ExtensionBusy", async () => {
    const settings = settingsFor({ busyTimeout: "1m", busyInterval: "20s" });
    expect(settings).toMatchObject({ extensionBusyTimeoutMs: 60_000, extensionBusyIntervalMs: 20_000 });

    const w = makeDeps({ fqdn: FQDN, extension: { provisioningState: "Updating" } });
    const r = await renewTarget(w.deps, settings);
    expect(r).toMatchObject({ action: "skipped", reason: "ExtensionBusy" });
    expect(w.clock.sleeps).toEqual([20_000, 20_000, 20_000]);
    expect(w.extension.getCalls).toBe(4);
    expect(w.acme.requests).toEqual([]);
    expect(w.kube.writes).toEqual([]);
    expect(w.extension.patches).toEqual([]);
  });

  it("when the environment sets AMLCERT_EXTENSION_BUSY_TIMEOUT=45s and AMLCERT_EXTENSION_BUSY_INTERVAL=15s, the wait is three reads 15 s apart", async () => {
    const settings = settingsFor({ busyTimeout: "1h" }, { AMLCERT_EXTENSION_BUSY_TIMEOUT: "45s", AMLCERT_EXTENSION_BUSY_INTERVAL: "15s" });
    expect(settings).toMatchObject({ extensionBusyTimeoutMs: 45_000, extensionBusyIntervalMs: 15_000 });

    const w = makeDeps({ fqdn: FQDN, extension: { provisioningState: "Deleting" } });
    const r = await renewTarget(w.deps, settings);
    expect(r).toMatchObject({ action: "skipped", reason: "ExtensionBusy" });
    expect(w.clock.sleeps).toEqual([15_000, 15_000, 15_000]);
  });
});
