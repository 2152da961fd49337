import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { describe as describeCert } from "../../src/certs/certificate.js";
import { AmlcertError } from "../../src/errors.js";
import { ANNOTATION, secretFor, versionedSecretName, type RolloutState } from "../../src/renewal/certificate-version.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import { inspectTarget } from "../../src/renewal/inspect.js";
import { obtainVersion } from "../../src/renewal/obtain.js";
import type { RunRecorder } from "../../src/renewal/recorder.js";
import { days, makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";
import { makeDeps, recordingLogger } from "../support/fakes.js";
import { renewSettings } from "../support/renew-settings.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);
const HOUR = 3_600_000;
const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";
const IP = "20.30.40.50";

let dueCert: TestLeaf;
let freshCert: TestLeaf;
let issued: TestLeaf;
let wrongNameShort: TestLeaf;

beforeAll(async () => {
  const { intermediate } = await makeTestCa("amlcert obtain");
  dueCert = await makeLeaf(intermediate, [FQDN], at(-days(80)), at(days(10)));
  freshCert = await makeLeaf(intermediate, [FQDN], at(-days(10)), at(days(80)));
  issued = await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(90) - HOUR));
  wrongNameShort = await makeLeaf(intermediate, ["www.contoso.test"], at(-HOUR), at(days(5)));
});

const settings = (over: Partial<RenewSettings> = {}): RenewSettings => renewSettings(FQDN, BASE, over);

/** stages run as they are, without the recorder's events */
const run = { stage: <T>(_stage: string, step: () => Promise<T>) => step() } as unknown as RunRecorder;
const info = (leaf: TestLeaf) => describeCert(new X509Certificate(leaf.leafPem));

function world() {
  const log = recordingLogger();
  const w = makeDeps({ now: T0, fqdn: FQDN, zone: "contoso.test", ingressIp: IP, logger: log.logger });
  const fields = (level: number) => log.entries.filter((e) => e.level === level && e.stage !== "acme-order" && e.stage !== "dns").map(({ level: _l, time: _t, pid: _p, hostname: _h, ...rest }) => rest);
  const seed = (name: string, leaf: TestLeaf, rollout: RolloutState) => w.kube.seedSecret(secretFor({ name, base: BASE, fqdn: FQDN, names: [FQDN], chainPem: leaf.chainPem, keyPem: leaf.keyPem, leaf: info(leaf) }, rollout));
  const pointAt = (name: string) => Object.assign(w.extension.state.configurationSettings, { sslSecret: name, "scoringFe.sslSecret": name, sslCname: FQDN });
  return { w, log, fields, seed, pointAt };
}
const content = { base: BASE, fqdn: FQDN, names: [FQDN] };

describe("obtainVersion: the version a renewal rolls out", () => {
  it("when the version in place failed to roll out, the same version is rolled out again, counted, with a warning", async () => {
    const { w, fields, seed, pointAt } = world();
    seed("v-fresh", freshCert, { state: "pending", failures: 1 });
    pointAt("v-fresh");
    w.extension.state.provisioningState = "Failed";
    const inspection = await inspectTarget(w.deps, settings());
    expect(inspection.pendingRollout).toBe(true);

    const v = await obtainVersion(run, w.deps, settings(), inspection);

    const same = { ...content, name: "v-fresh", chainPem: freshCert.chainPem, keyPem: freshCert.keyPem, leaf: info(freshCert) };
    expect(v).toEqual({ ...same, reused: true, previousFailures: 1, write: secretFor(same) });
    expect(w.acme.requests).toHaveLength(0);
    expect(fields(40)).toEqual([
      { fqdn: FQDN, stage: "extension", secret: "v-fresh", failures: 1, provisioningState: "Failed", msg: "the extension's rollout of this certificate failed; rolling it out again" },
    ]);
  });

  it("when a stored version was never rolled out and outlives the one in place, it is reused instead of ordering, with a log line", async () => {
    const { w, fields, seed, pointAt } = world();
    seed("v-due", dueCert, { state: "done", failures: 0 });
    seed("v-stored", issued, { state: "pending", failures: 2 });
    pointAt("v-due");
    const inspection = await inspectTarget(w.deps, settings());

    const v = await obtainVersion(run, w.deps, settings(), inspection);

    const stored = { ...content, name: "v-stored", chainPem: issued.chainPem, keyPem: issued.keyPem, leaf: info(issued) };
    expect(v).toEqual({ ...stored, reused: true, previousFailures: 2, write: secretFor(stored) });
    expect(w.acme.requests).toHaveLength(0);
    expect(fields(30)).toEqual([{ fqdn: FQDN, stage: "store", secret: "v-stored", serial: issued.serialNumber, msg: "reusing a stored certificate that was never rolled out" }]);
  });

  for (const [when, over] of [
    ["in fixed mode", { secretMode: "fixed" }],
    ["when forced", { force: true }],
  ] as const) {
    it(`${when}, no stored version is looked for: a new certificate is ordered`, async () => {
      const { w, seed, pointAt } = world();
      seed(BASE, dueCert, { state: "done", failures: 0 });
      seed("v-stored", issued, { state: "pending", failures: 0 });
      pointAt(BASE);
      w.acme.chainPem = issued.chainPem;
      w.keys.key = issued.keyPem;
      const inspection = await inspectTarget(w.deps, settings(over));
      const v = await obtainVersion(run, w.deps, settings(over), inspection);
      expect(w.kube.selectors).toEqual([]);
      expect(w.acme.requests).toHaveLength(1);
      expect(v.reused).toBe(false);
    });
  }

  it("when a new certificate is ordered, it is validated, stored under its version name and both steps are logged", async () => {
    const { w, fields, seed, pointAt } = world();
    seed("v-due", dueCert, { state: "done", failures: 0 });
    pointAt("v-due");
    w.acme.chainPem = issued.chainPem;
    w.keys.key = issued.keyPem;
    const inspection = await inspectTarget(w.deps, settings());

    const v = await obtainVersion(run, w.deps, settings(), inspection);

    const name = versionedSecretName(BASE, info(issued));
    const stored = w.kube.secrets.get(name)!;
    const written = { ...content, name, chainPem: issued.chainPem, keyPem: issued.keyPem, leaf: info(issued) };
    expect(v).toEqual({ ...written, reused: false, previousFailures: 0, writtenVersion: stored.resourceVersion, write: secretFor(written) });
    expect(stored.annotations[ANNOTATION.rollout]).toBe("pending");
    const leaf = info(issued);
    expect(fields(30).filter((e) => e.stage === "validate" || e.stage === "store")).toEqual([
      { fqdn: FQDN, stage: "validate", serial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString(), issuer: leaf.issuer, msg: "new certificate validated" },
      { fqdn: FQDN, stage: "store", secret: name, serial: leaf.serialNumber, msg: "secret written" },
    ]);
  });

  it("when the issued certificate is both for other names and not newer, it fails with CERT_INVALID listing every problem", async () => {
    const { w, seed, pointAt } = world();
    seed("v-due", dueCert, { state: "done", failures: 0 });
    pointAt("v-due");
    w.acme.chainPem = wrongNameShort.chainPem;
    w.keys.key = wrongNameShort.keyPem;
    const inspection = await inspectTarget(w.deps, settings());

    const err = (await obtainVersion(run, w.deps, settings(), inspection).catch((e: unknown) => e)) as AmlcertError;

    expect(err).toBeInstanceOf(AmlcertError);
    expect({ code: err.code, stage: err.stage, message: err.message }).toEqual({
      code: "CERT_INVALID",
      stage: "validate",
      message: `the issued certificate was not written: cert.pem does not cover ${FQDN}; the new certificate expires ${info(wrongNameShort).notAfter.toISOString()}, not later than the one in place (${info(dueCert).notAfter.toISOString()})`,
    });
    expect(w.kube.writes).toEqual([]);
  });
});
