/**
 * End to end, slots mode (the default, contract C1): the built CLI against Pebble and the stand-ins, with the two
 * slot secrets created empty as the manifests in deploy/ create them. Proves from the Kubernetes stand-in's request
 * log that slots mode never lists, creates or deletes a secret, and from the ARM stand-in that every rollout PATCH is
 * a real change and that a certificate the extension rejects (E40007) is reported, never marked rolled out.
 */
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startHarness, type CliRun, type Harness, resultLine } from "../harness/harness.js";

const FQDN = "ml.contoso.test";
const SLOT_A = "aml-tls-a";
const SLOT_B = "aml-tls-b";
const DAY = 86_400_000;
const notDue = () => ({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
const inWindow = () => ({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });

const result = (run: CliRun) => resultLine(run, FQDN);

describe("slots mode against Pebble and the stand-ins", () => {
  let h: Harness;
  let config: string;
  const kube = () => h.clusters[0]!.kube;
  const extension = () => h.arm.getExtension(h.clusters[0]!.extension)!;
  const served = () => h.clusters[0]!.fe.servedSerial();
  const serialIn = (name: string) => new X509Certificate(kube().getSecret("azureml", name)!["cert.pem"]!).serialNumber.toUpperCase();
  const annotations = (name: string) => kube().getSecretObject("azureml", name)?.metadata.annotations ?? {};
  /** both slots as the manifests create them: Opaque, no data, amlcert's labels */
  const emptySlot = (name: string) => kube().putSecret("azureml", name, {}, { labels: { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": "aml-tls" } });
  /** secrets calls slots mode must never make (the default Role allows none of them) */
  const forbiddenSecretCalls = (since: number) =>
    kube()
      .requests.slice(since)
      .filter((r) => r.resource === "secrets" && ["list", "watch", "create", "delete", "deletecollection", "patch"].includes(r.verb ?? ""))
      .map((r) => `${r.verb} ${r.path}`);
  const patches = (since: number) =>
    h.arm.requests.slice(since).filter((r) => r.method === "PATCH").map((r) => (r.body as { properties: { configurationSettings: Record<string, string> } }).properties.configurationSettings);

  beforeAll(async () => {
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    config = h.writeConfig();
  });
  beforeEach(async () => {
    await h.reset();
    h.seedAccountKey();
    emptySlot(SLOT_A);
    emptySlot(SLOT_B);
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("the first issuance fills slot -a, a renewal fills -b and points both settings at it, -a keeps the previous certificate; no secret is listed, created or deleted", async () => {
    const kubeMark = kube().requests.length;
    const armMark = h.arm.requests.length;
    const first = await h.runCli(["renew", "--config", config]);
    expect(first.code, first.stderr).toBe(0);
    expect(result(first)).toMatchObject({ action: "renewed", reason: "SecretMissing", secret: SLOT_A, extensionUpdated: true, servingOk: true });
    expect(served()).toBe(result(first).serial);

    const second = await h.runCli(["renew", "--config", config, "--force"]);
    expect(second.code, second.stderr).toBe(0);
    expect(result(second)).toMatchObject({ action: "renewed", reason: "Forced", secret: SLOT_B, extensionUpdated: true, servingOk: true });
    expect(served()).toBe(result(second).serial);
    // the rollback target: the previous certificate, untouched, in the other slot
    expect(serialIn(SLOT_A)).toBe(result(first).serial);
    expect(annotations(SLOT_A)["amlcert.io/rollout"]).toBe("done");
    expect(annotations(SLOT_B)["amlcert.io/rollout"]).toBe("done");

    expect(patches(armMark)).toEqual([
      { sslSecret: SLOT_A, "scoringFe.sslSecret": SLOT_A, sslCname: FQDN },
      { sslSecret: SLOT_B, "scoringFe.sslSecret": SLOT_B, sslCname: FQDN },
    ]);
    expect(extension().configurationSettings).toMatchObject({ sslSecret: SLOT_B, "scoringFe.sslSecret": SLOT_B });
    expect(forbiddenSecretCalls(kubeMark)).toEqual([]);
    // each slot was replaced in place at the resourceVersion read (PUT), never created
    const slotWrites = kube().requests.slice(kubeMark).filter((r) => r.resource === "secrets" && r.verb === "update").map((r) => r.name);
    expect(slotWrites).toContain(SLOT_A);
    expect(slotWrites).toContain(SLOT_B);
  });

  it("a manual rollback to the other slot sticks: the next run plans on it and changes nothing", async () => {
    const a = await h.seedCertificateInPlace({ ...notDue(), name: SLOT_A });
    h.seedSecret(await h.makeCertificate(notDue()), { name: SLOT_B, rollout: "done" });
    const armMark = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "none", reason: "UpToDate", secret: SLOT_A, serial: a.serial, extensionUpdated: false, servingOk: true });
    expect(patches(armMark)).toEqual([]);
  });

  it("when the extension's health check rejects the new certificate (E40007): exit 3 with its message, azureml-fe keeps the old one, the extension names it again; the next run rolls the stored certificate out without ordering", async () => {
    const before = await h.seedCertificateInPlace({ ...inWindow(), name: SLOT_A });
    h.arm.lro.rejectSecrets = [SLOT_B];
    const armMark = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(3);
    expect(result(run).error).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension" });
    expect(String((result(run).error as { message: string }).message)).toMatch(/E40007 INVALID_SSL_SETTING/);
    expect(served()).toBe(before.serial);
    // the failed operation's settings are not left behind: the extension names the certificate served, and is healthy
    expect(patches(armMark).map((p) => p.sslSecret)).toEqual([SLOT_B, SLOT_A]);
    expect(extension()).toMatchObject({ provisioningState: "Succeeded", configurationSettings: { sslSecret: SLOT_A, "scoringFe.sslSecret": SLOT_A } });
    expect(annotations(SLOT_B)).toMatchObject({ "amlcert.io/rollout": "pending", "amlcert.io/rollout-failures": "1" });
    const stored = serialIn(SLOT_B);

    h.arm.lro.rejectSecrets = [];
    const next = await h.runCli(["renew", "--config", config]);
    expect(next.code, next.stderr).toBe(0);
    expect(result(next)).toMatchObject({ action: "renewed", secret: SLOT_B, serial: stored, servingOk: true });
    expect(next.stderr).toMatch(/reusing a stored certificate that was never rolled out/);
    expect(next.stderr).not.toMatch(/new certificate validated/);
    expect(served()).toBe(stored);
    expect(annotations(SLOT_B)).toMatchObject({ "amlcert.io/rollout": "done", "amlcert.io/rollout-failures": "1" });
  });

  it("a stale rollout: pending on the served slot (a crash between the PATCH and the annotation) is confirmed served and marked done", async () => {
    const inPlace = await h.seedCertificateInPlace({ ...notDue(), name: SLOT_A });
    const live = kube().getSecretObject("azureml", SLOT_A)!;
    kube().putSecret("azureml", SLOT_A, kube().getSecretData("azureml", SLOT_A)!, { labels: live.metadata.labels, annotations: { ...live.metadata.annotations, "amlcert.io/rollout": "pending" } });
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "none", secret: SLOT_A, serial: inPlace.serial, servingOk: true });
    expect(annotations(SLOT_A)["amlcert.io/rollout"]).toBe("done");
  });

  it("with allowInsecureConnections=True it refuses (exit 3) and writes nothing: no Lease, no Event, no history, no PATCH", async () => {
    const ext = extension();
    h.arm.addExtension({ ...h.clusters[0]!.extension, configurationSettings: { ...ext.configurationSettings, allowInsecureConnections: "True" } });
    const kubeMark = kube().requests.length;
    const armMark = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(3);
    expect(result(run).error).toMatchObject({ code: "EXTENSION_INSECURE", stage: "preflight" });
    expect(kube().requests.slice(kubeMark).filter((r) => r.method !== "GET")).toEqual([]);
    expect(kube().listEvents("azureml")).toEqual([]);
    expect(h.arm.requests.slice(armMark).filter((r) => r.method !== "GET")).toEqual([]);
  });
});
