import { getEventListeners } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { SourceControlConfigurationClient } from "@azure/arm-kubernetesconfiguration";
import { AmlcertError } from "../../src/errors.js";
import type { ExtensionClientOptions } from "../../src/extension/extension-client.js";
import { abortReason, type Clock, type ExtensionClient, type RequestSystem } from "../../src/ports.js";
import type { ExtensionRecord, ExtensionRef } from "../servers/arm-server.js";
import { SP, SUBSCRIPTION, fixtureExtensionClient, startAzureFixture, type AzureFixture } from "./azure-fixture.js";
import { amlcertFailure } from "../support/assertions.js";

const EXTENSION_ROLE = join(import.meta.dirname, "../../deploy/azure/amlcert-extension-role.json");
const ML_RG = "rg-ml";
const AKS: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: ML_RG, clusterType: "managedClusters", clusterName: "aks-ml", name: "azureml" };
const ARC: ExtensionRef = { subscriptionId: SUBSCRIPTION, resourceGroup: ML_RG, clusterType: "connectedClusters", clusterName: "arc-ml", name: "azureml" };
const AKS_SCOPE = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${ML_RG}/providers/Microsoft.ContainerService/managedClusters/aks-ml`;
const RESOURCE_ID = `${AKS_SCOPE}/providers/Microsoft.KubernetesConfiguration/extensions/azureml`;
const ROLE = 'Assign it "Kubernetes Extension Contributor" or the custom role in deploy/azure/amlcert-extension-role.json on that scope (or a parent). ARM said: AuthorizationFailed';

/** A Clock whose sleeps wait until the test fires them (the operation's deadline runs on it). */
class ManualClock implements Clock {
  t = Date.parse("2026-11-01T00:00:00Z");
  readonly sleeps: { ms: number; signal?: AbortSignal; fire: () => void }[] = [];
  now(): Date {
    return new Date(this.t);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      this.sleeps.push({ ms, signal, fire: () => resolve() });
      signal?.addEventListener("abort", () => reject(abortReason(signal)), { once: true });
    });
  }
}

/** Bounded polling of the stand-in's state (never a timed assertion). */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** The adapter's log lines (JSON), without pino's own fields. */
const adapterLogs = () =>
  fx.logLines
    .flatMap((chunk) => chunk.split("\n").filter(Boolean))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.component === "extension")
    .map(({ level, time, pid, hostname, ...rest }) => rest);

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
  fx.arm.lro = { outcome: "Succeeded", pollsBeforeDone: 2, error: { code: "ExtensionOperationFailed", message: "The extension operation failed." } };
  fx.arm.protectedSettingsView = "keys";
  updated = [];
  unsubscribe = fx.arm.onExtensionUpdated((ext) => {
    updated.push(ext);
  });
});
afterEach(async () => {
  fx.arm.beforeHandle = undefined;
  fx.logLines.length = 0;
  unsubscribe();
  await fx.arm.settleOperations();
  fx.arm.faults.clear();
  fx.arm.clearAuthorization();
  fx.arm.requests.length = 0;
});

function extensionClient(overrides: Partial<ExtensionClientOptions> = {}): ExtensionClient {
  return fixtureExtensionClient(fx, AKS, overrides);
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
    expect(err.message).toBe("the update of extension azureml failed in Azure: ExtensionOperationFailed: E40007 INVALID_SSL_SETTING: the secret azureml-tls-2025 has no cert.pem");
    expect(err.details).toEqual({ extension: RESOURCE_ID, armCode: "ExtensionOperationFailed" });
    expect(err.cause).toBeInstanceOf(Error);
    expect(fx.arm.getExtension(AKS)?.provisioningState).toBe("Failed");
    expect(updated).toEqual([]);
  });

  test("when an update failed, the same settings again change nothing; pointing back at the previous secret, then at the new one, runs two operations", async () => {
    fx.arm.lro.outcome = "Failed";
    await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    fx.arm.lro.outcome = "Succeeded";
    expect((await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS))).code).toBe("EXTENSION_LRO_FAILED");
    const previous = { sslSecret: "azureml-tls-2024", "scoringFe.sslSecret": "azureml-tls-2024", sslCname: "ml.example.test" };
    expect((await extensionClient().updateSettings(previous)).changed).toBe(true);
    const { changed, state } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(changed).toBe(true);
    expect(state.provisioningState).toBe("Succeeded");
    expect(updated.map((e) => e.configurationSettings.sslSecret)).toEqual(["azureml-tls-2024", "azureml-tls-2025"]);
  });

  /** An update whose operation never ends, given up once ARM accepted it (the deadline fired by hand, not raced). */
  async function timedOutUpdate(): Promise<AmlcertError> {
    fx.arm.lro.pollsBeforeDone = Number.POSITIVE_INFINITY;
    const clock = new ManualClock();
    const pending = extensionClient({ clock, lroTimeoutMs: 90_000, pollIntervalMs: 20 }).updateSettings(NEW_SETTINGS);
    await until(() => fx.arm.requests.some((r) => r.method === "PATCH" && r.status === 202) && clock.sleeps.length === 1, "the PATCH to be accepted");
    clock.sleeps[0]!.fire();
    return amlcertFailure(pending);
  }

  test("when the operation does not finish within lroTimeoutMs, the error is EXTENSION_TIMEOUT", async () => {
    const err = await timedOutUpdate();
    expect(err.code).toBe("EXTENSION_TIMEOUT");
    expect(err.details).toEqual({ extension: RESOURCE_ID, accepted: true });
    expect(fx.arm.getExtension(AKS)?.provisioningState).toBe("Updating");
  });

  test("when an update is already running, a second PATCH gets 409 and the error is AZURE_CONFLICT", async () => {
    await timedOutUpdate();
    const err = await amlcertFailure(extensionClient().updateSettings({ sslSecret: "another" }));
    expect(err.code).toBe("AZURE_CONFLICT");
    expect(err.message).toBe(
      "could not update extension azureml: a concurrent change conflicted (409 Conflict): An operation is already in progress on extension 'azureml'. Retry after it completes.",
    );
  });

  test("when ARM is throttling the PATCH beyond the retries, the error is AZURE_THROTTLED", async () => {
    const fault = fx.arm.faults.add({ method: "PATCH", status: 429, times: Infinity, retryAfterSeconds: 0 });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("AZURE_THROTTLED");
    expect(err.stage).toBe("extension");
    expect(fault.hits).toBe(2); // the first try and maxRetries=1 retry
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

describe("updateSettings: deadline, cancellation and logs", () => {
  test("the deadline runs on the injected clock: when it passes while the operation runs, EXTENSION_TIMEOUT names the bound in seconds", async () => {
    fx.arm.lro.pollsBeforeDone = 1_000_000;
    const clock = new ManualClock();
    const pending = extensionClient({ clock, lroTimeoutMs: 90_000 }).updateSettings(NEW_SETTINGS);
    await until(() => fx.arm.requests.some((r) => r.method === "PATCH" && r.status === 202) && clock.sleeps.length === 1, "the PATCH to be accepted");
    expect(clock.sleeps.map((s) => s.ms)).toEqual([90_000]);
    clock.sleeps[0]!.fire();
    const err = await amlcertFailure(pending);
    expect(err.code).toBe("EXTENSION_TIMEOUT");
    expect(err.message).toBe(
      "the update of extension azureml did not finish within 90 s (extension.lroTimeout); ARM may still complete it: check its provisioningState with az k8s-extension show",
    );
    expect(err.details).toEqual({ extension: RESOURCE_ID, accepted: true });
  });

  test("when the deadline passes before ARM answered the PATCH, the timeout says the change was not accepted", async () => {
    const clock = new ManualClock();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.arm.beforeHandle = async (r) => {
      if (r.method === "PATCH") await gate;
    };
    try {
      const pending = extensionClient({ clock, lroTimeoutMs: 60_000 }).updateSettings(NEW_SETTINGS);
      await until(() => fx.arm.requests.some((r) => r.method === "PATCH") && clock.sleeps.length === 1, "the PATCH to reach ARM");
      clock.sleeps[0]!.fire();
      const err = await amlcertFailure(pending);
      expect(err.code).toBe("EXTENSION_TIMEOUT");
      expect(err.details).toEqual({ extension: RESOURCE_ID, accepted: false });
    } finally {
      release();
    }
  });

  test("when the update is done, the deadline's wait on the clock is cancelled", async () => {
    const clock = new ManualClock();
    await extensionClient({ clock }).updateSettings(NEW_SETTINGS);
    expect(clock.sleeps).toHaveLength(1);
    expect(clock.sleeps[0]!.signal?.aborted).toBe(true);
  });

  test("an update leaves no listener on the run's signal behind, whether it succeeds or fails", async () => {
    const run = new AbortController();
    await extensionClient().updateSettings(NEW_SETTINGS, run.signal);
    fx.arm.faults.add({ method: "PATCH", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    await amlcertFailure(extensionClient().updateSettings({ sslSecret: "other" }, run.signal));
    expect(getEventListeners(run.signal, "abort")).toEqual([]);
  });

  test("when the run's signal is already aborted, nothing is sent and the signal's reason is thrown", async () => {
    const stop = new AbortController();
    const reason = new Error("stopping");
    stop.abort(reason);
    await expect(extensionClient().updateSettings(NEW_SETTINGS, stop.signal)).rejects.toBe(reason);
    expect(fx.arm.requests).toEqual([]);
  });

  test("when the run's signal aborts while the operation runs, the wait ends with the signal's reason, not a timeout", async () => {
    fx.arm.lro.pollsBeforeDone = 1_000_000;
    const clock = new ManualClock();
    const stop = new AbortController();
    const reason = new Error("SIGTERM");
    const pending = extensionClient({ clock, lroTimeoutMs: 600_000 }).updateSettings(NEW_SETTINGS, stop.signal);
    await until(() => fx.arm.requests.some((r) => r.path.includes("/operations/")), "the first operation poll");
    stop.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(clock.sleeps[0]!.signal?.aborted).toBe(true);
  });

  test("a change is logged as accepted with its keys, then as updated with the state and the time on the injected clock", async () => {
    const clock = new ManualClock();
    const off = fx.arm.onExtensionUpdated(() => {
      clock.t += 1500;
    });
    try {
      await extensionClient({ clock }).updateSettings(NEW_SETTINGS);
    } finally {
      off();
    }
    const who = { component: "extension", extension: "azureml", cluster: "aks-ml" };
    expect(adapterLogs()).toEqual([
      { ...who, keys: ["sslSecret", "scoringFe.sslSecret", "sslCname"], msg: "extension update accepted; waiting for the operation" },
      { ...who, changed: true, provisioningState: "Succeeded", ms: 1500, msg: "extension updated" },
    ]);
  });

  test("no change is logged once, as already having the settings", async () => {
    const client = extensionClient({ clock: new ManualClock() });
    await client.updateSettings(NEW_SETTINGS);
    fx.logLines.length = 0;
    await client.updateSettings(NEW_SETTINGS);
    expect(adapterLogs()).toEqual([
      { component: "extension", extension: "azureml", cluster: "aks-ml", changed: false, provisioningState: "Succeeded", ms: 0, msg: "extension already had these settings" },
    ]);
  });
});

describe("updateSettings: how ARM ends the operation", () => {
  test("a PATCH answered 201 Created with an operation is a change too", async () => {
    fx.arm.lro.acceptedStatus = 201;
    const { changed, state } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(fx.arm.requests.find((r) => r.method === "PATCH")?.status).toBe(201);
    expect(changed).toBe(true);
    expect(state.configurationSettings.sslSecret).toBe("azureml-tls-2025");
  });

  test("when the operation is canceled, the error is EXTENSION_LRO_FAILED with the status as its code", async () => {
    fx.arm.lro.outcome = "Canceled";
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("EXTENSION_LRO_FAILED");
    expect(err.message).toBe("the update of extension azureml failed in Azure: Canceled: the operation ended Canceled");
    expect(err.details).toEqual({ extension: RESOURCE_ID, armCode: "Canceled" });
  });

  test("when the operation failed without an error body, the status stands in for it", async () => {
    fx.arm.lro.outcome = "Failed";
    fx.arm.lro.omitError = true;
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("EXTENSION_LRO_FAILED");
    // what the extension itself reports (ARM's errorInfo, read after the failure) is added
    expect(err.message).toBe("the update of extension azureml failed in Azure: Failed: the operation ended Failed; the extension reports: ExtensionOperationFailed: The extension operation failed.");
    expect(err.details).toEqual({ extension: RESOURCE_ID, armCode: "Failed", health: ["ExtensionOperationFailed: The extension operation failed."] });
  });

  test("when a poll is refused after the PATCH was accepted, the error is the refusal, not a failed operation", async () => {
    fx.arm.faults.add({ method: "GET", pathIncludes: "/operations/", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.stage).toBe("extension");
    expect(err.details).toMatchObject({ status: 403, armCode: "AuthorizationFailed" });
  });
});

describe("updateSettings: a rollout is only what the extension confirms", () => {
  test("an unchanged PATCH on an extension whose last operation failed is answered 200 without an operation, and is EXTENSION_LRO_FAILED with the extension's health", async () => {
    fx.arm.lro.rejectSecrets = ["azureml-tls-2025"];
    const first = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(first.code).toBe("EXTENSION_LRO_FAILED");
    expect(first.message).toContain("E40007 INVALID_SSL_SETTING: the certificate in secret azureml-tls-2025 was rejected by the extension's health check");
    // ARM keeps the failed operation's settings; the release running is still the previous one
    expect(fx.arm.getExtension(AKS)).toMatchObject({ provisioningState: "Failed", configurationSettings: { sslSecret: "azureml-tls-2025" }, deployedSettings: { sslSecret: "azureml-tls-2024" } });

    fx.arm.lro.rejectSecrets = [];
    const mark = fx.arm.requests.length;
    const again = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(fx.arm.requests.slice(mark).filter((r) => r.method === "PATCH").map((r) => r.status)).toEqual([200]);
    expect(again.code).toBe("EXTENSION_LRO_FAILED");
    expect(again.message).toMatch(/ARM made no change \(200: no update is done\) and the extension's last operation is Failed; the extension reports: E40007 INVALID_SSL_SETTING/);
    expect(again.details).toMatchObject({ extension: RESOURCE_ID, armCode: "Failed", changed: false });
  });

  test("an unchanged PATCH on a healthy extension is no change, and no error", async () => {
    await extensionClient().updateSettings(NEW_SETTINGS);
    const { changed, state } = await extensionClient().updateSettings(NEW_SETTINGS);
    expect(changed).toBe(false);
    expect(state.provisioningState).toBe("Succeeded");
  });
});

describe("errors name what was being done, the action and the scope", () => {
  test("when ARM refuses the read without naming the action, the error names ours", async () => {
    fx.arm.faults.add({ method: "GET", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(extensionClient().get());
    expect(err.code).toBe("AZURE_FORBIDDEN");
    expect(err.message).toBe(`Azure denied the identity amlcert signed in with the action Microsoft.KubernetesConfiguration/extensions/read on ${RESOURCE_ID} while trying to read extension azureml. ${ROLE}`);
  });

  test("when ARM refuses the PATCH without naming the action, the error names ours", async () => {
    fx.arm.faults.add({ method: "PATCH", status: 403, code: "AuthorizationFailed", message: "Forbidden.", times: Infinity });
    const err = await amlcertFailure(extensionClient().updateSettings(NEW_SETTINGS));
    expect(err.message).toBe(`Azure denied the identity amlcert signed in with the action Microsoft.KubernetesConfiguration/extensions/write on ${RESOURCE_ID} while trying to update extension azureml. ${ROLE}`);
  });

  test("the stage given replaces the default", async () => {
    const err = await amlcertFailure(extensionClient({ extensionName: "nope", stage: "verify-tls" }).get());
    expect(err.stage).toBe("verify-tls");
  });

  test("every ARM response is reported to the request observer under system arm", async () => {
    const seen: [RequestSystem, string][] = [];
    await extensionClient({ requests: (system, status) => seen.push([system, status]) }).get();
    expect(seen).toEqual([["arm", "200"]]);
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

