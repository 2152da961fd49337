import { afterAll, beforeAll, expect, test, vi } from "vitest";
import type { ExtensionRef } from "../servers/arm-server.js";
import { SUBSCRIPTION, fixtureExtensionClient, startAzureFixture, type AzureFixture } from "./azure-fixture.js";

const AKS: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: "rg-ml", clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" };

let fx: AzureFixture;
beforeAll(async () => {
  fx = await startAzureFixture();
});
afterAll(async () => {
  await fx?.arm.settleOperations();
  await fx?.close();
});

test("when the caller's signal aborts while the extension's operation runs, the wait ends at once with the signal's reason, not EXTENSION_TIMEOUT", async () => {
  fx.arm.addExtension({ ...AKS, configurationSettings: { allowInsecureConnections: "False", sslSecret: "old" }, protectedSettings: {} });
  fx.arm.lro.outcome = "Succeeded";
  fx.arm.lro.pollsBeforeDone = 1_000_000;
  const client = fixtureExtensionClient(fx, AKS, { lroTimeoutMs: 600_000 });
  const stop = new AbortController();
  const wait = client.updateSettings({ sslSecret: "new", "scoringFe.sslSecret": "new", sslCname: "ml.example.test" }, stop.signal).then(
    () => undefined,
    (e: unknown) => e,
  );
  // stop once the operation is being polled (the PATCH was accepted with 202)
  await vi.waitFor(() => expect(fx.arm.requests.filter((r) => r.method === "GET").length).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 10 });
  stop.abort(new Error("SIGTERM"));
  const err = await wait;
  expect(err).toEqual(new Error("SIGTERM"));
  expect(fx.arm.requests.filter((r) => r.method === "PATCH")).toHaveLength(1);
});
