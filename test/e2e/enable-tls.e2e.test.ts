/**
 * End to end: first-time TLS enablement. An extension seeded with allowInsecureConnections=True serves no TLS at all
 * (azureml-fe in plain HTTP). Without the opt-in, `amlcert renew` refuses and writes nothing anywhere; with
 * `renew --enable-tls` it obtains and stores the certificate first, then turns TLS on with it in ONE extension update
 * (allowInsecureConnections=False, sslSecret, scoringFe.sslSecret, sslCname), and azureml-fe serves the new
 * certificate over TLS 1.2.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../harness/harness.js";
import { servedCertificate } from "../support/served-certificate.js";

const FQDN = "ml.contoso.test";

describe("amlcert renew --enable-tls on an extension with TLS off", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness();
    config = h.writeConfig();
    const ext = h.arm.getExtension(h.clusters[0]!.extension)!;
    // as installed for HTTP scoring: TLS off, no secret named
    h.arm.addExtension({ ...h.clusters[0]!.extension, extensionType: ext.extensionType, configurationSettings: { enableInference: "True", inferenceRouterServiceType: "LoadBalancer", allowInsecureConnections: "True" } });
    await h.clusters[0]!.fe.reload();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("at first azureml-fe serves no certificate (TLS is off)", async () => {
    await expect(servedCertificate(h)).rejects.toThrow();
  });

  it("without --enable-tls, renew refuses with exit 3 and writes nothing at ARM, the Kubernetes API or the zone", async () => {
    const kube = h.clusters[0]!.kube;
    const zoneBefore = JSON.stringify(h.arm.zones.listRecordSets(h.arm.zones.zoneFor(FQDN)!));
    const [armBefore, kubeBefore] = [h.arm.requests.length, kube.requests.length];
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(3);
    expect(run.lines[0]).toMatchObject({ action: "failed", error: { code: "EXTENSION_INSECURE", stage: "preflight" } });
    expect(h.arm.requests.slice(armBefore).filter((r) => r.method !== "GET")).toEqual([]);
    expect(kube.requests.slice(kubeBefore).filter((r) => r.method !== "GET")).toEqual([]);
    expect(kube.listEvents("azureml")).toEqual([]);
    expect(JSON.stringify(h.arm.zones.listRecordSets(h.arm.zones.zoneFor(FQDN)!))).toBe(zoneBefore);
  });

  it("with --enable-tls, it says HTTP clients stop working, stores the certificate, then turns TLS on in one update, and azureml-fe serves it over TLS 1.2", async () => {
    const armBefore = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config, "--enable-tls"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("HTTP scoring clients stop working");
    const line = run.lines[0] as { action: string; reason: string; secret: string; serial: string };
    expect(line).toMatchObject({ action: "renewed", reason: "EnableTls" });

    const patches = h.arm.requests.slice(armBefore).filter((r) => r.method === "PATCH" && /\/extensions\/[^/]+$/i.test(r.path));
    expect(patches).toHaveLength(1);
    expect((patches[0]!.body as { properties: { configurationSettings: Record<string, string> } }).properties.configurationSettings).toEqual({
      sslSecret: line.secret,
      "scoringFe.sslSecret": line.secret,
      sslCname: FQDN,
      allowInsecureConnections: "False",
    });
    // the secret the update names was written by this run
    const kube = h.clusters[0]!.kube;
    const storedAt = kube.requests.findIndex((r) => r.method === "PUT" && r.resource === "secrets" && r.name === line.secret);
    expect(storedAt).toBeGreaterThanOrEqual(0);

    const settings = h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings;
    expect(settings.allowInsecureConnections).toBe("False");
    const served = await servedCertificate(h);
    expect(served.serialNumber.toUpperCase()).toBe(line.serial);
  });

  it("afterwards a plain renew has nothing to do: TLS stays on", async () => {
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.lines[0]).toMatchObject({ action: "none" });
  });

  it("--enable-tls with any other command is a usage error (exit 2)", async () => {
    const run = await h.runCli(["plan", "--config", config, "--enable-tls"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--enable-tls applies to renew only");
  });
});
