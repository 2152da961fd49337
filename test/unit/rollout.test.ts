import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { describe as describeCert } from "../../src/certs/certificate.js";
import { AmlcertError } from "../../src/errors.js";
import { ANNOTATION, secretFor } from "../../src/renewal/certificate-version.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import type { Inspection } from "../../src/renewal/inspect.js";
import { confirmRolledOut, redriveFailedExtension, rollOut, type StoredVersion } from "../../src/renewal/rollout.js";
import { days, makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";
import { makeDeps, recordingLogger } from "../support/fakes.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);
const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";
const settings = (over: Partial<RenewSettings> = {}) => ({ fqdn: FQDN, names: [FQDN], secretName: BASE, secretMode: "versioned", keepPrevious: 1, ...over }) as RenewSettings;
const pointed = (name: string) => ({ sslSecret: name, "scoringFe.sslSecret": name, sslCname: FQDN });

let leaf: TestLeaf;
let prevLeaf: TestLeaf;
beforeAll(async () => {
  const { intermediate } = await makeTestCa("amlcert rollout");
  leaf = await makeLeaf(intermediate, [FQDN], at(-days(1)), at(days(89)));
  prevLeaf = await makeLeaf(intermediate, [FQDN], at(-days(80)), at(days(10)));
});

const version = (name: string, over: Partial<StoredVersion> = {}): StoredVersion => ({
  name,
  base: BASE,
  fqdn: FQDN,
  names: [FQDN],
  chainPem: leaf.chainPem,
  keyPem: leaf.keyPem,
  leaf: describeCert(new X509Certificate(leaf.leafPem)),
  reused: false,
  previousFailures: 0,
  write: secretFor({ name, base: BASE, fqdn: FQDN, names: [FQDN], chainPem: leaf.chainPem, keyPem: leaf.keyPem, leaf: describeCert(new X509Certificate(leaf.leafPem)) }),
  ...over,
});

function world() {
  const log = recordingLogger();
  const w = makeDeps({ now: T0, fqdn: FQDN, logger: log.logger });
  const fields = (level: number) => log.entries.filter((e) => e.level === level).map(({ level: _l, time: _t, pid: _p, hostname: _h, err, ...rest }) => ({ ...rest, ...(err ? { err: (err as { message: string }).message } : {}) }));
  return { w, log, fields };
}
const noInspection = { extension: { provisioningState: "Succeeded", configurationSettings: {} } } as unknown as Inspection;
const rolloutAnnotations = (w: ReturnType<typeof world>["w"], name: string) => {
  const a = w.kube.secrets.get(name)!.annotations;
  return { rollout: a[ANNOTATION.rollout], failures: a[ANNOTATION.rolloutFailures] };
};

describe("rollOut: pointing the extension at a stored version", () => {
  it("when the update succeeds, the extension names the version in all three settings, the version is annotated done and it is logged", async () => {
    const { w, fields } = world();
    const v = version("v1", { previousFailures: 2 });
    w.kube.seedSecret(secretFor(v, { state: "pending", failures: 2 }));
    expect(await rollOut(w.deps, settings(), noInspection, v)).toEqual({ secret: "v1", changed: true });
    expect(w.extension.patches).toEqual([pointed("v1")]);
    expect(rolloutAnnotations(w, "v1")).toEqual({ rollout: "done", failures: "2" });
    // the rest of the version's annotations are written as well
    expect(w.kube.writes.at(-1)!.annotations).toEqual({ ...secretFor(v).annotations, [ANNOTATION.rollout]: "done", [ANNOTATION.rolloutFailures]: "2" });
    expect(fields(30)).toEqual([{ fqdn: FQDN, stage: "extension", secret: "v1", changed: true, msg: "extension updated" }]);
  });

  it("when the extension already names the version, the run says there was no change", async () => {
    const { w, fields } = world();
    w.extension.changed = false;
    expect(await rollOut(w.deps, settings(), noInspection, version("v1"))).toEqual({ secret: "v1", changed: false });
    expect(fields(30)).toEqual([{ fqdn: FQDN, stage: "extension", secret: "v1", changed: false, msg: "extension already pointed at this secret (no change)" }]);
  });

  it("when recording the rollout on the secret fails, the rollout still succeeds and a warning names the secret", async () => {
    const { w, fields } = world();
    w.kube.failWrite = new Error("etcd unavailable");
    expect(await rollOut(w.deps, settings(), noInspection, version("v1"))).toEqual({ secret: "v1", changed: true });
    expect(fields(40)).toEqual([{ fqdn: FQDN, stage: "extension", secret: "v1", err: "etcd unavailable", msg: "could not record the rollout state on the secret" }]);
  });

  it("when a versioned rollout fails, the version stays pending with one more failure, a warning says it is tried again, and the error is thrown", async () => {
    for (const [previousFailures, msg] of [
      [0, "the new certificate stays stored, never rolled out; the next run tries to roll it out again"],
      [1, "the new certificate stays stored, never rolled out; the next run tries to roll it out again"],
      [2, "the rollout of this certificate failed 3 times (at most 3); the next run orders a new one"],
      [3, "the rollout of this certificate failed 4 times (at most 3); the next run orders a new one"],
    ] as const) {
      const { w, fields } = world();
      const failure = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the operation failed");
      w.extension.failUpdate = failure;
      const v = version("v1", { previousFailures });
      await expect(rollOut(w.deps, settings(), noInspection, v)).rejects.toBe(failure);
      expect(rolloutAnnotations(w, "v1")).toEqual({ rollout: "pending", failures: String(previousFailures + 1) });
      expect(fields(40)).toEqual([{ fqdn: FQDN, stage: "extension", secret: "v1", failures: previousFailures + 1, code: "EXTENSION_LRO_FAILED", msg }]);
    }
  });

  it("when the run is stopped during the update, the error is thrown and nothing is recorded", async () => {
    const { w, log } = world();
    const ac = new AbortController();
    const stopped = new Error("stopped");
    w.extension.rejectUpdate = () => {
      ac.abort(stopped);
      return stopped;
    };
    await expect(rollOut(w.deps, settings(), noInspection, version("v1"), ac.signal)).rejects.toBe(stopped);
    expect(w.kube.writes).toEqual([]);
    expect(log.messages("warn")).toEqual([]);
  });

  it("when a fixed-mode rollout fails, the previous pair and metadata are put back exactly, over our own write, and a warning says so", async () => {
    const { w, fields } = world();
    const prev = w.kube.seedSecret({ name: BASE, data: { "cert.pem": prevLeaf.chainPem, "key.pem": prevLeaf.keyPem }, labels: { team: "ml" }, annotations: { note: "by hand" } });
    const v = version(BASE);
    const ours = await w.kube.writeSecret(secretFor(v));
    const failure = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the operation failed");
    w.extension.failUpdate = failure;
    const inspection = { ...noInspection, current: prev } as Inspection;
    await expect(rollOut(w.deps, settings({ secretMode: "fixed" }), inspection, { ...v, writtenVersion: ours.resourceVersion })).rejects.toBe(failure);
    const now = w.kube.secrets.get(BASE)!;
    expect(now.data["cert.pem"]!.toString()).toBe(prevLeaf.chainPem);
    expect(now.data["key.pem"]!.toString()).toBe(prevLeaf.keyPem);
    expect(now.labels).toEqual({ team: "ml" });
    expect(now.annotations).toEqual({ note: "by hand" });
    expect(fields(40)).toEqual([{ fqdn: FQDN, stage: "extension", secret: BASE, msg: "extension update failed; previous certificate restored in the secret" }]);
  });

  it("when a fixed-mode rollout fails with no previous certificate, the error is thrown and nothing is restored or annotated", async () => {
    const { w, log } = world();
    const failure = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the operation failed");
    w.extension.failUpdate = failure;
    await expect(rollOut(w.deps, settings({ secretMode: "fixed" }), noInspection, version(BASE))).rejects.toBe(failure);
    expect(w.kube.writes).toEqual([]);
    expect(log.messages("warn")).toEqual([]);
  });

  it("when the fixed secret changed since our write, the previous pair is not put back and the error says what the secret holds", async () => {
    const { w } = world();
    const prev = w.kube.seedSecret({ name: BASE, data: { "cert.pem": prevLeaf.chainPem, "key.pem": prevLeaf.keyPem } });
    const v = version(BASE);
    w.extension.failUpdate = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the operation failed", { details: { operation: "op1" } });
    const inspection = { ...noInspection, current: prev } as Inspection;
    const err = (await rollOut(w.deps, settings({ secretMode: "fixed" }), inspection, { ...v, writtenVersion: "999" }).catch((e: unknown) => e)) as AmlcertError;
    expect(err).toBeInstanceOf(AmlcertError);
    expect({ code: err.code, stage: err.stage, message: err.message, details: err.details }).toEqual({
      code: "EXTENSION_LRO_FAILED",
      stage: "extension",
      message: `the operation failed. The previous certificate could not be put back in secret ${BASE} (secret "${BASE}" changed since amlcert read it): the secret now holds the new certificate ${v.leaf.serialNumber}, which azureml-fe serves once it reloads`,
      details: { operation: "op1" },
    });
    expect(err.cause).toBe(w.extension.failUpdate);
  });
});

describe("redriveFailedExtension: an extension whose last operation did not succeed is updated again", () => {
  for (const state of ["Failed", "canceled", "CANCELED"]) {
    it(`when its provisioningState is ${state}, it is pointed at the certificate in place again, with a warning`, async () => {
      const { w, fields } = world();
      w.extension.state.provisioningState = state;
      const inspection = { extension: { provisioningState: state }, currentSecretName: "v1" } as unknown as Inspection;
      expect(await redriveFailedExtension(w.deps, settings(), inspection)).toEqual({ secret: "v1", changed: true });
      expect(w.extension.patches).toEqual([pointed("v1")]);
      expect(fields(40)).toEqual([{ stage: "extension", fqdn: FQDN, provisioningState: state, msg: "the extension's last operation did not succeed; updating it again" }]);
    });
  }

  for (const state of ["Succeeded", "NotFailed", "FailedOver", undefined]) {
    it(`when its provisioningState is ${state}, nothing is updated`, async () => {
      const { w, log } = world();
      const inspection = { extension: { provisioningState: state }, currentSecretName: "v1" } as unknown as Inspection;
      expect(await redriveFailedExtension(w.deps, settings(), inspection)).toBeUndefined();
      expect(w.extension.patches).toEqual([]);
      expect(log.entries).toEqual([]);
    });
  }
});

describe("confirmRolledOut: the version in place, proven served, is marked rolled out", () => {
  it("when it is still annotated pending, it is marked done keeping its failure count", async () => {
    const { w } = world();
    const held = w.kube.seedSecret(secretFor(version("v1"), { state: "pending", failures: 2 }));
    await confirmRolledOut(w.deps, settings(), { current: held } as Inspection);
    expect(rolloutAnnotations(w, "v1")).toEqual({ rollout: "done", failures: "2" });
  });

  it("when it is already done, or nothing is in place, nothing is written", async () => {
    const { w } = world();
    const held = w.kube.seedSecret(secretFor(version("v1"), { state: "done", failures: 0 }));
    await confirmRolledOut(w.deps, settings(), { current: held } as Inspection);
    await confirmRolledOut(w.deps, settings(), {} as Inspection);
    expect(w.kube.writes).toEqual([]);
  });

  it("when marking it fails, a warning names the target and the secret", async () => {
    const { w, fields } = world();
    const held = w.kube.seedSecret(secretFor(version("v1"), { state: "pending", failures: 0 }));
    w.kube.failWrite = new Error("etcd unavailable");
    await confirmRolledOut(w.deps, settings(), { current: held } as Inspection);
    expect(fields(40)).toEqual([{ fqdn: FQDN, stage: "extension", secret: "v1", err: "etcd unavailable", msg: "could not record the rollout state on the secret" }]);
  });
});
