/**
 * End to end through the ACME front (test/servers/acme-front.ts), which adds ACME Renewal Information (RFC 9773)
 * and profiles to Pebble 2.4: the built CLI as a user runs it, the real CA issuing behind the front.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { startHarness, type CliRun, type Harness } from "../harness/harness.js";
import { frontCertIdOf } from "../servers/acme-front.js";

const FQDN = "ml.contoso.test";
const DAY = 86_400_000;
const HOUR = 3_600_000;
/** versioned mode: the harness's seedCertificateInPlace stores a version, which that mode's Role may read */
const VERSIONED = { renewal: { secretMode: "versioned" } };

function result(run: CliRun, fqdn = FQDN): Record<string, unknown> {
  const r = run.lines.find((l) => l.fqdn === fqdn);
  if (!r) throw new Error(`no result line for ${fqdn} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

/** Not due by its lifetime: a 90-day certificate issued a day ago (2/3 is day 60). */
const notDue = () => ({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
/** Due by its lifetime: a 90-day certificate with 61 days gone. */
const dueByLifetime = () => ({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });

describe("amlcert with ARI and profiles (through the ACME front)", () => {
  let h: Harness;

  beforeAll(async () => {
    // no random badNonce from Pebble: every newOrder in the front's log is one order (badNonce is a row of acme-faults.e2e)
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0", PEBBLE_WFE_NONCEREJECT: "0" }, acmeFront: true });
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await h?.stop();
  });

  const front = () => h.acmeFront!;
  const mark = () => front().log().length;
  const since = (m: number) => front().log().slice(m);

  it("when the CA's window for the certificate in place has passed, plan and renew renew it although its lifetime says not yet, sending replaces and the profile", async () => {
    const config = h.writeConfig({ acme: { profile: "classic" }, ...VERSIONED }, "ari-due.yaml");
    const inPlace = await h.seedCertificateInPlace(notDue());
    const certId = frontCertIdOf(inPlace.cert.chainPem);
    front().setWindow(certId, { start: new Date(Date.now() - 2 * HOUR), end: new Date(Date.now() - HOUR) });

    const plan = await h.runCli(["plan", "--config", config, "--json"]);
    expect(result(plan), plan.stdout).toMatchObject({ action: "renew", reason: "InRenewalWindow", renewAtSource: "ari" });
    const renewAt = Date.parse(result(plan)["renewAt"] as string);
    expect(renewAt).toBeGreaterThanOrEqual(Date.now() - 2 * HOUR - 60_000);
    expect(renewAt).toBeLessThanOrEqual(Date.now() - HOUR);

    const m = mark();
    const run = await h.runCli(["renew", "--config", config, "--json"]);
    expect(result(run), run.stdout).toMatchObject({ action: "renewed", reason: "InRenewalWindow" });
    expect(run.code).toBe(0);
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => [e.identifiers, e.profile, e.replaces, e.status])).toEqual([[[FQDN], "classic", certId, 201]]);
    expect(since(m).filter((e) => e.kind === "renewalInfo").map((e) => [e.path, e.status])).toEqual([[`/renewal-info/${certId}`, 200]]);
    expect(h.clusters[0]!.fe.servedSerial()).not.toBe(inPlace.serial);
  });

  it("when the CA's window is still ahead, plan and renew leave a certificate alone that its lifetime would renew, and say the time came from ARI", async () => {
    const config = h.writeConfig(VERSIONED, "ari-ahead.yaml");
    const inPlace = await h.seedCertificateInPlace(dueByLifetime());
    const certId = frontCertIdOf(inPlace.cert.chainPem);
    const start = new Date(Date.now() + 5 * DAY);
    const end = new Date(Date.now() + 6 * DAY);
    front().setWindow(certId, { start, end });

    const plan = await h.runCli(["plan", "--config", config, "--json"]);
    expect(result(plan), plan.stdout).toMatchObject({ action: "none", reason: "UpToDate", renewAtSource: "ari" });
    const renewAt = Date.parse(result(plan)["renewAt"] as string);
    expect(renewAt).toBeGreaterThanOrEqual(start.getTime());
    expect(renewAt).toBeLessThan(end.getTime());

    const m = mark();
    const run = await h.runCli(["renew", "--config", config, "--json"]);
    expect(result(run), run.stdout).toMatchObject({ action: "none", reason: "UpToDate", renewAt: new Date(renewAt).toISOString(), renewAtSource: "ari" });
    expect(run.code).toBe(0);
    expect(since(m).filter((e) => e.kind === "newOrder")).toEqual([]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(inPlace.serial);

    const status = await h.runCli(["status", "--config", config, "--json"]);
    expect(result(status)).toMatchObject({ renewAt: new Date(renewAt).toISOString(), renewAtSource: "ari" });
  });

  it("when the directory has no renewalInfo, the lifetime rule decides, no window is asked for and no replaces is sent", async () => {
    front().setAri(false);
    const config = h.writeConfig(VERSIONED, "ari-off.yaml");
    const inPlace = await h.seedCertificateInPlace(dueByLifetime());

    const plan = await h.runCli(["plan", "--config", config, "--json"]);
    const leaf = new X509Certificate(inPlace.cert.chainPem);
    const [nb, na] = [Date.parse(leaf.validFrom), Date.parse(leaf.validTo)];
    expect(result(plan), plan.stdout).toMatchObject({ action: "renew", reason: "InRenewalWindow", renewAtSource: "lifetime", renewAt: new Date(nb + Math.floor(((na - nb) * 2) / 3)).toISOString() });

    const m = mark();
    const run = await h.runCli(["renew", "--config", config, "--json"]);
    expect(result(run), run.stdout).toMatchObject({ action: "renewed", reason: "InRenewalWindow" });
    expect(since(m).filter((e) => e.kind === "renewalInfo")).toEqual([]);
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => [e.replaces, e.profile, e.status])).toEqual([[undefined, undefined, 201]]);
  });

  it("when the configured profile is not one the CA offers, plan and renew exit 2 naming the field and the profiles offered, and nothing is ordered", async () => {
    const config = h.writeConfig({ acme: { profile: "nonesuch" } }, "bad-profile.yaml");
    const message = `acme.profile: "nonesuch" is not a profile the CA at ${front().directoryUrl} offers; it offers classic, tlsserver, shortlived`;
    const plan = await h.runCli(["plan", "--config", config, "--json"]);
    expect(plan.code).toBe(2);
    expect(result(plan), plan.stdout).toMatchObject({ action: "error", reason: "CONFIG_INVALID", error: { code: "CONFIG_INVALID", message } });
    const m = mark();
    const run = await h.runCli(["renew", "--config", config, "--json"]);
    expect(run.code).toBe(2);
    expect(result(run), run.stdout).toMatchObject({
      action: "failed",
      error: { code: "CONFIG_INVALID", exitCode: 2, message },
    });
    expect(since(m).filter((e) => e.kind === "newOrder")).toEqual([]);
  });

  it("when a tlsserver certificate (45 days) would expire before the sound one in place, plan and renew order nothing and say from when they will", async () => {
    const config = h.writeConfig({ acme: { profile: "tlsserver" }, ...VERSIONED }, "tlsserver.yaml");
    // a one-year certificate at 80 % of its life: due by the lifetime rule, 73 days left
    const notBefore = new Date(Date.now() - 292 * DAY);
    const notAfter = new Date(notBefore.getTime() + 365 * DAY);
    const inPlace = await h.seedCertificateInPlace({ notBefore, notAfter });
    // as the certificate has it: X.509 times are whole seconds
    const expires = new Date(new X509Certificate(inPlace.cert.chainPem).validTo);
    const from = new Date(expires.getTime() - 45 * DAY + 1_000).toISOString();

    const plan = await h.runCli(["plan", "--config", config, "--json"]);
    expect(result(plan), plan.stdout).toMatchObject({
      action: "none",
      reason: "ProfileLifetimeShorter",
      renewAt: from,
      message: `a tlsserver certificate (45 days) ordered now would expire before the one in place (${expires.toISOString()}), so it would be refused; ordering from ${from}`,
    });
    const m = mark();
    const run = await h.runCli(["renew", "--config", config, "--json"]);
    expect(result(run), run.stdout).toMatchObject({ action: "none", reason: "ProfileLifetimeShorter" });
    expect(run.code).toBe(0);
    expect(since(m).filter((e) => e.kind === "newOrder")).toEqual([]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(inPlace.serial);
  });

  it("when a target names its own profile, its order carries that profile, not acme.profile", async () => {
    const path = h.writeConfig({ acme: { profile: "classic" } }, "target-profile.yaml");
    const yaml = parseYaml(readFileSync(path, "utf8")) as { targets: Record<string, unknown>[] };
    yaml.targets[0]!["profile"] = "shortlived";
    writeFileSync(path, stringifyYaml(yaml));
    const m = mark();
    const run = await h.runCli(["renew", "--config", path, "--json"]);
    expect(result(run), run.stdout).toMatchObject({ action: "renewed" });
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => [e.profile, e.replaces, e.status]), JSON.stringify(since(m))).toEqual([["shortlived", undefined, 201]]);
  });
});
