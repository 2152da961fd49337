import { writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { createServer as createHttpsServer, request } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { createAzureDnsZone } from "../../src/azure-dns/azure-dns-zone.js";
import { isMicrosoftAuthorityHost, resolveCloud, type ResolvedCloud } from "../../src/azure/cloud.js";
import { createAzureCredential, type AzureCredential } from "../../src/azure/credential.js";
import { AmlcertError } from "../../src/errors.js";
import { DNS_RG, SP, SUBSCRIPTION, TENANT, WI, ZONE, serviceAccountToken, startAzureFixture, type AzureFixture } from "./azure-fixture.js";
import { amlcertFailure } from "../support/assertions.js";

let fx: AzureFixture;
beforeAll(async () => {
  fx = await startAzureFixture();
});
afterAll(async () => {
  await fx?.close();
});
afterEach(() => {
  fx.arm.requests.length = 0;
  fx.entra.tokenRequests.length = 0;
});

function zoneWith(azure: AzureCredential, cloud: ResolvedCloud = fx.cloud) {
  return createAzureDnsZone({
    credential: azure.credential,
    endpoint: cloud.resourceManagerEndpoint,
    scope: cloud.tokenScope,
    subscriptionId: SUBSCRIPTION,
    resourceGroup: DNS_RG,
    zone: ZONE,
    logger: fx.logger,
  });
}


describe("workload identity", () => {
  test("with the AKS webhook's variables, the projected token is exchanged at Entra and ARM accepts the access token", async () => {
    // the preset cloud authority yields to AZURE_AUTHORITY_HOST, as the webhook sets it
    const cloud = resolveCloud("AzurePublicCloud", { resourceManagerEndpoint: fx.arm.url });
    const azure = createAzureCredential({ cloud, env: { ...fx.wiEnv, AZURE_AUTHORITY_HOST: `${fx.entra.url}/` }, logger: fx.logger });
    expect(azure.candidates).toEqual(["workload-identity"]);
    expect(await azure.identity()).toEqual({ method: "workload-identity", clientId: WI.clientId, objectId: WI.objectId, tenantId: TENANT });
    expect(fx.entra.tokenRequests.map((r) => [r.clientId, r.credentialKind, r.status])).toEqual([[WI.clientId, "assertion", 200]]);

    expect(await zoneWith(azure, cloud).nameServers()).toEqual(["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    expect(fx.arm.requests.map((r) => [r.status, r.principalOid])).toEqual([[200, WI.objectId]]);
  });

  test("when the federated credential does not match the projected token, the error is AZURE_AUTH naming workload identity and its variables", async () => {
    const other = join(fx.dir, "other-token");
    writeFileSync(other, serviceAccountToken(600));
    const err = await amlcertFailure(fx.credential({ ...fx.wiEnv, AZURE_FEDERATED_TOKEN_FILE: other }).identity());
    expect(err.code).toBe("AZURE_AUTH");
    expect(err.stage).toBe("preflight");
    expect(err.message).toContain("workload identity");
    expect(err.message).toContain("AZURE_FEDERATED_TOKEN_FILE");
    expect(err.message).toContain(WI.clientId);
    expect(err.message).toContain("AADSTS70021");
  });

  test("when only workload identity is allowed but the token file is not configured, the error lists the missing variables and Entra is not called", async () => {
    const err = await amlcertFailure(
      fx.credential({ AZURE_TOKEN_CREDENTIALS: "WorkloadIdentityCredential", AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: WI.clientId }).identity(),
    );
    expect(err.code).toBe("AZURE_AUTH");
    expect(err.message).toContain("AZURE_FEDERATED_TOKEN_FILE");
    expect(fx.entra.tokenRequests).toEqual([]);
  });
});

describe("service principal", () => {
  test("with AZURE_CLIENT_SECRET, the service principal signs in and ARM accepts its token", async () => {
    const azure = fx.credential(fx.spEnv);
    expect(await azure.identity()).toEqual({ method: "service-principal", clientId: SP.clientId, objectId: SP.objectId, tenantId: TENANT });
    await zoneWith(azure).nameServers();
    expect(fx.arm.requests.map((r) => r.principalOid)).toEqual([SP.objectId]);
  });

  test("when both a service principal and workload identity are configured, the service principal is used (DefaultAzureCredential's order)", async () => {
    const azure = fx.credential({ ...fx.wiEnv, AZURE_CLIENT_ID: SP.clientId, AZURE_CLIENT_SECRET: SP.secret });
    expect(azure.candidates).toEqual(["service-principal"]);
    expect((await azure.identity()).method).toBe("service-principal");
  });

  test("when the secret is wrong, the error is AZURE_AUTH naming the method and variables, without the secret", async () => {
    const wrong = "definitely-wrong-secret";
    const err = await amlcertFailure(fx.credential({ ...fx.spEnv, AZURE_CLIENT_SECRET: wrong }).identity());
    expect(err.code).toBe("AZURE_AUTH");
    expect(err.stage).toBe("preflight");
    expect(err.message).toContain("service principal");
    expect(err.message).toContain("AZURE_CLIENT_SECRET");
    expect(err.message).toContain("AADSTS7000215");
    expect(err.message).not.toContain(wrong);
  });

  test("when an adapter's call cannot get a token, the adapter reports AZURE_AUTH at its own stage and ARM is not called", async () => {
    const azure = fx.credential({ ...fx.spEnv, AZURE_CLIENT_SECRET: "wrong" });
    const err = await amlcertFailure(zoneWith(azure).addTxtValue(`_acme-challenge.${ZONE}`, "v", 60));
    expect(err.code).toBe("AZURE_AUTH");
    expect(err.stage).toBe("dns-challenge");
    expect(fx.arm.requests).toEqual([]);
  });

  test("when the token is for another audience, ARM answers 401 and the adapter reports AZURE_AUTH with ARM's reason", async () => {
    const cloud = resolveCloud("AzurePublicCloud", { resourceManagerEndpoint: fx.arm.url, authorityHost: fx.entra.url, tokenScope: "https://vault.azure.net/.default" });
    const azure = createAzureCredential({ cloud, env: fx.spEnv, logger: fx.logger });
    const err = await amlcertFailure(zoneWith(azure, cloud).nameServers());
    expect(err.code).toBe("AZURE_AUTH");
    expect(err.message).toContain("InvalidAuthenticationTokenAudience");
    expect(fx.arm.requests.map((r) => r.status)).toEqual([401]);
  });
});

describe("authority and logs", () => {
  test("an authority host set in the configuration wins over AZURE_AUTHORITY_HOST", async () => {
    // a loopback address with nothing listening: if the variable won, sign-in would fail, and no traffic leaves the machine
    const azure = fx.credential({ ...fx.spEnv, AZURE_AUTHORITY_HOST: "https://127.0.0.2:9" });
    expect(azure.authorityHost).toBe(fx.entra.url);
    expect((await azure.identity()).method).toBe("service-principal");
  });

  test("when Entra fails once with 503, the sign-in is retried and succeeds", async () => {
    fx.entra.failTokenRequests({ status: 503, times: 1, retryAfterSeconds: 0 });
    expect((await fx.credential().identity()).method).toBe("service-principal");
    expect(fx.entra.tokenRequests.map((r) => r.status)).toEqual([503, 200]);
  });

  test("a request to ARM without a bearer token gets 401 with WWW-Authenticate and an ARM error body", async () => {
    const res = await new Promise<{ status: number; challenge?: string; body: string }>((resolve, reject) => {
      const req = request(`${fx.arm.url}/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnszones/${ZONE}?api-version=2018-05-01`, { ca: fx.pki.caPem }, (r) => {
        let body = "";
        r.on("data", (c: Buffer) => (body += c.toString()));
        r.on("end", () => resolve({ status: r.statusCode ?? 0, challenge: r.headers["www-authenticate"], body }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(res.status).toBe(401);
    expect(res.challenge).toMatch(/^Bearer authorization_uri="/);
    expect(JSON.parse(res.body)).toEqual({ error: { code: "AuthenticationFailed", message: expect.stringContaining("Authorization") as string } });
  });

  test("neither the access token nor the secret reaches the log", async () => {
    fx.logLines.length = 0;
    const azure = fx.credential(fx.spEnv);
    await azure.identity();
    const token = await azure.credential.getToken(fx.cloud.tokenScope);
    await zoneWith(azure).nameServers();
    const log = fx.logLines.join("");
    expect(log).toContain("signed in to Azure");
    expect(log).not.toContain(token!.token);
    expect(log).not.toContain(token!.token.split(".")[1]);
    expect(log).not.toContain(SP.secret);
    expect(JSON.stringify(fx.arm.requests)).not.toContain(token!.token.split(".")[1]);
  });

  test("an unsupported AZURE_TOKEN_CREDENTIALS value is a configuration error", () => {
    expect(() => fx.credential({ AZURE_TOKEN_CREDENTIALS: "VisualStudioCodeCredential" })).toThrowError(
      expect.objectContaining({ code: "CONFIG_INVALID" }) as Error,
    );
  });
});

describe("cloud presets", () => {
  test("each preset names its ARM endpoint, authority and token scope; overrides replace single fields", () => {
    expect(resolveCloud("AzureChinaCloud")).toMatchObject({
      resourceManagerEndpoint: "https://management.chinacloudapi.cn",
      authorityHost: "https://login.chinacloudapi.cn",
      tokenScope: "https://management.chinacloudapi.cn/.default",
      authorityHostSource: "preset",
    });
    expect(resolveCloud("AzureUSGovernment").authorityHost).toBe("https://login.microsoftonline.us");
    expect(resolveCloud("AzurePublicCloud", { resourceManagerEndpoint: "https://arm.internal.example/" })).toMatchObject({
      resourceManagerEndpoint: "https://arm.internal.example",
      tokenScope: "https://arm.internal.example/.default",
    });
    expect(resolveCloud("AzurePublicCloud", { authorityHost: "https://127.0.0.1:8443/" })).toMatchObject({ authorityHost: "https://127.0.0.1:8443", authorityHostSource: "override" });
  });

  test("instance discovery is only kept for Microsoft authority hosts", () => {
    expect(isMicrosoftAuthorityHost("https://login.microsoftonline.com")).toBe(true);
    expect(isMicrosoftAuthorityHost("https://login.chinacloudapi.cn/")).toBe(true);
    expect(isMicrosoftAuthorityHost("https://127.0.0.1:8443")).toBe(false);
    expect(isMicrosoftAuthorityHost("https://login.microsoftonline.com.evil.example")).toBe(false);
  });
});

describe("a hung Entra ID (issue 7)", () => {
  test("when Entra ID never answers, the request is given up after azure.requestTimeout and the sign-in fails with AZURE_AUTH naming the request and the bound", async () => {
    const held: ServerResponse[] = [];
    const hung = createHttpsServer({ cert: fx.pki.certPem, key: fx.pki.keyPem }, (_req, res) => void held.push(res));
    await new Promise<void>((resolve) => hung.listen(0, "127.0.0.1", resolve));
    const authority = `https://127.0.0.1:${(hung.address() as AddressInfo).port}`;
    try {
      const cloud = resolveCloud("AzurePublicCloud", { resourceManagerEndpoint: fx.arm.url, authorityHost: authority });
      const azure = createAzureCredential({ cloud, env: fx.spEnv, logger: fx.logger, requestTimeoutMs: 1000 });
      const err = await amlcertFailure(azure.identity());
      expect(err.code).toBe("AZURE_AUTH");
      expect(err.message).toBe(
        `Azure sign-in with service principal ${SP.clientId} in tenant ${TENANT} (from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET) failed: endpoints_resolution_error: See https://aka.ms/msal.js.errors#endpoints_resolution_error for details (Entra ID did not answer GET /${TENANT}/v2.0/.well-known/openid-configuration within 1 s (azure.requestTimeout))`,
      );
      expect(err.details).toMatchObject({ timeout: true });
      expect(held.length).toBe(1);
    } finally {
      for (const res of held) res.destroy();
      hung.closeAllConnections();
      await new Promise<void>((resolve) => hung.close(() => resolve()));
    }
  });
});
