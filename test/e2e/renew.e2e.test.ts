/**
 * End to end: the built CLI as a child process against the real Pebble and the loopback stand-ins (ARM over HTTPS,
 * authoritative DNS over UDP/TCP, Entra ID, the Kubernetes API with the shipped RBAC, azureml-fe over TLS 1.2).
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startHarness, type CliRun, type Harness } from "../harness/harness.js";
import { findDef } from "../servers/kube-resources.js";

const FQDN = "ml.contoso.test";
/** kubectl must run asynchronously: the Kubernetes stand-in lives in this process's event loop. */
const kubectl = async (kubeconfig: string, ...args: string[]) => (await promisify(execFile)("kubectl", ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" })).stdout;

function result(run: CliRun, fqdn = FQDN): Record<string, unknown> {
  const r = run.lines.find((l) => l.fqdn === fqdn);
  if (!r) throw new Error(`no result line for ${fqdn} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

/**
 * A config with a new ACME account. Pebble reuses a valid authorization of the same account now and then even with
 * PEBBLE_AUTHZREUSE=0 (its check is `rand.Intn(100) > percent`), and then nothing is presented: tests that need the
 * DNS-01 challenge to be written use an account that has no valid authorization yet.
 */
function freshAccountConfig(h: Harness, name: string): string {
  return h.writeConfig({ acme: { accountKey: { secret: `amlcert-acme-${name}` } } }, `${name}.yaml`);
}

function extensionOf(h: Harness, i = 0) {
  return h.arm.getExtension(h.clusters[i]!.extension)!;
}

/** TXT record sets left in any zone (our challenge values must always be removed). */
function txtLeft(h: Harness): string[] {
  return h.zones.allZones().flatMap((z) => h.zones.listRecordSets(z, "TXT").map((r) => `${r.name}.${z.name}`));
}

function servedSecretSerial(h: Harness, i = 0): string {
  const name = extensionOf(h, i).configurationSettings.sslSecret!;
  const pem = h.clusters[i]!.kube.getSecret("azureml", name)!["cert.pem"]!;
  return new X509Certificate(pem).serialNumber.toUpperCase();
}

async function expectPreviousStillServed(h: Harness, before: { secret: string; serial: string }) {
  expect(extensionOf(h).configurationSettings.sslSecret).toBe(before.secret);
  expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
  expect(txtLeft(h)).toEqual([]);
}

const DAY = 86_400_000;
/** Not due: issued a day ago, valid 90 days (renewal is due at 2/3 of the lifetime, day 60). */
const notDue = () => ({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
/** Inside its renewal window: a 90-day certificate with 61 days gone, 29 left. */
const inWindow = () => ({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });

/**
 * One harness for speed; every test starts from the stand-ins as the harness started them (h.reset() in beforeEach)
 * and seeds the certificate, secrets and extension state it needs, so each passes alone and in any order.
 */
describe("amlcert renew against Pebble and the stand-ins", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    // versioned mode, opt-in since slots mode became the default (test/e2e/slots.e2e.test.ts); the harness's Role
    // switches to the versioned overlay's Role for it (list, create and delete on Secrets)
    config = h.writeConfig({ renewal: { secretMode: "versioned" } });
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("plan on an empty cluster says it would renew because no certificate is in place, and writes nothing", async () => {
    const armWrites = h.arm.requests.length;
    const kubeWrites = h.clusters[0]!.kube.requests.length;
    const run = await h.runCli(["plan", "--config", config]);
    expect(run.code).toBe(0);
    expect(result(run)).toMatchObject({ action: "renew", reason: "SecretMissing" });
    expect(h.arm.requests.slice(armWrites).filter((r) => r.method !== "GET")).toEqual([]);
    expect(h.clusters[0]!.kube.requests.slice(kubeWrites).filter((r) => r.method !== "GET")).toEqual([]);
  });

  it("first issuance: stores a versioned secret, points the extension at it, and azureml-fe serves it", async () => {
    const armBefore = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    const first = result(run);
    expect(first).toMatchObject({ fqdn: FQDN, action: "renewed", reason: "SecretMissing", extensionUpdated: true, dnsOk: true, servingOk: true });
    expect(first.secret).toMatch(/^aml-tls-\d{8}-[0-9a-f]{8}$/);
    const ext = extensionOf(h);
    expect(ext.configurationSettings).toMatchObject({ sslSecret: first.secret, "scoringFe.sslSecret": first.secret, sslCname: FQDN });
    // protected settings are never sent, so the relay secret survives
    expect(ext.protectedSettings["relay.connectionString"]).toContain("SharedAccessKey");
    const patches = h.arm.requests.slice(armBefore).filter((r) => r.method === "PATCH");
    expect(patches.map((r) => Object.keys((r.body as { properties: object }).properties))).toEqual([["configurationSettings"]]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(first.serial);
    expect(txtLeft(h)).toEqual([]);
  });

  it("authenticates with workload identity: a federated token exchanged at Entra ID, named in the log", async () => {
    const tokensBefore = h.entra.tokenRequests.length;
    const run = await h.runCli(["plan", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(h.entra.tokenRequests.slice(tokensBefore).some((t) => t.credentialKind === "assertion" && t.status === 200)).toBe(true);
    expect(run.stderr).toMatch(/workload-identity/);
  });

  it("the stored secret reads back through kubectl, and openssl confirms the key matches the certificate and the SANs", async () => {
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    const stored = result(run);
    const get = async (key: string) =>
      Buffer.from(await kubectl(h.kubeconfig, "get", "secret", String(stored.secret), "-n", "azureml", "-o", `jsonpath={.data.${key.replace(".", "\\.")}}`), "base64").toString("utf8");
    const cert = await get("cert.pem");
    const key = await get("key.pem");
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const certFile = join(h.dir, "readback-cert.pem");
    const keyFile = join(h.dir, "readback-key.pem");
    writeFileSync(certFile, cert);
    writeFileSync(keyFile, key);
    const fromCert = execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-pubkey"], { encoding: "utf8" });
    const fromKey = execFileSync("openssl", ["pkey", "-in", keyFile, "-pubout"], { encoding: "utf8" });
    expect(fromKey).toBe(fromCert);
    const sans = execFileSync("openssl", ["x509", "-in", certFile, "-noout", "-ext", "subjectAltName"], { encoding: "utf8" });
    expect(sans).toContain(`DNS:${FQDN}`);
    // leaf first, then Pebble's intermediate, which signs it: the leaf's issuer is the second certificate's subject,
    // and openssl verifies the leaf's signature with the second certificate alone
    const blocks = cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    expect(blocks).toHaveLength(2);
    const leafFile = join(h.dir, "leaf.pem");
    const intermediateFile = join(h.dir, "intermediate.pem");
    writeFileSync(leafFile, blocks[0]!);
    writeFileSync(intermediateFile, blocks[1]!);
    const field = (file: string, what: "-issuer" | "-subject") => execFileSync("openssl", ["x509", "-in", file, "-noout", what, "-nameopt", "RFC2253"], { encoding: "utf8" }).replace(/^(issuer|subject)=/, "").trim();
    expect(field(leafFile, "-issuer")).toBe(field(intermediateFile, "-subject"));
    expect(field(intermediateFile, "-subject")).not.toBe(field(intermediateFile, "-issuer"));
    expect(execFileSync("openssl", ["verify", "-partial_chain", "-CAfile", intermediateFile, leafFile], { encoding: "utf8" }).trim()).toBe(`${leafFile}: OK`);
    const labels = JSON.parse(await kubectl(h.kubeconfig, "get", "secret", String(stored.secret), "-n", "azureml", "-o", "json")) as {
      type: string;
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
    };
    expect(labels.type).toBe("Opaque");
    expect(labels.metadata.labels["app.kubernetes.io/managed-by"]).toBe("amlcert");
    expect(labels.metadata.annotations).toMatchObject({ "amlcert.io/fqdn": FQDN, "amlcert.io/serial": stored.serial });
    expect(labels.metadata.annotations["amlcert.io/sha256-fingerprint"]).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("when the certificate in place is not due, a run changes nothing and exits 0", async () => {
    const inPlace = await h.seedCertificateInPlace(notDue());
    const armBefore = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "none", reason: "UpToDate", serial: inPlace.serial, secret: inPlace.secret, extensionUpdated: false, servingOk: true });
    expect(h.arm.requests.slice(armBefore).filter((r) => r.method !== "GET")).toEqual([]);
  });

  it("inside the renewal window it renews, rolls out, and keeps the previous version", async () => {
    // 61 of 90 days gone: past the default renewal time (2/3 of the lifetime)
    const inPlace = await h.seedCertificateInPlace(inWindow());
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    const r = result(run);
    expect(r).toMatchObject({ action: "renewed", reason: "InRenewalWindow", servingOk: true, extensionUpdated: true });
    expect(r.serial).not.toBe(inPlace.serial);
    expect(extensionOf(h).configurationSettings.sslSecret).toBe(r.secret);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(r.serial);
    expect(h.clusters[0]!.kube.getSecret("azureml", inPlace.secret)).toBeDefined(); // previous kept
  });

  it("with --force it renews a certificate that is not due, and prunes versions beyond keepPrevious", async () => {
    // an older version rolled out before the one in place: keepPrevious (1) keeps only the one in place
    const older = h.seedSecret(await h.makeCertificate({ notBefore: new Date(Date.now() - 31 * DAY), notAfter: new Date(Date.now() + 59 * DAY) }));
    const inPlace = await h.seedCertificateInPlace(notDue());
    const run = await h.runCli(["renew", "--config", config, "--force"]);
    expect(run.code, run.stderr).toBe(0);
    const r = result(run);
    expect(r).toMatchObject({ action: "renewed", reason: "Forced", servingOk: true });
    expect(h.clusters[0]!.fe.servedSerial()).toBe(r.serial);
    const versions = JSON.parse(await kubectl(h.kubeconfig, "get", "secrets", "-n", "azureml", "-l", "amlcert.io/secret-base=aml-tls", "-o", "json")) as { items: { metadata: { name: string } }[] };
    expect(versions.items.map((i) => i.metadata.name).sort()).toEqual([inPlace.secret, String(r.secret)].sort());
    expect(h.clusters[0]!.kube.getSecret("azureml", older)).toBeUndefined();
  });

  it("extra SANs (including a wildcard under the FQDN) are issued in one order and covered by the new certificate", async () => {
    await h.seedCertificateInPlace({ ...notDue(), names: [FQDN] });
    const sansConfig = h.writeConfig({ targets: [{ ...(readTarget(config) as object), sans: ["api.contoso.test", "*.ml.contoso.test"] }] }, "sans.yaml");
    const run = await h.runCli(["renew", "--config", sansConfig]);
    expect(run.code, run.stderr).toBe(0);
    const r = result(run);
    expect(r).toMatchObject({ action: "renewed", reason: "NamesNotCovered" });
    const pem = h.clusters[0]!.kube.getSecret("azureml", String(r.secret))!["cert.pem"]!;
    const san = new X509Certificate(pem).subjectAltName ?? "";
    expect(san).toContain("DNS:api.contoso.test");
    expect(san).toContain("DNS:*.ml.contoso.test");
    expect(san).toContain(`DNS:${FQDN}`);
    expect(txtLeft(h)).toEqual([]);
  });

  describe("failures up to the extension update leave the previous certificate in place and served", () => {
    let before: { secret: string; serial: string };
    beforeEach(async () => {
      // a certificate in place and served; an account key stored (so faults on secret writes meet the certificate's store, not the account's)
      const inPlace = await h.seedCertificateInPlace(notDue());
      before = { secret: inPlace.secret, serial: inPlace.serial };
      h.seedAccountKey();
    });

    it("Azure DNS 403 on TXT write: exit 3, stage dns-challenge, names the action and the role", async () => {
      h.arm.deny({ action: "Microsoft.Network/dnszones/TXT/write" });
      try {
        const run = await h.runCli(["renew", "--config", freshAccountConfig(h, "dns403"), "--force"]);
        expect(run.code, run.stderr).toBe(3);
        expect(result(run).error).toMatchObject({ code: "AZURE_FORBIDDEN", stage: "dns-challenge" });
        expect(run.stderr).toMatch(/Microsoft\.Network\/dnszones\/TXT\/write/);
        await expectPreviousStillServed(h, before);
      } finally {
        h.arm.clearAuthorization();
      }
    });

    it("Azure DNS 429 beyond the retries: exit 3, stage dns-challenge", async () => {
      const fault = h.arm.faults.add({ method: "PUT", pathIncludes: "/TXT/", status: 429, times: Infinity, retryAfterSeconds: 1 });
      try {
        const run = await h.runCli(["renew", "--config", freshAccountConfig(h, "dns429"), "--force"]);
        expect(run.code, run.stderr).toBe(3);
        expect(result(run).error).toMatchObject({ code: "AZURE_THROTTLED", stage: "dns-challenge" });
        expect(fault.hits).toBeGreaterThan(1);
        await expectPreviousStillServed(h, before);
      } finally {
        fault.remove();
      }
    });

    it("a secret write that stays conflicted: exit 3, stage store, TXT values removed", async () => {
      const kube = h.clusters[0]!.kube;
      const faults = [
        kube.faults.add({ method: "POST", pathIncludes: "/secrets", status: 409, times: Infinity, reason: "AlreadyExists" }),
        kube.faults.add({ method: "PUT", pathIncludes: "/secrets/aml-tls-", status: 409, times: Infinity }),
      ];
      try {
        const run = await h.runCli(["renew", "--config", config, "--force"]);
        expect(run.code, run.stderr).toBe(3);
        expect(result(run).error).toMatchObject({ code: "KUBE_CONFLICT", stage: "store" });
        await expectPreviousStillServed(h, before);
      } finally {
        faults.forEach((f) => f.remove());
      }
    });

    it("a secret write that RBAC forbids: exit 3, stage store, the message names the Role", async () => {
      const kube = h.clusters[0]!.kube;
      const fault = kube.faults.add({ method: "POST", pathIncludes: "/namespaces/azureml/secrets", status: 403 });
      try {
        const run = await h.runCli(["renew", "--config", config, "--force"]);
        expect(run.code, run.stderr).toBe(3);
        expect(result(run).error).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "store" });
        expect(run.stderr).toMatch(/deploy\/rbac\.yaml|Role/);
        await expectPreviousStillServed(h, before);
      } finally {
        fault.remove();
      }
    });

    it("extension update operation Failed: exit 3, stage extension; the new certificate is kept, unreferenced; the next run rolls the stored one out (a real change, where the same settings again would change nothing)", async () => {
      h.arm.lro.outcome = "Failed";
      let pending: string;
      try {
        const run = await h.runCli(["renew", "--config", config, "--force"]);
        expect(run.code, run.stderr).toBe(3);
        expect(result(run).error).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension" });
        expect(h.clusters[0]!.fe.servedSerial()).toBe(before.serial);
        expect(txtLeft(h)).toEqual([]);
        pending = String((run.stderr.match(/aml-tls-\d{8}-[0-9a-f]{8}/g) ?? []).find((n) => n !== before.secret));
      } finally {
        h.arm.lro.outcome = "Succeeded";
      }
      expect(h.clusters[0]!.kube.getSecret("azureml", pending)).toBeDefined();
      expect(h.clusters[0]!.kube.getSecretObject("azureml", pending)?.metadata.annotations).toMatchObject({ "amlcert.io/rollout": "pending", "amlcert.io/rollout-failures": "1" });
      expect(extensionOf(h).provisioningState).toBe("Failed");

      // every operation failed, so pointing the extension back at the certificate served failed too (ARM keeps the
      // settings of a failed operation): the extension names the certificate served, Failed. Nothing is due, but the
      // same settings again would change nothing ("no update is done"): the next run rolls the stored version out
      // instead (a real change), verifies it and reports renewed
      const named = extensionOf(h).configurationSettings.sslSecret;
      expect(named).toBe(before.secret);
      const patchesBefore = h.arm.requests.filter((r) => r.method === "PATCH").length;
      const next = await h.runCli(["renew", "--config", config]);
      expect(next.code, next.stderr).toBe(0);
      expect(result(next)).toMatchObject({ action: "renewed", secret: pending, extensionUpdated: true, servingOk: true });
      expect(h.arm.requests.filter((r) => r.method === "PATCH").length).toBe(patchesBefore + 1);
      expect(extensionOf(h).provisioningState).toBe("Succeeded");
      expect(h.clusters[0]!.fe.servedSerial()).toBe(result(next).serial);
      expect(h.clusters[0]!.kube.getSecretObject("azureml", pending)?.metadata.annotations?.["amlcert.io/rollout"]).toBe("done");
    });
  });

  describe("failures in the checks after rollout keep the new certificate stored and do not prune", () => {
    beforeEach(async () => {
      await h.seedCertificateInPlace(notDue());
    });

    it("the FQDN resolves elsewhere: a warning before issuing, then exit 4 at verify-dns", async () => {
      const zone = h.zones.zoneFor(FQDN)!;
      h.zones.putRecordSet(zone, "A", "ml", { ttl: 300, addresses: ["127.0.0.9"] });
      try {
        const previous = extensionOf(h).configurationSettings.sslSecret!;
        const run = await h.runCli(["renew", "--config", config, "--force"]);
        expect(run.code, run.stderr).toBe(4);
        expect(result(run).error).toMatchObject({ code: "DNS_MISMATCH", stage: "verify-dns" });
        expect(run.stderr).toMatch(/DNS check before issuing/);
        expect(extensionOf(h).configurationSettings.sslSecret).toBe(result(run).secret);
        expect(h.clusters[0]!.kube.getSecret("azureml", previous)).toBeDefined();
        expect(servedSecretSerial(h)).toBe(h.clusters[0]!.fe.servedSerial());
      } finally {
        h.zones.putRecordSet(zone, "A", "ml", { ttl: 300, addresses: [h.clusters[0]!.fe.host] });
      }
    });

    it("azureml-fe keeps serving the old certificate: exit 4 at verify-tls with the protected-settings hint", async () => {
      const fe = h.clusters[0]!.fe;
      const previous = extensionOf(h).configurationSettings.sslSecret!;
      const servedBefore = fe.servedSerial();
      fe.freeze();
      try {
        const run = await h.runCli(["renew", "--config", h.writeConfig({ verify: { timeout: "2s" } }, "short-verify.yaml"), "--force"]);
        expect(run.code, run.stderr).toBe(4);
        expect(result(run).error).toMatchObject({ code: "TLS_OLD_CERT_SERVED", stage: "verify-tls" });
        expect(run.stderr).toMatch(/scoringFe\.sslCert/);
        expect(fe.servedSerial()).toBe(servedBefore);
        expect(h.clusters[0]!.kube.getSecret("azureml", previous)).toBeDefined();
      } finally {
        fe.unfreeze();
        await fe.reload();
      }
    });
  });

  it("when another run holds the cluster's Lease, the target is skipped with exit 0 and nothing is written", async () => {
    const kube = h.clusters[0]!.kube;
    const renewTime = new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
    kube.putObject({
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "amlcert", namespace: "azureml" },
      spec: { holderIdentity: "other-pod/1", leaseDurationSeconds: 3600, acquireTime: renewTime, renewTime },
    });
    const before = kube.requests.length;
    try {
      const run = await h.runCli(["renew", "--config", config, "--force"]);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run)).toMatchObject({ action: "skipped", reason: "LockHeld" });
      expect(kube.requests.slice(before).filter((r) => r.method !== "GET")).toEqual([]);
    } finally {
      kube.deleteObject("coordination.k8s.io/v1", "Lease", "azureml", "amlcert");
    }
  });

  it("a configuration error exits 2 and names the field, touching nothing", async () => {
    const bad = join(h.dir, "bad.yaml");
    writeFileSync(bad, readFileSync(config, "utf8").replace("keyType: ecdsa-p256", "keyType: dsa"));
    const armBefore = h.arm.requests.length;
    const run = await h.runCli(["renew", "--config", bad]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/acme\.keyType/);
    expect(h.arm.requests.length).toBe(armBefore);
  });
});

/**
 * From now on the name servers serve no DNS change until `release()`: changes wait in the zone store (an endless
 * propagation delay), then reach the wire all at once. What the zones hold now is served first.
 */
function holdPropagation(h: Harness): { release(): void } {
  h.zones.lookup(FQDN, "SOA"); // a lookup puts every change made so far on the wire
  h.zones.propagationDelayMs = Infinity;
  return {
    release: () => {
      h.zones.propagationDelayMs = 0;
    },
  };
}

/**
 * Release held changes once the run has written a TXT value at ARM and then asked the name servers for TXT `name`
 * (so that question was surely answered without the value). Polls the stand-ins' request logs, bounded; `done`
 * resolves true once released, false when stopped first.
 */
function releaseAfterAskedFor(h: Harness, held: { release(): void }, name: string): { done: Promise<boolean>; stop(): void } {
  let stopped = false;
  const done = (async () => {
    const deadline = Date.now() + 60_000;
    let mark: number | undefined;
    while (!stopped && Date.now() < deadline) {
      if (mark === undefined && h.arm.requests.some((r) => r.method === "PUT" && r.path.includes("/TXT/"))) mark = h.dns.queries.length;
      if (mark !== undefined && h.dns.queries.slice(mark).some((q) => q.name === name && q.type === "TXT")) {
        held.release();
        return true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  })();
  return { done, stop: () => (stopped = true) };
}

function readTarget(configPath: string): unknown {
  return (parseYaml(readFileSync(configPath, "utf8")) as { targets: unknown[] }).targets[0];
}

describe("CNAME-delegated challenges, two targets, EAB and CA rejection", () => {
  it("follows a CNAME on _acme-challenge into a delegated validation zone, and waits for slow name servers by polling them", async () => {
    const h = await startHarness({ extraZones: ["acme-validation.test"], pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    try {
      const zone = h.zones.zoneFor(FQDN)!;
      h.zones.putRecordSet(zone, "CNAME", "_acme-challenge.ml", { ttl: 300, cname: "ml.acme-validation.test" });
      // Azure DNS's name servers lag behind ARM: here they serve the TXT value only once amlcert has asked for it
      // after writing it and been told nothing. amlcert must poll again, not give up or sleep a fixed time.
      const held = holdPropagation(h);
      const released = releaseAfterAskedFor(h, held, "ml.acme-validation.test");
      const run = await h.runCli(["renew", "--config", h.writeConfig()]).finally(() => released.stop());
      expect(await released.done).toBe(true);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run)).toMatchObject({ action: "renewed", servingOk: true });
      const txtWrites = h.arm.requests.filter((r) => r.method === "PUT" && r.path.includes("/TXT/"));
      expect(txtWrites.length).toBeGreaterThan(0);
      expect(txtWrites.every((r) => r.path.includes("/dnsZones/acme-validation.test/"))).toBe(true);
      expect(txtLeft(h)).toEqual([]);
      const propagation = run.stderr
        .split("\n")
        .filter((l) => l.includes('"stage":"propagation"'))
        .map((l) => JSON.parse(l) as { attempts: number; record: string });
      expect(propagation).toEqual([expect.objectContaining({ record: "ml.acme-validation.test" })]);
      expect(propagation[0]!.attempts).toBeGreaterThan(1);
      // the CA asked our authoritative DNS server for the challenge and got the value through the CNAME
      expect(h.dns.queries.some((q) => q.name === "_acme-challenge.ml.contoso.test" && q.type === "TXT")).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it("with manageRecord, creates the FQDN's A record pointing at azureml-fe, and verification passes", async () => {
    const h = await startHarness({ clusters: [{ name: "aks-ml", fqdn: FQDN, aRecord: false }] });
    try {
      const config = h.writeConfig({ targets: [{ ...(readTarget(h.writeConfig()) as object), manageRecord: true }] }, "managed.yaml");
      const run = await h.runCli(["renew", "--config", config]);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run)).toMatchObject({ action: "renewed", dnsOk: true, servingOk: true });
      const zone = h.zones.zoneFor(FQDN)!;
      expect(h.zones.getRecordSet(zone, "A", "ml")?.addresses).toEqual([h.clusters[0]!.fe.host]);
    } finally {
      await h.stop();
    }
  });

  it("fixed-name mode: the first rollout works; a renewal in place is not picked up by azureml-fe, and amlcert says why (exit 4)", async () => {
    const h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    try {
      const config = h.writeConfig({ renewal: { secretMode: "fixed" }, verify: { timeout: "2s" } }, "fixed.yaml");
      const first = await h.runCli(["renew", "--config", config]);
      expect(first.code, first.stderr).toBe(0);
      expect(result(first)).toMatchObject({ action: "renewed", secret: "aml-tls", extensionUpdated: true, servingOk: true });
      const second = await h.runCli(["renew", "--config", config, "--force"]);
      expect(second.code, second.stderr).toBe(4);
      expect(result(second)).toMatchObject({ secret: "aml-tls", extensionUpdated: false, error: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls" } });
      expect(second.stderr).toMatch(/fixed-name mode/);
      // the new certificate is stored in place; azureml-fe still serves the first one
      expect(new X509Certificate(h.clusters[0]!.kube.getSecret("azureml", "aml-tls")!["cert.pem"]!).serialNumber.toUpperCase()).toBe(result(second).serial);
      expect(h.clusters[0]!.fe.servedSerial()).toBe(result(first).serial);
      // the next scheduled run finds the stored certificate up to date, but still not served: not a quiet exit 0
      const third = await h.runCli(["renew", "--config", config]);
      expect(third.code, third.stderr).toBe(4);
      expect(result(third)).toMatchObject({ reason: "UpToDate", error: { code: "TLS_OLD_CERT_SERVED" } });
    } finally {
      await h.stop();
    }
  });

  it("on SIGTERM while waiting for DNS propagation: removes its TXT value, releases the Lease, exits 143, writes nothing", async () => {
    const h = await startHarness();
    try {
      // the name servers never serve the TXT value, so the run is surely waiting when the signal comes
      holdPropagation(h);
      const config = h.writeConfig({ dns: { propagationTimeout: "5m" } }, "slow.yaml");
      let signalled = false;
      const run = await h.runCli(["renew", "--config", config], {
        onStderr: (chunk, child) => {
          if (!signalled && chunk.includes("TXT value added")) {
            signalled = true;
            child.kill("SIGTERM");
          }
        },
      });
      expect(signalled).toBe(true);
      expect(run.code, run.stderr).toBe(143);
      expect(run.stderr).toMatch(/SIGTERM: removing our TXT values and releasing the Lease/);
      expect(txtLeft(h)).toEqual([]);
      const lease = h.clusters[0]!.kube.store.get(findDef("coordination.k8s.io", "v1", "leases")!, "azureml", "amlcert") as { spec?: { holderIdentity?: string } };
      expect(lease.spec?.holderIdentity ?? "").toBe("");
      expect(h.arm.requests.filter((r) => r.method === "PATCH")).toEqual([]);
      // the ACME account key only (created, or replaced when the manifests created it empty); no certificate stored
      const secretWrites = h.clusters[0]!.kube.requests.filter((r) => (r.method === "POST" || r.method === "PUT") && r.resource === "secrets" && r.status < 300);
      expect(secretWrites).toHaveLength(1);
      expect(secretWrites[0]!.method === "POST" ? secretWrites[0]!.path : secretWrites[0]!.name).toBe(secretWrites[0]!.method === "POST" ? "/api/v1/namespaces/azureml/secrets" : "amlcert-acme-account");
      expect(h.clusters[0]!.kube.getSecret("azureml", "aml-tls-a")?.["cert.pem"]).toBeUndefined();
      expect(h.clusters[0]!.kube.getSecret("azureml", "aml-tls-b")?.["cert.pem"]).toBeUndefined();
    } finally {
      await h.stop();
    }
  });

  it("renews two targets on two clusters (AKS and Arc) in one run", async () => {
    const h = await startHarness({
      clusters: [
        { name: "aks-westeurope", fqdn: "ml.contoso.test" },
        { name: "arc-onprem", clusterType: "connectedClusters", fqdn: "ml2.contoso.test" },
      ],
    });
    try {
      const run = await h.runCli(["renew", "--config", h.writeConfig()]);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run, "ml.contoso.test")).toMatchObject({ action: "renewed", servingOk: true });
      expect(result(run, "ml2.contoso.test")).toMatchObject({ action: "renewed", servingOk: true });
      expect(h.arm.requests.some((r) => r.method === "PATCH" && r.path.includes("Microsoft.Kubernetes/connectedClusters/arc-onprem"))).toBe(true);
      expect(h.clusters[1]!.fe.servedSerial()).toBe(result(run, "ml2.contoso.test").serial);
    } finally {
      await h.stop();
    }
  });

  it("with a CA that requires External Account Binding: fails without EAB (exit 3, acme-account), succeeds with it", async () => {
    const hmac = Buffer.from("amlcert-e2e-eab-hmac-key-0123456789abcdef").toString("base64url");
    const h = await startHarness({ eab: { "kid-1": hmac } });
    try {
      const without = await h.runCli(["renew", "--config", h.writeConfig()]);
      expect(without.code, without.stderr).toBe(3);
      expect(result(without).error).toMatchObject({ stage: "acme-account" });
      const hmacFile = join(h.dir, "eab-hmac");
      writeFileSync(hmacFile, hmac);
      const run = await h.runCli(["renew", "--config", h.writeConfig({ acme: { eab: { keyId: "kid-1", hmacKeyFile: hmacFile } } }, "eab.yaml")]);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run)).toMatchObject({ action: "renewed", servingOk: true });
      expect(run.stderr).not.toContain(hmac);
    } finally {
      await h.stop();
    }
  });

  it("a CA rejection exits 3 at acme-order, writes nothing and leaves no TXT record", async () => {
    const h = await startHarness({ domainBlocklist: [FQDN] });
    try {
      const run = await h.runCli(["renew", "--config", h.writeConfig()]);
      expect(run.code, run.stderr).toBe(3);
      expect(result(run).error).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order" });
      expect(h.arm.requests.filter((r) => r.method === "PATCH")).toEqual([]);
      expect(txtLeft(h)).toEqual([]);
    } finally {
      await h.stop();
    }
  });
});
