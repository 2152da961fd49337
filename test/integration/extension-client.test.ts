import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { SourceControlConfigurationClient } from "@azure/arm-kubernetesconfiguration";
import { AmlcertError } from "../../src/errors.js";
import { createExtensionClient, type ExtensionClientOptions } from "../../src/extension/extension-client.js";
import type { ExtensionClient } from "../../src/ports.js";
import type { ExtensionRecord, ExtensionRef } from "../servers/arm-server.js";
import { SP, SUBSCRIPTION, startAzureFixture, type AzureFixture } from "./azure-fixture.js";
import { amlcertFailure } from "../support/assertions.js";

const EXTENSION_ROLE = join(import.meta.dirname, "../../deploy/azure/amlcert-extension-role.json");
const ML_RG = "rg-ml";
const AKS: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: ML_RG, clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" };
const ARC: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: ML_RG, clusterType: "connectedClusters", clusterName: "arc-ml", name: "azureml" };
const AKS_SCOPE = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${ML_RG}/providers/Microsoft.ContainerService/managedClusters/aks-ml`;

const SEED_SETTINGS = {
  enableInference: "True",
  inferenceRouterServiceType: "LoadBalancer",
  allowInsecureConnections: "False",
  sslSecret: "azureml-tls-2024",
  "scoringFe.sslSecret": "azureml-tls-2024",
  sslCname: "ml.example.test",
  clusterPurpose: "FastProd",
};
const SEED_PROTECTED = {
  "relayserver.relayConnectionString": "Endpoint=sb://relay.example/;SharedAccessKeyName=azureml_rw;SharedAccessKey=c2VjcmV0",
  "servicebus.connectionString": "Endpoint=sb://bus.example/;SharedAccessKey=c2VjcmV0Mg==",
};
const NEW_SETTINGS = { sslSecret: "azureml-tls-2025", "scoringFe.sslSecret": "azureml-tls-2025", sslCname: "ml.example.test" };

let fx: AzureFixture;
let updated: ExtensionRecord[];
let unsubscribe: () => void;

beforeAll(async () => {
  fx = await startAzureFixture();
});
afterAll(async () => {
  await fx?.close();
});
beforeEach(() => {
  for (const ref of [AKS, ARC]) fx.arm.addExtension({ ...ref, configurationSettings: SEED_SETTINGS, protectedSettings: SEED_PROTECTED });
  fx.arm.lro.outcome = "Succeeded";
  fx.arm.lro.pollsBeforeDone = 2;
  fx.arm.protectedSettingsView = "keys";
  updated = [];
  unsubscribe = fx.arm.onExtensionUpdated((ext) => {
    updated.push(ext);
  });
});
afterEach(async () => {
  unsubscribe();
  await fx.arm.settleOperations();
  fx.arm.faults.clear();
  fx.arm.clearAuthorization();
  fx.arm.requests.length = 0;
});

function extensionClient(overrides: Partial<ExtensionClientOptions> = {}): ExtensionClient {
  return createExtensionClient({
    credential: fx.credential().credential,
    endpoint: fx.cloud.resourceManagerEndpoint,
    scope: fx.cloud.tokenScope,
    subscriptionId: SUBSCRIPTION,
    resourceGroup: ML_RG,
    clusterType: "managedClusters",
    clusterName: "aks-ml",
    extensionName: "azureml",
    logger: fx.logger,
    lroTimeoutMs: 30_000,
    pollIntervalMs: 10,
    retry: { maxRetries: 1, retryDelayMs: 10, maxRetryDelayMs: 20 },
    ...overrides,
  });
}


describe("get", () => {
  test("returns type, state and settings, and only the keys of the protected settings", async () => {
    const state = await extensionClient().get();
    expect(state.extensionType).toBe("Microsoft.AzureML.Kubernetes");
    expect(state.provisioningState).toBe("Succeeded");
    expect(state.configurationSettings).toEqual(SEED_SETTINGS);
    expect(state.protectedSettingKeys.sort()).toEqual(Object.keys(SEED_PROTECTED).sort());
    expect(JSON.stringify(state)).not.toContain("SharedAccessKey=");
    expect(fx.arm.requests[0]).toMatchObject({ method: "GET", apiVersion: "2023-05-01", status: 200, principalOid: SP.objectId });
  });

  test("when ARM omits configurationProtectedSettings, the state has no protected keys", async () => {
    fx.arm.protectedSettingsView = "omit";
    expect((await extensionClient().get()).protectedSettingKeys).toEqual([]);
  });

  test("when the extension does not exist, the error is AZURE_NOT_FOUND naming the cluster and resource group", async () => {
    const err = await amlcertFailure(extensionClient({ extensionName: "nope" }).get());
    expect(err.code).toBe("AZURE_NOT_FOUND");
    expect(err.stage).toBe("extension");
    expect(err.message).toContain("nope");
    expect(err.message).toContain("managedClusters/aks-ml");
    expect(err.message).toContain(ML_RG);
  });
});

describe("updateSettings", () => {
  test("when settings change, ARM answers 202, the operation is followed to Succeeded and the result is changed", async () => {
    const { changed, state } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(changed).toBe(true);
    expect(state.provisioningState).toBe("Succeeded");
    expect(state.configurationSettings).toEqual({ ...SEED_SETTINGS, ...NEW_SETTINGS });
    const patch = fx.arm.requests.find((r) => r.method === "PATCH");
    expect(patch?.status).toBe(202);
    const polls = fx.arm.requests.filter((r) => r.path.includes("/operations/"));
    expect(polls.map((r) => r.status)).toEqual([200, 200, 200]); // InProgress, InProgress, Succeeded
    expect(updated.map((e) => e.configurationSettings.sslSecret)).toEqual(["azureml-tls-2025"]);
  });

  test("the PATCH carries only configurationSettings, and ARM keeps the other settings and every protected setting", async () => {
    await extensionClient().updateSettings(NEW_SETTINGS);
    const patch = fx.arm.requests.find((r) => r.method === "PATCH");
    expect(patch?.body).toEqual({ properties: { configurationSettings: NEW_SETTINGS } });
    const ext = fx.arm.getExtension(AKS)!;
    expect(ext.protectedSettings).toEqual(SEED_PROTECTED);
    expect(ext.configurationSettings).toEqual({ ...SEED_SETTINGS, ...NEW_SETTINGS });
    expect(ext.releaseTrain).toBe("stable");
  });

  test("when nothing changes, ARM answers 200 without an operation and the result is unchanged", async () => {
    const client = extensionClient();
    await client.updateSettings(NEW_SETTINGS);
    fx.arm.requests.length = 0;
    updated.length = 0;
    const { changed, state } = await client.updateSettings(NEW_SETTINGS);
    expect(changed).toBe(false);
    expect(state.configurationSettings.sslSecret).toBe("azureml-tls-2025");
    expect(fx.arm.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["PATCH 200"]);
    expect(updated).toEqual([]);
  });

  test("when the operation fails, the error is EXTENSION_LRO_FAILED with ARM's message, and no update is announced", async () => {
    fx.arm.lro.outcome = "Failed";
    fx.arm.lro.error = { code: "ExtensionOperationFailed", message: "E40007 INVALID_SSL_SETTING: the secret azureml-tls-2025 has no cert.pem" };
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("EXTENSION_LRO_FAILED");
    expect(err.stage).toBe("extension");
    expect(err.message).toContain("E40007 INVALID_SSL_SETTING: the secret azureml-tls-2025 has no cert.pem");
    expect(err.message).toContain("ExtensionOperationFailed");
    expect(fx.arm.getExtension(AKS)?.provisioningState).toBe("Failed");
    expect(updated).toEqual([]);
  });

  test("when an update failed, sending the same settings again runs the operation again", async () => {
    fx.arm.lro.outcome = "Failed";
    await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    fx.arm.lro.outcome = "Succeeded";
    const { changed, state } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(changed).toBe(true);
    expect(state.provisioningState).toBe("Succeeded");
    expect(updated).toHaveLength(1);
  });

  test("when the operation does not finish within lroTimeoutMs, the error is EXTENSION_TIMEOUT", async () => {
    fx.arm.lro.pollsBeforeDone = 1_000_000;
    const err = await amlcertFailure(extensionClient({ lroTimeoutMs: 300, pollIntervalMs: 20 }).updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("EXTENSION_TIMEOUT");
    expect(err.message).toContain("azureml");
    expect(err.details.accepted).toBe(true);
    expect(fx.arm.getExtension(AKS)?.provisioningState).toBe("Updating");
  });

  test("when an update is already running, a second PATCH gets 409 and the error is AZURE_CONFLICT", async () => {
    fx.arm.lro.pollsBeforeDone = 1_000_000;
    await amlcertFailure(extensionClient({ lroTimeoutMs: 200, pollIntervalMs: 20 }).updateSettings(NEW_SETTINGS));
    const err = await amlcertFailure(extensionClient().updateSettings({ sslSecret: "another" }));
    expect(err.code).toBe("AZURE_CONFLICT");
  });

  test("when ARM is throttling the PATCH beyond the retries, the error is AZURE_THROTTLED", async () => {
    fx.arm.faults.add({ method: "PATCH", status: 429, times: Infinity, retryAfterSeconds: 0 });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(err.stage).toBe("extension");
  });

  test("when an operation poll fails transiently with 503 and Retry-After, the SDK retries it and the update completes", async () => {
    const fault = fx.arm.faults.add({ method: "GET", pathIncludes: "/operations/", status: 503, times: 1, retryAfterSeconds: 0 });
    const { changed } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(changed).toBe(true);
    expect(fault.hits).toBe(1);
  });

  test("when the identity may not write the extension, the 403 names the action and the role to assign", async () => {
    fx.arm.deny({ principalOid: SP.objectId, action: "Microsoft.KubernetesConfiguration/extensions/write" });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toContain("Microsoft.KubernetesConfiguration/extensions/write");
    expect(err.message).toContain("Kubernetes Extension Contributor");
    expect(err.message).toContain("deploy/azure/amlcert-extension-role.json");
  });

  test("an Arc-enabled cluster (connectedClusters) is updated through Microsoft.Kubernetes", async () => {
    const { changed } = await extensionClient({ clusterType: "connectedClusters", clusterName: "arc-ml" }).updateSettings(NEW_SETTINGS);
    expect(changed).toBe(true);
    expect(fx.arm.requests.find((r) => r.method === "PATCH")?.path).toContain("/providers/Microsoft.Kubernetes/connectedClusters/arc-ml/");
    expect(fx.arm.getExtension(ARC)?.configurationSettings.sslSecret).toBe("azureml-tls-2025");
    expect(fx.arm.getExtension(AKS)?.configurationSettings.sslSecret).toBe("azureml-tls-2024");
  });
});

describe("shipped custom role", () => {
  test("when the identity holds only deploy/azure/amlcert-extension-role.json on the cluster, get and update are allowed", async () => {
    fx.arm.assignRole({ principalOid: SP.objectId, roleFile: EXTENSION_ROLE, scope: AKS_SCOPE });
    const client = extensionClient();
    await client.get();
    expect((await client.updateSettings(NEW_SETTINGS)).changed).toBe(true);
    expect(fx.arm.requests.filter((r) => r.status === 403)).toEqual([]);
    const role = JSON.parse(readFileSync(EXTENSION_ROLE, "utf8")) as { Actions: string[] };
    expect([...new Set(fx.arm.requests.map((r) => r.action))].sort()).toEqual([...role.Actions].sort());
  });

  test("when the role lacks operations/read, following the update fails with a 403 naming that action", async () => {
    const role = JSON.parse(readFileSync(EXTENSION_ROLE, "utf8")) as { Actions: string[] };
    const reduced = join(fx.dir, "extension-role-without-operations.json");
    writeFileSync(reduced, JSON.stringify({ ...role, Actions: role.Actions.filter((a) => !a.endsWith("/operations/read")) }));
    fx.arm.assignRole({ principalOid: SP.objectId, roleFile: reduced, scope: AKS_SCOPE });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toContain("Microsoft.KubernetesConfiguration/extensions/operations/read");
  });
});

describe("the ARM stand-in, seen through the SDK", () => {
  test("a PATCH that carries configurationProtectedSettings replaces them as a whole: why amlcert never sends them", async () => {
    const client = new SourceControlConfigurationClient(fx.credential().credential, SUBSCRIPTION, {
      endpoint: fx.cloud.resourceManagerEndpoint,
      credentialScopes: [fx.cloud.tokenScope],
    });
    await client.extensions.beginUpdateAndWait(ML_RG, "Microsoft.ContainerService", "managedClusters", "aks-ml", "azureml", {
      configurationProtectedSettings: { "scoringFe.sslCert": "Y2VydA==" },
    }, { updateIntervalInMs: 10 });
    const ext = fx.arm.getExtension(AKS)!;
    expect(ext.protectedSettings).toEqual({ "scoringFe.sslCert": "Y2VydA==" });
    expect(ext.configurationSettings).toEqual(SEED_SETTINGS);
    const shown = await client.extensions.get(ML_RG, "Microsoft.ContainerService", "managedClusters", "aks-ml", "azureml");
    expect(shown.configurationProtectedSettings).toEqual({ "scoringFe.sslCert": "" });
  });
});

