/** The ExtensionClient contract against the fake (FakeExtension) and against the real adapter on the ARM stand-in. */
import { afterAll, beforeAll, describe } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { ExtensionRef } from "../servers/arm-server.js";
import { SUBSCRIPTION, fixtureExtensionClient, startAzureFixture, type AzureFixture } from "../integration/azure-fixture.js";
import { FakeExtension } from "../support/fakes.js";
import { describeContract } from "./extension-client.contract.js";

describeContract("in-process fake (FakeExtension)", async (seed) => {
  const ext = new FakeExtension({ protectedSettingKeys: Object.keys(seed.protectedSettings), ...(seed.provisioningState ? { provisioningState: seed.provisioningState } : {}) });
  ext.state.configurationSettings = { ...seed.configurationSettings };
  return {
    client: ext,
    failOperations: (e) => {
      // as the adapter raises a Failed operation
      ext.failUpdate = e && new AmlcertError("EXTENSION_LRO_FAILED", "extension", `the update of extension azureml failed in Azure: ${e.code}: ${e.message}`);
    },
    held: () => ({
      provisioningState: ext.state.provisioningState ?? "",
      configurationSettings: { ...ext.state.configurationSettings },
      // the fake holds no protected values, only their keys: it never had the values to lose
      protectedSettings: Object.fromEntries(ext.state.protectedSettingKeys.map((k) => [k, seed.protectedSettings[k]!])),
    }),
  };
});

describe("on the ARM stand-in", () => {
  const REF: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: "rg-ml", clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" };
  let fx: AzureFixture;
  beforeAll(async () => {
    fx = await startAzureFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });

  describeContract("extension-client.ts through @azure/arm-kubernetesconfiguration", async (seed) => {
    await fx.arm.settleOperations();
    fx.arm.addExtension({ ...REF, configurationSettings: seed.configurationSettings, protectedSettings: seed.protectedSettings, ...(seed.provisioningState ? { provisioningState: seed.provisioningState } : {}) });
    fx.arm.lro.outcome = "Succeeded";
    fx.arm.lro.pollsBeforeDone = 1;
    fx.arm.protectedSettingsView = "keys";
    const client = fixtureExtensionClient(fx, REF);
    return {
      client,
      failOperations: (e) => {
        fx.arm.lro.outcome = e ? "Failed" : "Succeeded";
        if (e) fx.arm.lro.error = e;
      },
      held: () => {
        const ext = fx.arm.getExtension(REF)!;
        return { provisioningState: ext.provisioningState, configurationSettings: ext.configurationSettings, protectedSettings: ext.protectedSettings };
      },
    };
  });
});
