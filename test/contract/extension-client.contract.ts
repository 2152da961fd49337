/**
 * The ExtensionClient port (src/ports.ts) as ARM runs Microsoft.KubernetesConfiguration/extensions: configurationSettings
 * are merged by a PATCH; a PATCH that changes nothing is answered at once without an operation ("200: no update is
 * done"): changed false when the extension is healthy, EXTENSION_LRO_FAILED when its last operation failed (the
 * settings are stored but not in effect). Any other PATCH starts a long-running operation, and ARM stores the new
 * settings right away: when the operation fails, they stay, and the extension shows provisioningState "Failed".
 * (ARM's documented PATCH semantics; our stand-in, test/servers/arm-extensions.ts, does the same.)
 */
import { beforeEach, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { ExtensionClient } from "../../src/ports.js";

export interface ExtensionSeed {
  configurationSettings: Record<string, string>;
  /** protected settings with their values (the client must never see the values) */
  protectedSettings: Record<string, string>;
  /** default "Succeeded" */
  provisioningState?: string;
}

export interface ExtensionSubject {
  /** the port under test, for an extension of type Microsoft.AzureML.Kubernetes seeded as asked */
  client: ExtensionClient;
  /** the next operations end Failed with this error (ARM's `error` of the operation); undefined: they succeed again */
  failOperations(error: { code: string; message: string } | undefined): void;
  /** the extension as the service holds it now, read beside the port */
  held(): { provisioningState: string; configurationSettings: Record<string, string>; protectedSettings: Record<string, string> };
}

const SEED: ExtensionSeed = {
  configurationSettings: {
    enableInference: "True",
    inferenceRouterServiceType: "LoadBalancer",
    allowInsecureConnections: "False",
    sslSecret: "azureml-tls-2024",
    "scoringFe.sslSecret": "azureml-tls-2024",
    sslCname: "ml.example.test",
  },
  protectedSettings: { "relayserver.relayConnectionString": "Endpoint=sb://relay.example/;SharedAccessKey=c2VjcmV0" },
};
const NEW = { sslSecret: "azureml-tls-2025", "scoringFe.sslSecret": "azureml-tls-2025", sslCname: "ml.example.test" };
const E40007 = { code: "ExtensionOperationFailed", message: "E40007 INVALID_SSL_SETTING: the secret azureml-tls-2025 has no cert.pem" };

export function describeContract(name: string, makeSubject: (seed: ExtensionSeed) => Promise<ExtensionSubject>): void {
  describe(`ExtensionClient contract: ${name}`, () => {
    let s: ExtensionSubject;
    beforeEach(async () => {
      s = await makeSubject(SEED);
    });

    it("get returns the type, the provisioning state, the settings, and only the keys of the protected settings", async () => {
      const state = await s.client.get();
      expect(state).toMatchObject({ extensionType: "Microsoft.AzureML.Kubernetes", provisioningState: "Succeeded", configurationSettings: SEED.configurationSettings });
      expect(state.protectedSettingKeys).toEqual(Object.keys(SEED.protectedSettings));
      expect(JSON.stringify(state)).not.toContain("SharedAccessKey=");
    });

    it("when settings change, the update merges them into the others, reports changed, and ends Succeeded; the protected settings stay", async () => {
      const { changed, state } = await s.client.updateSettings(NEW);
      expect(changed).toBe(true);
      expect(state).toMatchObject({ provisioningState: "Succeeded", configurationSettings: { ...SEED.configurationSettings, ...NEW } });
      expect(await s.client.get()).toMatchObject({ provisioningState: "Succeeded", configurationSettings: { ...SEED.configurationSettings, ...NEW } });
      expect(s.held().protectedSettings).toEqual(SEED.protectedSettings);
    });

    it("when the settings sent are those the extension has, the update reports unchanged and the extension stays as it was", async () => {
      const { changed, state } = await s.client.updateSettings({ sslSecret: "azureml-tls-2024", sslCname: "ml.example.test" });
      expect(changed).toBe(false);
      expect(state).toMatchObject({ provisioningState: "Succeeded", configurationSettings: SEED.configurationSettings });
      expect(s.held()).toMatchObject({ provisioningState: "Succeeded", configurationSettings: SEED.configurationSettings });
    });

    it("when the operation fails, the update rejects with EXTENSION_LRO_FAILED carrying ARM's message; the new settings stay and the extension shows Failed", async () => {
      s.failOperations(E40007);
      const err = await s.client.updateSettings(NEW).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension" });
      expect((err as Error).message).toContain(E40007.message);
      expect(await s.client.get()).toMatchObject({ provisioningState: "Failed", configurationSettings: { ...SEED.configurationSettings, ...NEW } });
      expect(s.held().protectedSettings).toEqual(SEED.protectedSettings);
    });

    it("after a failed operation, sending the same settings again changes nothing and is no success (EXTENSION_LRO_FAILED); other settings run an operation again", async () => {
      s.failOperations(E40007);
      await s.client.updateSettings(NEW).catch(() => undefined);
      s.failOperations(undefined);
      const again = await s.client.updateSettings(NEW).then(() => undefined, (e: unknown) => e);
      expect(again).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension" });
      expect((again as Error).message).toContain("no update is done");
      expect(s.held().provisioningState).toBe("Failed");
      const back = { sslSecret: "azureml-tls-2024", "scoringFe.sslSecret": "azureml-tls-2024", sslCname: "ml.example.test" };
      const { changed, state } = await s.client.updateSettings(back);
      expect(changed).toBe(true);
      expect(state).toMatchObject({ provisioningState: "Succeeded", configurationSettings: SEED.configurationSettings });
    });

    it("when the signal is already aborted, the update rejects with its reason and the extension is untouched", async () => {
      const stop = new AbortController();
      stop.abort(new Error("SIGTERM"));
      await expect(s.client.updateSettings(NEW, stop.signal)).rejects.toThrow("SIGTERM");
      expect(s.held()).toMatchObject({ provisioningState: "Succeeded", configurationSettings: SEED.configurationSettings });
    });
  });

  describe(`ExtensionClient contract: ${name}, an extension whose last operation failed`, () => {
    it("an update with the settings it already has changes nothing and rejects with EXTENSION_LRO_FAILED; the extension stays Failed", async () => {
      const s = await makeSubject({ ...SEED, provisioningState: "Failed" });
      expect((await s.client.get()).provisioningState).toBe("Failed");
      const err = await s.client.updateSettings({ sslSecret: "azureml-tls-2024" }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension" });
      expect(s.held()).toMatchObject({ provisioningState: "Failed", configurationSettings: SEED.configurationSettings });
    });
  });
}
