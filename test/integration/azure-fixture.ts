/**
 * Entra ID + ARM stand-ins with one DNS zone and a registered service principal and workload identity, for the
 * Azure adapter integration suites. SDK clients trust the stand-ins through NODE_EXTRA_CA_CERTS.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino, { type Logger } from "pino";
import { resolveCloud, type ResolvedCloud } from "../../src/azure/cloud.js";
import { createAzureCredential, type AzureCredential } from "../../src/azure/credential.js";
import { startArmServer, type ArmServer } from "../servers/arm-server.js";
import { startEntraServer, type EntraServer } from "../servers/entra-server.js";
import type { TestPki } from "../servers/pki.js";
import { trustedTestPki } from "../servers/trusted-pki.js";
import { ZoneStore } from "../servers/zone-store.js";
import type { ExtensionRef } from "../servers/arm-server.js";
import { createAzureDnsZone, type AzureDnsZoneOptions } from "../../src/azure-dns/azure-dns-zone.js";
import { createExtensionClient, type ExtensionClientOptions } from "../../src/extension/extension-client.js";
import type { DnsZone, ExtensionClient } from "../../src/ports.js";

export const TENANT = "72f988bf-0000-4000-8000-000000000001";
export const SUBSCRIPTION = "00000000-1111-4222-8333-444444444444";
export const DNS_RG = "rg-dns";
export const ZONE = "example.test";
export const SP = { clientId: "5b7e1d2a-0000-4000-8000-00000000aaaa", objectId: "9c1f0e3b-0000-4000-8000-00000000bbbb", secret: "sp-secret-value-Xy9~" };
export const WI = { clientId: "1a2b3c4d-0000-4000-8000-00000000cccc", objectId: "4d3c2b1a-0000-4000-8000-00000000dddd" };

/** A JWT-shaped projected service account token, as AKS mounts it for workload identity. */
export function serviceAccountToken(expSecondsFromNow = 3600): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return [
    b64({ alg: "RS256", kid: "sa-key" }),
    b64({ iss: "https://oidc.prod-aks.example/tenant/issuer/", sub: "system:serviceaccount:azureml:amlcert", aud: ["api://AzureADTokenExchange"], iat: now, exp: now + expSecondsFromNow }),
    Buffer.from("signature-not-checked-by-the-stand-in").toString("base64url"),
  ].join(".");
}

export interface AzureFixture {
  pki: TestPki;
  entra: EntraServer;
  arm: ArmServer;
  zones: ZoneStore;
  cloud: ResolvedCloud;
  dir: string;
  tokenFile: string;
  /** every log line written through `logger` */
  logLines: string[];
  logger: Logger;
  spEnv: Record<string, string>;
  wiEnv: Record<string, string>;
  credential(env?: Record<string, string | undefined>): AzureCredential;
  close(): Promise<void>;
}

export async function startAzureFixture(): Promise<AzureFixture> {
  const pki = trustedTestPki();
  const stops: Array<() => Promise<void> | void> = [];
  try {
    const dir = mkdtempSync(join(tmpdir(), "amlcert-azure-"));
    stops.push(() => rmSync(dir, { recursive: true, force: true }));
    const tokenFile = join(dir, "azure-identity-token");
    const saToken = serviceAccountToken();
    writeFileSync(tokenFile, saToken);

    const entra = await startEntraServer({ pki, tenantId: TENANT });
    stops.push(() => entra.close());
    entra.registerClient({ clientId: SP.clientId, objectId: SP.objectId, secret: SP.secret });
    entra.registerClient({ clientId: WI.clientId, objectId: WI.objectId, federatedAssertion: saToken });

    const zones = new ZoneStore();
    zones.addZone(SUBSCRIPTION, DNS_RG, ZONE, ["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    const arm = await startArmServer({ pki, entra, zones });
    stops.push(() => arm.close());

    const cloud = resolveCloud("AzurePublicCloud", { resourceManagerEndpoint: arm.url, authorityHost: entra.url });
    const logLines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString("utf8"));
        cb();
      },
    });
    const logger = pino({ level: "debug" }, sink);
    const spEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: SP.clientId, AZURE_CLIENT_SECRET: SP.secret };
    const wiEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: WI.clientId, AZURE_FEDERATED_TOKEN_FILE: tokenFile };
    return {
      pki,
      entra,
      arm,
      zones,
      cloud,
      dir,
      tokenFile,
      logLines,
      logger,
      spEnv,
      wiEnv,
      credential: (env = spEnv) => createAzureCredential({ cloud, env, logger }),
      async close() {
        for (const stop of stops.reverse()) await stop();
      },
    };
  } catch (err) {
    for (const stop of stops.reverse()) await stop();
    throw err;
  }
}

/** The Azure DNS adapter on the fixture's zone, through the real SDK, with short retries; `overrides` win. */
export function fixtureDnsZone(fx: AzureFixture, overrides: Partial<AzureDnsZoneOptions> = {}): DnsZone {
  return createAzureDnsZone({
    credential: fx.credential().credential,
    endpoint: fx.cloud.resourceManagerEndpoint,
    scope: fx.cloud.tokenScope,
    subscriptionId: SUBSCRIPTION,
    resourceGroup: DNS_RG,
    zone: ZONE,
    logger: fx.logger,
    retry: { maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 40 },
    ...overrides,
  });
}

/** The extension adapter on the extension `ref` names, through the real SDK, fast polling; `overrides` win. */
export function fixtureExtensionClient(fx: AzureFixture, ref: Omit<ExtensionRef, "subscriptionId">, overrides: Partial<ExtensionClientOptions> = {}): ExtensionClient {
  return createExtensionClient({
    credential: fx.credential().credential,
    endpoint: fx.cloud.resourceManagerEndpoint,
    scope: fx.cloud.tokenScope,
    subscriptionId: SUBSCRIPTION,
    resourceGroup: ref.resourceGroup,
    clusterType: ref.clusterType,
    clusterName: ref.clusterName,
    extensionName: ref.name,
    logger: fx.logger,
    lroTimeoutMs: 30_000,
    pollIntervalMs: 10,
    retry: { maxRetries: 1, retryDelayMs: 10, maxRetryDelayMs: 20 },
    ...overrides,
  });
}
