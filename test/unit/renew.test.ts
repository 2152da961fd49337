import { createHash, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { AmlcertError, ExitCode } from "../../src/errors.js";
import { describe as describeCert } from "../../src/certs/certificate.js";
import { renewTarget } from "../../src/renewal/renew.js";
import { inspectTarget } from "../../src/renewal/inspect.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import type { RenewalEvent } from "../../src/renewal/events.js";
import {
  ANNOTATION,
  LABEL_FQDN_HASH,
  LABEL_MANAGED_BY,
  LABEL_SECRET_BASE,
  MAX_ROLLOUT_FAILURES,
  secretFor as versionSecret,
  versionedSecretName,
  type RolloutState,
} from "../../src/renewal/certificate-version.js";
import { days, encryptKey, makeLeaf, makeTestCa, type TestIssuer, type TestLeaf } from "../support/certs.js";
import { makeDeps, recordingLogger, type FakeWorld, type MakeDepsOptions } from "../support/fakes.js";
import { failedRun } from "../support/assertions.js";
import { renewSettings } from "../support/renew-settings.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);
const HOUR = 3_600_000;
/** the secret a version is stored in (the old positional shape, kept for the tests' readability) */
const secretFor = (name: string, base: string, fqdn: string, names: string[], chainPem: string, keyPem: string, leaf: ReturnType<typeof describeCert>, rollout?: RolloutState) =>
  versionSecret({ name, base, fqdn, names, chainPem, keyPem, leaf }, rollout);
const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";
const INGRESS_IP = "20.30.40.50";
const CHALLENGE = `_acme-challenge.${FQDN}`;

let root: TestIssuer;
let intermediate: TestIssuer;
/** in place, due for renewal (2/3 of its lifetime has passed) */
let dueCert: TestLeaf;
/** in place, not yet due */
let freshCert: TestLeaf;
/** what the CA issues */
let issued: TestLeaf;
/** issued for the same name, with another key */
let otherKeyCert: TestLeaf;
/** issued, but expiring before `freshCert` */
let shorterCert: TestLeaf;
/** issued for another name */
let wrongName: TestLeaf;
/** old versions, both expiring before `dueCert` */
let oldest: TestLeaf;
let older: TestLeaf;

beforeAll(async () => {
  ({ root, intermediate } = await makeTestCa("amlcert renew"));
  dueCert = await makeLeaf(intermediate, [FQDN], at(-days(80)), at(days(10)));
  freshCert = await makeLeaf(intermediate, [FQDN], at(-days(10)), at(days(80)));
  issued = await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(90) - HOUR));
  otherKeyCert = await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(90) - HOUR));
  shorterCert = await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(70)));
  wrongName = await makeLeaf(intermediate, ["www.contoso.test"], at(-HOUR), at(days(90)));
  oldest = await makeLeaf(intermediate, [FQDN], at(-days(140)), at(-days(50)));
  older = await makeLeaf(intermediate, [FQDN], at(-days(110)), at(-days(20)));
});

const settings = (overrides: Partial<RenewSettings> = {}): RenewSettings => renewSettings(FQDN, BASE, overrides);

function world(opts: MakeDepsOptions = {}): FakeWorld {
  return makeDeps({ now: T0, fqdn: FQDN, zone: "contoso.test", ingressIp: INGRESS_IP, ...opts });
}

/** The CA will issue `leaf`, and the fresh key amlcert generates is `keyPem` (the leaf's own key by default). */
function caIssues(w: FakeWorld, leaf: TestLeaf, chainPem = leaf.chainPem, keyPem = leaf.keyPem): void {
  w.acme.chainPem = chainPem;
  w.keys.key = keyPem;
}

/** A secret written by amlcert earlier (labels and annotations as amlcert writes them). */
function seedManaged(w: FakeWorld, name: string, leaf: TestLeaf, base = BASE): void {
  const info = describeCert(new X509Certificate(leaf.leafPem));
  w.kube.seedSecret(secretFor(name, base, FQDN, [FQDN], leaf.chainPem, leaf.keyPem, info));
}

/** A secret created by hand (no amlcert labels). */
function seedUnmanaged(w: FakeWorld, name: string, leaf: TestLeaf): void {
  w.kube.seedSecret({ name, data: { "cert.pem": leaf.chainPem, "key.pem": leaf.keyPem } });
}

/** The extension points at `name` (as after an earlier rollout, which amlcert recorded on the version). */
function pointExtensionAt(w: FakeWorld, name: string): void {
  Object.assign(w.extension.state.configurationSettings, { sslSecret: name, "scoringFe.sslSecret": name, sslCname: FQDN });
  const held = w.kube.secrets.get(name);
  if (held?.annotations[ANNOTATION.rollout] === "pending") held.annotations[ANNOTATION.rollout] = "done";
}

/** Nothing outside our own TXT values was written: no secret write or delete, no extension PATCH, no A upsert. */
function expectZeroWrites(w: FakeWorld): void {
  expect(w.kube.writes).toEqual([]);
  expect(w.kube.deletes).toEqual([]);
  expect(w.extension.patches).toEqual([]);
  expect(w.zone.aUpserts).toEqual([]);
}

/** Every TXT value presented was removed again. */
function expectTxtCleanedUp(w: FakeWorld): void {
  for (const z of [w.zone, ...w.challengeZones]) expect([...z.txt.keys()]).toEqual([]);
}


const secretContent = (w: FakeWorld, name: string) => w.kube.pemOf(name);

describe("renewTarget: when the certificate in place is up to date", () => {
  it("does nothing: action none, no ACME order, zero writes, one TLS probe, and servingOk when azureml-fe serves it", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "none", reason: "UpToDate", serial: freshCert.serialNumber, secret: "azureml-tls-current", extensionUpdated: false, dnsOk: true, servingOk: true });
    expect(r.notAfter).toBe(at(days(80)).toISOString());
    expect(w.acme.requests).toEqual([]);
    expect(w.keys.calls).toBe(0);
    expectZeroWrites(w);
    expect(w.zone.txtAdds).toEqual([]);
    expect(w.kube.events).toEqual([]);
    expect(w.tlsProbe.calls).toEqual([{ host: INGRESS_IP, port: 443, servername: FQDN }]);
  });

  it("when azureml-fe serves another certificate than the one in place, exits 4 at verify-tls (a rollout that did not take is not success), writing nothing", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    w.tlsProbe.serials = [dueCert.serialNumber];

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", exitCode: ExitCode.VerificationFailed });
    expect(err.message).toContain("scoringFe.sslCert");
    expectZeroWrites(w);
    expect(w.acme.requests).toEqual([]);
  });

  it("when the served certificate does not validate, exits 4 at verify-tls", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    w.tlsProbe.authorized = false;

    expect(await failedRun(renewTarget(w.deps, settings()))).toMatchObject({ code: "TLS_OLD_CERT_SERVED", exitCode: 4 });
    expectZeroWrites(w);
  });

  it("when azureml-fe cannot be reached at all, exits 4 with TLS_PROBE_FAILED naming the address", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    w.tlsProbe.failure = new Error("connect ETIMEDOUT");

    const err = await failedRun(renewTarget(w.deps, settings()));
    expect(err).toMatchObject({ code: "TLS_PROBE_FAILED", stage: "verify-tls", exitCode: 4 });
    expect(err.message).toContain(`${INGRESS_IP}:443`);
    expectZeroWrites(w);
  });

  it("when the extension's last operation failed and it already names the secret in place, ARM changes nothing: exit 3 EXTENSION_LRO_FAILED with the extension's health, no success claimed", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    w.extension.state.provisioningState = "Failed";
    w.extension.state.health = ["E40007 INVALID_SSL_SETTING: the private key does not match"];

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "failed", servingOk: false, error: { code: "EXTENSION_LRO_FAILED", stage: "extension", exitCode: 3 } });
    expect(r.error?.message).toContain("E40007 INVALID_SSL_SETTING: the private key does not match");
    expect(w.extension.patches).toEqual([{ sslSecret: "azureml-tls-current", "scoringFe.sslSecret": "azureml-tls-current", sslCname: FQDN }]);
    // the certificate was rolled out before (annotated done): nothing about it is rewritten
    expect(w.kube.writes).toEqual([]);
    expect(secretContent(w, "azureml-tls-current")?.cert).toBe(freshCert.chainPem);
    expect(w.acme.requests).toEqual([]);
  });
});

describe("renewTarget: first issuance (the extension names no sslSecret)", () => {
  it("stores the chain and key in a versioned, labelled secret, points the extension at it, verifies and reports renewed", async () => {
    const w = world();
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings());

    const expectedName = `${BASE}-20260501-${issued.serialNumber.toLowerCase().slice(-8)}`;
    expect(r).toMatchObject({ action: "renewed", reason: "SecretMissing", serial: issued.serialNumber, secret: expectedName, extensionUpdated: true, dnsOk: true, servingOk: true });
    expect(r.notAfter).toBe(at(days(90) - HOUR).toISOString());

    // the ACME order: the configured names, the freshly generated key, one TXT value presented and removed again
    expect(w.acme.requests).toEqual([{ names: [FQDN], keyPem: issued.keyPem }]);
    expect(w.zone.txtAdds.map((a) => a.fqdn)).toEqual([CHALLENGE]);
    expect(w.zone.txtRemoves).toEqual(w.zone.txtAdds.map(({ fqdn, value }) => ({ fqdn, value })));
    expectTxtCleanedUp(w);

    // the secret: stored as pending, then marked rolled out once the extension update succeeded (same data)
    expect(w.kube.writes.map((x) => [x.name, x.annotations["amlcert.io/rollout"]])).toEqual([
      [expectedName, "pending"],
      [expectedName, "done"],
    ]);
    expect(w.kube.writes[1]!.data).toEqual(w.kube.writes[0]!.data);
    const written = w.kube.writes[0]!;
    expect(written.name).toBe(expectedName);
    expect(Object.keys(written.data).sort()).toEqual(["cert.pem", "key.pem"]);
    expect(written.data["cert.pem"]!.toString()).toBe(issued.chainPem);
    expect(written.data["key.pem"]!.toString()).toBe(issued.keyPem);
    expect(w.kube.secrets.get(expectedName)?.type).toBe("Opaque");
    const x509 = new X509Certificate(issued.leafPem);
    expect(written.labels).toEqual({
      [LABEL_MANAGED_BY]: "amlcert",
      [LABEL_SECRET_BASE]: BASE,
      [LABEL_FQDN_HASH]: createHash("sha256").update(FQDN).digest("hex").slice(0, 16),
    });
    expect(written.annotations).toEqual({
      [ANNOTATION.fqdn]: FQDN,
      [ANNOTATION.names]: FQDN,
      [ANNOTATION.serial]: issued.serialNumber,
      [ANNOTATION.notBefore]: at(-HOUR).toISOString(),
      [ANNOTATION.notAfter]: at(days(90) - HOUR).toISOString(),
      [ANNOTATION.fingerprint]: x509.fingerprint256,
      [ANNOTATION.issuer]: "CN=amlcert renew intermediate",
      [ANNOTATION.rollout]: "pending",
      [ANNOTATION.rolloutFailures]: "0",
    });

    // the extension PATCH carries exactly the three settings
    expect(w.extension.patches).toEqual([{ sslSecret: expectedName, "scoringFe.sslSecret": expectedName, sslCname: FQDN }]);

    // verification and the event
    expect(w.tlsProbe.calls.length).toBeGreaterThanOrEqual(1);
    expect(w.kube.events).toEqual([expect.objectContaining({ secretName: expectedName, type: "Normal", reason: "Renewed" })]);
    expect(w.kube.deletes).toEqual([]);
    expect(w.zone.aUpserts).toEqual([]);
  });

  it("with extra names, the order challenges every name (SANs included) through the zone, and removes every value again", async () => {
    const names = [FQDN, "www.contoso.test", "api.contoso.test"];
    const w = world();
    caIssues(w, await makeLeaf(intermediate, names, at(-HOUR), at(days(90) - HOUR)));

    const r = await renewTarget(w.deps, settings({ names }));

    expect(r).toMatchObject({ action: "renewed", servingOk: true });
    expect(w.zone.txtAdds.map((a) => a.fqdn).sort()).toEqual(names.map((n) => `_acme-challenge.${n}`).sort());
    expect(w.zone.txtRemoves).toHaveLength(3);
    expectTxtCleanedUp(w);
  });

  it("never logs the private key", async () => {
    const rec = recordingLogger();
    const w = world({ logger: rec.logger });
    caIssues(w, issued);

    await renewTarget(w.deps, settings());

    expect(rec.entries.length).toBeGreaterThan(0);
    const logged = JSON.stringify(rec.entries);
    expect(logged).not.toContain("PRIVATE KEY");
    expect(logged).not.toContain(issued.keyPem.split("\n")[1]!);
  });

  it("with expectedAddress and a probe host, checks DNS against the former and probes the latter", async () => {
    const w = world();
    w.zone.seedA(FQDN, ["10.1.2.3"]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings({ expectedAddress: "10.1.2.3", probe: { host: "10.9.9.9", port: 8443 } }));

    expect(r).toMatchObject({ action: "renewed", dnsOk: true });
    expect(w.tlsProbe.calls).toEqual([{ host: "10.9.9.9", port: 8443, servername: FQDN }]);
  });

  it("when azureml-fe has no address and none is configured, the rollout happens but verification fails (exit 4)", async () => {
    const w = world();
    w.kube.services.set("azureml-fe", { type: "ClusterIP", ips: [], hostnames: [], clusterIP: "10.0.0.10" });
    caIssues(w, issued);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "DNS_MISMATCH", stage: "verify-dns", exitCode: 4 });
    expect(err.message).toContain("expectedAddress");
    expect(w.extension.patches).toHaveLength(1);
    expect(w.tlsProbe.calls).toEqual([]);
    expect(w.kube.deletes).toEqual([]);
  });

  it("names the versioned secret <base>-<yyyymmdd of notBefore>-<last 8 hex of the serial>", () => {
    const leaf = describeCert(new X509Certificate(issued.leafPem));
    expect(versionedSecretName("my-tls", { ...leaf, notBefore: new Date("2027-01-09T23:59:59Z"), serialNumber: "0A1B2C3D4E5F60718293" })).toBe("my-tls-20270109-60718293");
  });

  it("in fixed mode, writes the configured name itself", async () => {
    const w = world();
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings({ secretMode: "fixed" }));

    expect(r).toMatchObject({ action: "renewed", reason: "SecretMissing", secret: BASE });
    expect(w.kube.writes.map((x) => x.name)).toEqual([BASE, BASE]);
    expect(w.extension.patches).toEqual([{ sslSecret: BASE, "scoringFe.sslSecret": BASE, sslCname: FQDN }]);
  });
});

describe("renewTarget: the issued certificate is validated before anything is written", () => {
  const cases: { when: string; arrange: (w: FakeWorld) => void; mentions: RegExp }[] = [
    { when: "the chain's key does not match the generated key", arrange: (w) => caIssues(w, issued, issued.chainPem, otherKeyCert.keyPem), mentions: /does not match/ },
    { when: "the chain is in the wrong order", arrange: (w) => caIssues(w, issued, intermediate.pem + issued.leafPem), mentions: /the certificates are out of order: the leaf \(CN=ml\.contoso\.test\) is certificate #2 and must come first/ },
    { when: "the chain lacks its intermediate", arrange: (w) => caIssues(w, issued, issued.leafPem), mentions: /only the leaf/ },
    { when: "the chain is garbage", arrange: (w) => caIssues(w, issued, "<html>502 Bad Gateway</html>"), mentions: /no PEM CERTIFICATE block/ },
    { when: "the chain's leaf is for another name", arrange: (w) => caIssues(w, wrongName), mentions: /does not cover ml\.contoso\.test/ },
    { when: "the CA returns its root instead of the leaf", arrange: (w) => caIssues(w, issued, root.pem, issued.keyPem), mentions: /does not match/ },
  ];

  for (const c of cases) {
    it(`when ${c.when}, fails with CERT_INVALID at stage validate (exit 3) and writes nothing`, async () => {
      const w = world();
      seedManaged(w, "azureml-tls-current", dueCert);
      pointExtensionAt(w, "azureml-tls-current");
      const before = secretContent(w, "azureml-tls-current");
      c.arrange(w);

      const err = await failedRun(renewTarget(w.deps, settings()));

      expect(err).toMatchObject({ code: "CERT_INVALID", stage: "validate", exitCode: ExitCode.RenewalFailed });
      expect(err.message).toMatch(c.mentions);
      expect(w.acme.requests).toHaveLength(1);
      expectZeroWrites(w);
      expectTxtCleanedUp(w);
      expect(secretContent(w, "azureml-tls-current")).toEqual(before);
      expect(w.extension.settings.sslSecret).toBe("azureml-tls-current");
    });
  }

  // The ACME issuer refuses an unreadable key before ordering (as acme-issuer.ts does), so this case needs a source
  // that hands over a passphrase-protected key as it is (a Key Vault or TLS-secret source could).
  it("when the source hands over a passphrase-protected key, fails with CERT_INVALID at stage validate (exit 3) and writes nothing", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    const before = secretContent(w, "azureml-tls-current");
    w.deps.source = { kind: "test", obtain: async () => ({ chainPem: issued.chainPem, keyPem: encryptKey(issued.keyPem) }) };

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "CERT_INVALID", stage: "validate", exitCode: ExitCode.RenewalFailed });
    expect(err.message).toMatch(/passphrase-protected/);
    expectZeroWrites(w);
    expect(secretContent(w, "azureml-tls-current")).toEqual(before);
  });

  it("when the new certificate does not expire later than the one in place, fails with CERT_NOT_NEWER at validate and writes nothing", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, shorterCert);

    const err = await failedRun(renewTarget(w.deps, settings({ force: true })));

    expect(err).toMatchObject({ code: "CERT_NOT_NEWER", stage: "validate", exitCode: 3 });
    expect(err.message).toContain("not later than the one in place");
    expectZeroWrites(w);
  });

  it("when the CA fails, the error keeps its code and stage, and nothing is written", async () => {
    const w = world();
    caIssues(w, issued);
    caIssues(w, issued);
    w.acme.failure = new AmlcertError("ACME_REJECTED", "acme-order", "the CA rejected the order: rateLimited");

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", exitCode: 3 });
    expectZeroWrites(w);
    expectTxtCleanedUp(w);
  });
});

describe("renewTarget: preflight", () => {
  it("when the extension is not Microsoft.AzureML.Kubernetes, fails at preflight naming its type (exit 3), before any order or write", async () => {
    const w = world({ extension: { extensionType: "Microsoft.Flux" } });
    caIssues(w, issued);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "EXTENSION_WRONG_TYPE", stage: "preflight", exitCode: 3 });
    expect(err.message).toContain("Microsoft.Flux");
    expect(w.acme.requests).toEqual([]);
    expectZeroWrites(w);
    expect(w.zone.txtAdds).toEqual([]);
  });

  it("when the extension has allowInsecureConnections=True, fails at preflight naming the setting (exit 3), before any order or write", async () => {
    const w = world({ extension: { configurationSettings: { allowInsecureConnections: "True" } } });
    caIssues(w, issued);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "EXTENSION_INSECURE", stage: "preflight", exitCode: 3 });
    expect(err.message).toContain("allowInsecureConnections");
    expect(w.acme.requests).toEqual([]);
    expectZeroWrites(w);
  });

  for (const [what, extension] of [
    ["allowInsecureConnections=True", { configurationSettings: { allowInsecureConnections: "True" } }],
    ["another extension type", { extensionType: "Microsoft.Flux" }],
  ] as const) {
    it(`when it refuses (${what}), the refusal is decided before the Lease and reaches no subscriber: no Event, no history, the outcome still exit 3`, async () => {
      const w = world({ extension });
      let lockTaken = 0;
      w.deps.lock = { acquire: async () => (lockTaken++, new AbortController().signal), release: async () => undefined };
      const seen: RenewalEvent[] = [];
      w.deps.events = [...(w.deps.events ?? []), (e) => void seen.push(e)];

      const r = await renewTarget(w.deps, settings());

      expect(r).toMatchObject({ action: "failed", error: { stage: "preflight", exitCode: 3 } });
      expect(lockTaken).toBe(0);
      expect(seen).toEqual([]);
      expect(w.kube.events).toEqual([]);
      expectZeroWrites(w);
    });
  }

  it("when the preflight fails for another reason (ARM unreachable), the failure reaches the subscribers as ever", async () => {
    const w = world();
    w.extension.failGet = new AmlcertError("AZURE_ERROR", "preflight", "ARM did not answer");
    const seen: string[] = [];
    w.deps.events = [...(w.deps.events ?? []), (e) => void seen.push(e.type)];
    const r = await renewTarget(w.deps, settings());
    expect(r).toMatchObject({ action: "failed", error: { code: "AZURE_ERROR" } });
    expect(seen).toEqual(["run-started", "stage-started", "stage-finished", "run-finished"]);
    expect(w.kube.events.map((e) => e.reason)).toEqual(["RenewalFailed"]);
  });

  it("when the protected setting scoringFe.sslCert is present, inspection warns that it takes precedence (and writes nothing)", async () => {
    const w = world({ extension: { protectedSettingKeys: ["scoringFe.sslCert", "scoringFe.sslKey", "unrelated"] } });
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");

    const inspection = await inspectTarget(w.deps, settings());

    expect(inspection.warnings).toEqual([expect.stringContaining("scoringFe.sslCert, scoringFe.sslKey")]);
    expect(inspection.warnings[0]).not.toContain("unrelated");
    expect(inspection.decision).toMatchObject({ renew: false, reason: "UpToDate" });
    expectZeroWrites(w);
  });

  it("when sslSecret names a secret that does not exist, the reason is SecretMissing and the message names the secret", async () => {
    const w = world();
    pointExtensionAt(w, "azureml-tls-gone");

    const inspection = await inspectTarget(w.deps, settings());

    expect(inspection.currentSecretName).toBe("azureml-tls-gone");
    expect(inspection.decision).toMatchObject({ renew: true, reason: "SecretMissing" });
    expect(inspection.decision.message).toContain("azureml-tls-gone");
  });

  it("when azureml-fe is missing, inspection warns and expects no address", async () => {
    const w = world();
    w.kube.services.clear();

    const inspection = await inspectTarget(w.deps, settings());

    expect(inspection.expected).toEqual([]);
    expect(inspection.warnings).toEqual([expect.stringContaining("azureml-fe was not found")]);
  });
});

describe("renewTarget: the extension update fails", () => {
  // ARM stores the PATCHed settings before the operation runs and keeps them when it fails (provisioningState
  // Failed): the extension then names the new version although azureml-fe was not rolled to it.
  it("in versioned mode: exit 3, the extension is pointed back at the version served (Succeeded), azureml-fe keeps serving it, nothing is pruned", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    seedManaged(w, "azureml-tls-older", older);
    pointExtensionAt(w, "azureml-tls-current");
    const before = secretContent(w, "azureml-tls-current");
    caIssues(w, issued);
    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    // the extension's health check rejects the new certificate (E40007), not the one served
    const rejected = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the extension update operation ended Failed");
    w.extension.failUpdate = (settings) => (settings.sslSecret === newName ? rejected : undefined);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension", exitCode: ExitCode.RenewalFailed });
    // stored, then its failed rollout counted (so that a certificate the extension keeps rejecting is not retried forever)
    expect(w.kube.writes.map((x) => [x.name, x.annotations["amlcert.io/rollout"], x.annotations["amlcert.io/rollout-failures"]])).toEqual([
      [newName, "pending", "0"],
      [newName, "pending", "1"],
    ]);
    expect(secretContent(w, newName)?.cert).toBe(issued.chainPem);
    expect(secretContent(w, "azureml-tls-current")).toEqual(before);
    expect(w.kube.secrets.has("azureml-tls-older")).toBe(true);
    expect(w.kube.deletes).toEqual([]);
    expect(w.extension.patches.map((p) => p.sslSecret)).toEqual([newName, "azureml-tls-current"]);
    expect(w.extension.state).toMatchObject({ provisioningState: "Succeeded", configurationSettings: { sslSecret: "azureml-tls-current", "scoringFe.sslSecret": "azureml-tls-current" } });
    expect((await w.deps.tlsProbe.probe({ host: INGRESS_IP, port: 443, servername: FQDN })).serialNumber).toBe(dueCert.serialNumber);
  });

  it("in versioned mode, when ARM refuses the PATCH itself, the extension is untouched and the new version stays for the next run", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    w.extension.rejectUpdate = new AmlcertError("AZURE_THROTTLED", "extension", "ARM kept answering 429");

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "AZURE_THROTTLED", stage: "extension", exitCode: 3 });
    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    expect(w.kube.secrets.get(newName)?.annotations).toMatchObject({ [ANNOTATION.rollout]: "pending", [ANNOTATION.rolloutFailures]: "1" });
    expect(w.extension.state).toMatchObject({ provisioningState: "Succeeded", configurationSettings: { sslSecret: "azureml-tls-current" } });
  });

  it("in versioned mode, a plain error from the adapter is attributed to the extension stage (exit 3)", async () => {
    const w = world();
    caIssues(w, issued);
    w.extension.rejectUpdate = new Error("socket hang up");

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ stage: "extension", exitCode: 3 });
    expect(err.message).toContain("socket hang up");
  });

  it("in fixed mode, when someone else changed the secret while amlcert was issuing, it is not overwritten (KUBE_CONFLICT, exit 3)", async () => {
    const w = world();
    seedUnmanaged(w, BASE, dueCert);
    pointExtensionAt(w, BASE);
    caIssues(w, issued);
    // another writer replaces the secret between the plan and the store (while the CA is issuing)
    w.acme.chainPem = () => {
      w.kube.seedSecret({ name: BASE, data: { "cert.pem": older.chainPem, "key.pem": older.keyPem } });
      return issued.chainPem;
    };

    const err = await failedRun(renewTarget(w.deps, settings({ secretMode: "fixed" })));

    expect(err).toMatchObject({ code: "KUBE_CONFLICT", stage: "store", exitCode: 3 });
    expect(secretContent(w, BASE)).toEqual({ cert: older.chainPem, key: older.keyPem });
    expect(w.extension.patches).toEqual([]);
  });

  // In fixed mode the PATCH carries the settings the extension already has: ARM runs an operation for them only when
  // the last one did not succeed (otherwise it answers 200 and nothing can fail). Hence the Failed state below.
  it("in fixed mode, when the previous certificate cannot be put back, the error says the secret now holds the new one", async () => {
    const w = world({ extension: { provisioningState: "Failed" } });
    seedUnmanaged(w, BASE, dueCert);
    pointExtensionAt(w, BASE);
    caIssues(w, issued);
    w.extension.failUpdate = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "Failed: E40007 INVALID_SSL_SETTING");
    w.kube.failWrite = (x) => (x.data["cert.pem"]!.toString() === dueCert.chainPem ? new Error("connection reset") : undefined);

    const err = await failedRun(renewTarget(w.deps, settings({ secretMode: "fixed" })));

    expect(err).toMatchObject({ code: "EXTENSION_LRO_FAILED", stage: "extension", exitCode: 3 });
    expect(err.message).toMatch(/could not be put back in secret azureml-tls .*now holds the new certificate/);
  });

  it("in fixed mode: exit 3 and the previous certificate is written back into the secret", async () => {
    const w = world();
    seedUnmanaged(w, BASE, dueCert);
    pointExtensionAt(w, BASE);
    const before = w.kube.secrets.get(BASE)!;
    caIssues(w, issued);
    w.extension.changed = true;
    // the operation was still running when the adapter stopped waiting
    w.extension.failUpdate = new AmlcertError("EXTENSION_TIMEOUT", "extension", "the extension update did not finish in 30m");
    w.extension.failedState = "Updating";

    const err = await failedRun(renewTarget(w.deps, settings({ secretMode: "fixed" })));

    expect(err).toMatchObject({ code: "EXTENSION_TIMEOUT", stage: "extension", exitCode: 3 });
    expect(w.kube.writes.map((x) => x.name)).toEqual([BASE, BASE]);
    expect(w.kube.writes[0]!.data["cert.pem"]!.toString()).toBe(issued.chainPem);
    const restored = w.kube.writes[1]!;
    expect(restored.data["cert.pem"]!.toString()).toBe(dueCert.chainPem);
    expect(restored.data["key.pem"]!.toString()).toBe(dueCert.keyPem);
    expect(restored.labels).toEqual(before.labels);
    expect(restored.annotations).toEqual(before.annotations);
    expect(secretContent(w, BASE)).toEqual({ cert: dueCert.chainPem, key: dueCert.keyPem });
    expect(w.kube.deletes).toEqual([]);
    expect(w.extension.state.provisioningState).toBe("Updating");
  });

});

describe("renewTarget: a stored certificate that was never rolled out", () => {
  it("is reused instead of ordering a new one: no ACME order, no secret write, the extension points at it", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    seedManaged(w, "azureml-tls-stranded", issued);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", secret: "azureml-tls-stranded", serial: issued.serialNumber, servingOk: true });
    expect(w.acme.requests).toEqual([]);
    expect(w.keys.calls).toBe(0);
    // no new certificate is written: only the stored one's rollout state changes
    expect(w.kube.writes.map((x) => [x.name, x.annotations["amlcert.io/rollout"]])).toEqual([["azureml-tls-stranded", "done"]]);
    expect(secretContent(w, "azureml-tls-stranded")?.cert).toBe(issued.chainPem);
    expect(w.extension.patches).toEqual([{ sslSecret: "azureml-tls-stranded", "scoringFe.sslSecret": "azureml-tls-stranded", sslCname: FQDN }]);
  });

  // Rewritten for ARM's behaviour: the failed update left the extension naming the new version (provisioningState
  // Failed), so the next run finds that version in place and updates the extension again for it; it does not take
  // the reuse path (that is for a PATCH ARM refused, below).
  it("after a failed extension operation (ARM kept the new sslSecret, Failed), the next run updates the extension again for the stored certificate, without a second order", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    w.extension.failUpdate = (settings) => (settings.sslSecret === newName ? new AmlcertError("EXTENSION_LRO_FAILED", "extension", "Failed") : undefined);
    await failedRun(renewTarget(w.deps, settings()));
    w.extension.failUpdate = undefined;

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ secret: newName, serial: issued.serialNumber, extensionUpdated: true, servingOk: true });
    expect(r.error).toBeUndefined();
    expect(w.acme.requests).toHaveLength(1);
    const pointAtNew = { sslSecret: newName, "scoringFe.sslSecret": newName, sslCname: FQDN };
    // the failed rollout, the extension pointed back at the certificate served, then the stored one rolled out
    expect(w.extension.patches).toEqual([pointAtNew, { sslSecret: "azureml-tls-current", "scoringFe.sslSecret": "azureml-tls-current", sslCname: FQDN }, pointAtNew]);
    expect(w.extension.state.provisioningState).toBe("Succeeded");
    // one certificate stored once; then its failed and its successful rollout recorded
    expect(w.kube.writes.map((x) => [x.annotations["amlcert.io/rollout"], x.annotations["amlcert.io/rollout-failures"]])).toEqual([
      ["pending", "0"],
      ["pending", "1"],
      ["done", "1"],
    ]);
  });

  it("after ARM refused the PATCH, the next run reuses the stored certificate without a second order", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    w.extension.rejectUpdate = new AmlcertError("AZURE_CONFLICT", "extension", "another operation is in progress");
    await failedRun(renewTarget(w.deps, settings()));
    w.extension.rejectUpdate = undefined;

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", serial: issued.serialNumber, servingOk: true });
    expect(w.acme.requests).toHaveLength(1);
    expect(w.kube.writes.map((x) => [x.annotations["amlcert.io/rollout"], x.annotations["amlcert.io/rollout-failures"]])).toEqual([
      ["pending", "0"],
      ["pending", "1"],
      ["done", "1"],
    ]);
  });

  it("a stored certificate of another key type than acme.keyType is not reused; a new one is ordered", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    seedManaged(w, "azureml-tls-stranded", issued); // ECDSA P-256
    caIssues(w, await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(91))));

    const r = await renewTarget(w.deps, settings({ keyType: "rsa2048" }));

    expect(r.secret).not.toBe("azureml-tls-stranded");
    expect(w.acme.requests).toHaveLength(1);
    // with the matching type it would have been reused
    expect(describeCert(new X509Certificate(issued.leafPem)).keyType).toBe("ecdsa-p256");
  });

  it("a version that was rolled out before (a rollback target) is never picked up again", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    const info = describeCert(new X509Certificate(issued.leafPem));
    w.kube.seedSecret(secretFor("azureml-tls-rolled-back", BASE, FQDN, [FQDN], issued.chainPem, issued.keyPem, info, { state: "done", failures: 0 }));
    caIssues(w, await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(91))));

    const r = await renewTarget(w.deps, settings());

    expect(r.secret).not.toBe("azureml-tls-rolled-back");
    expect(w.acme.requests).toHaveLength(1);
  });

  it(`a stored certificate whose rollout failed ${MAX_ROLLOUT_FAILURES} times is not tried again; a new one is ordered`, async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    const info = describeCert(new X509Certificate(issued.leafPem));
    w.kube.seedSecret(secretFor("azureml-tls-rejected", BASE, FQDN, [FQDN], issued.chainPem, issued.keyPem, info, { state: "pending", failures: MAX_ROLLOUT_FAILURES }));
    caIssues(w, await makeLeaf(intermediate, [FQDN], at(-HOUR), at(days(91))));

    const r = await renewTarget(w.deps, settings());

    expect(r.secret).not.toBe("azureml-tls-rejected");
    expect(w.acme.requests).toHaveLength(1);
  });

  it("is not reused with --force, nor when it is not newer than the certificate in place", async () => {
    const forced = world();
    seedManaged(forced, "azureml-tls-current", dueCert);
    pointExtensionAt(forced, "azureml-tls-current");
    seedManaged(forced, "azureml-tls-stranded", shorterCert);
    caIssues(forced, issued);
    await renewTarget(forced.deps, settings({ force: true }));
    expect(forced.acme.requests).toHaveLength(1);

    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    seedManaged(w, "azureml-tls-older", older);
    caIssues(w, issued);
    const r = await renewTarget(w.deps, settings());
    expect(w.acme.requests).toHaveLength(1);
    expect(r.secret).not.toBe("azureml-tls-older");
  });
});

describe("renewTarget: verifying that azureml-fe serves the new certificate", () => {
  it("when the old serial keeps being served, fails with TLS_OLD_CERT_SERVED at verify-tls (exit 4) mentioning scoringFe.sslCert; the new secret stays, nothing is pruned, a Warning event is recorded", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    seedManaged(w, "azureml-tls-older", older);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    w.tlsProbe.serials = [dueCert.serialNumber];

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", exitCode: ExitCode.VerificationFailed });
    expect(err.message).toContain("scoringFe.sslCert");
    expect(err.message).toContain(dueCert.serialNumber);
    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    expect(secretContent(w, newName)?.cert).toBe(issued.chainPem);
    expect(w.extension.settings.sslSecret).toBe(newName);
    expect(w.kube.deletes).toEqual([]);
    expect(w.kube.secrets.has("azureml-tls-current")).toBe(true);
    expect(w.kube.secrets.has("azureml-tls-older")).toBe(true);
    expect(w.kube.events).toEqual([expect.objectContaining({ secretName: newName, type: "Warning", reason: "VerificationFailed", message: err.message })]);
    // it kept probing while pods could still roll, and stopped at the bound
    expect(w.tlsProbe.calls.length).toBeGreaterThan(1);
    expect(w.tlsProbe.calls.length).toBeLessThanOrEqual(60_000 / 5_000 + 1);
  });

  it("when azureml-fe serves the new serial only after a few probes (pods rolling), the renewal succeeds", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    w.tlsProbe.serials = [dueCert.serialNumber, dueCert.serialNumber, issued.serialNumber];

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", servingOk: true });
    expect(w.tlsProbe.calls).toHaveLength(3);
    expect(w.clock.sleeps).toEqual([5_000, 5_000]);
  });

  it("when the new serial is served but the chain does not validate, fails at verify-tls", async () => {
    const w = world();
    caIssues(w, issued);
    w.tlsProbe.authorized = false;
    w.tlsProbe.authorizationError = "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", exitCode: 4 });
    expect(err.message).toContain("UNABLE_TO_GET_ISSUER_CERT_LOCALLY");
  });

  it("when the clock does not advance, the TLS wait still stops after timeout/interval+1 probes", async () => {
    const w = world();
    caIssues(w, issued);
    w.tlsProbe.serials = ["01"];
    w.deps.clock = { now: () => T0, sleep: async () => undefined };

    const err = await failedRun(renewTarget(w.deps, settings({ verifyTimeoutMs: 60_000, verifyIntervalMs: 5_000 })));

    expect(err).toMatchObject({ code: "TLS_OLD_CERT_SERVED", exitCode: 4 });
    expect(w.tlsProbe.calls).toHaveLength(13);
  });

  it("in fixed mode when the PATCH changed nothing, the failure explains that azureml-fe was not rolled", async () => {
    const w = world();
    seedUnmanaged(w, BASE, dueCert);
    pointExtensionAt(w, BASE);
    caIssues(w, issued);
    // ARM answers a PATCH with the settings the extension has (and a last operation that succeeded) with 200 and runs
    // no operation, so nothing can fail there and azureml-fe is not rolled: it keeps serving what it loaded
    w.extension.failUpdate = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "never reached: no operation runs");

    const err = await failedRun(renewTarget(w.deps, settings({ secretMode: "fixed" })));

    expect(err).toMatchObject({ code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", exitCode: 4 });
    expect(err.message).toContain(dueCert.serialNumber);
    expect(err.message).toContain("secretMode: slots");
    expect(secretContent(w, BASE)).toEqual({ cert: issued.chainPem, key: issued.keyPem });
    expect(w.extension.state.provisioningState).toBe("Succeeded");
  });
});

describe("renewTarget: DNS", () => {
  it("when the FQDN does not resolve to azureml-fe before issuing, it only warns and the renewal proceeds", async () => {
    const rec = recordingLogger();
    const w = world({ logger: rec.logger });
    caIssues(w, issued);
    // the resolver still has a stale answer at first, then catches up
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: ["203.0.113.9"], cnames: [] }, { addresses: [INGRESS_IP], cnames: [] }]);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", dnsOk: true });
    expect(rec.messages("warn")).toEqual(expect.arrayContaining([expect.stringMatching(/DNS check before issuing: .*203\.0\.113\.9/)]));
    expect(w.zone.aUpserts).toEqual([]);
  });

  it("when the FQDN still does not resolve to azureml-fe after rollout, fails with DNS_MISMATCH at verify-dns (exit 4) and prunes nothing", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    seedManaged(w, "azureml-tls-older", older);
    pointExtensionAt(w, "azureml-tls-current");
    caIssues(w, issued);
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: ["203.0.113.9"], cnames: [] }]);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "DNS_MISMATCH", stage: "verify-dns", exitCode: ExitCode.VerificationFailed });
    expect(err.message).toContain("203.0.113.9");
    expect(err.message).toContain(INGRESS_IP);
    expect(w.extension.patches).toHaveLength(1);
    expect(w.kube.deletes).toEqual([]);
    expect(w.kube.events).toEqual([expect.objectContaining({ type: "Warning" })]);
  });

  it("when the authoritative servers answer a wrong address, the check names them", async () => {
    const w = world();
    w.zone.seedA(FQDN, ["198.51.100.7"]);
    caIssues(w, issued);
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: [INGRESS_IP], cnames: [] }]);

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toMatchObject({ code: "DNS_MISMATCH", exitCode: 4 });
    expect(err.message).toContain("authoritative servers answer 198.51.100.7");
  });

  it("with manageRecord, a wrong A record is upserted to azureml-fe's IP and the renewal verifies", async () => {
    const w = world();
    w.zone.seedA(FQDN, ["198.51.100.7"]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings({ manageRecord: true, recordTtlSeconds: 120 }));

    expect(w.zone.aUpserts).toEqual([{ fqdn: FQDN, addresses: [INGRESS_IP], ttl: 120, outcome: "updated" }]);
    expect(r).toMatchObject({ action: "renewed", dnsOk: true, servingOk: true });
  });

  it("with manageRecord, a missing A record is created; a correct one is left alone", async () => {
    const missing = world();
    missing.zone.a.clear();
    caIssues(missing, issued);
    await renewTarget(missing.deps, settings({ manageRecord: true }));
    expect(missing.zone.aUpserts).toEqual([{ fqdn: FQDN, addresses: [INGRESS_IP], ttl: 300, outcome: "created" }]);

    const correct = world();
    caIssues(correct, issued);
    await renewTarget(correct.deps, settings({ manageRecord: true }));
    expect(correct.zone.aUpserts).toEqual([]);
  });

  it("accepts a CNAME whose target looks like hex (dead.add.bad) when it leads to azureml-fe's address", async () => {
    const w = world({ challengeZones: ["add.bad"] });
    w.zone.a.delete(FQDN);
    w.zone.seedCname(FQDN, "dead.add.bad");
    w.challengeZones[0]!.seedA("dead.add.bad", [INGRESS_IP]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", dnsOk: true });
  });

  it("when the FQDN is a CNAME out of the zone (the zone's servers refuse the next hop), checks the rest through the resolver and passes", async () => {
    const w = world();
    w.zone.a.delete(FQDN);
    w.zone.seedCname(FQDN, "aml-westeurope.cloudapp.example");
    w.lookup.resolverAnswers.set(FQDN, [{ addresses: [INGRESS_IP], cnames: ["aml-westeurope.cloudapp.example"] }]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", dnsOk: true, servingOk: true });
  });

  it("with manageRecord, a CNAME at the FQDN is left alone with a warning and the renewal goes on", async () => {
    const log = recordingLogger();
    const w = world({ logger: log.logger });
    w.zone.a.delete(FQDN);
    w.zone.seedCname(FQDN, "aml-westeurope.cloudapp.example");
    // the CNAME's target still points elsewhere at first (DNS managed by someone else), then at azureml-fe
    w.lookup.resolverAnswers.set(FQDN, [
      { addresses: ["203.0.113.9"], cnames: ["aml-westeurope.cloudapp.example"] },
      { addresses: [INGRESS_IP], cnames: ["aml-westeurope.cloudapp.example"] },
    ]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings({ manageRecord: true }));

    expect(r).toMatchObject({ action: "renewed" });
    expect(w.zone.aUpserts).toEqual([]);
    expect(log.messages("warn").join("\n")).toMatch(/is a CNAME to aml-westeurope\.cloudapp\.example/);
  });

  it("with manageRecord, a failed A record update is a warning before issuing, not a failed renewal", async () => {
    const w = world();
    w.zone.a.set(FQDN, ["203.0.113.9"]);
    w.zone.failUpsert = new AmlcertError("AZURE_FORBIDDEN", "dns-challenge", "A/write denied");
    caIssues(w, issued);

    const err = await failedRun(renewTarget(w.deps, settings({ manageRecord: true })));

    // the renewal itself went through; only the check after rollout reports the wrong address
    expect(err).toMatchObject({ code: "DNS_MISMATCH", stage: "verify-dns", exitCode: 4 });
    expect(w.extension.patches).toHaveLength(1);
  });

  it("accepts a CNAME to azureml-fe's address through the zones", async () => {
    const w = world();
    w.zone.a.delete(FQDN);
    w.zone.seedCname(FQDN, "lb.contoso.test");
    w.zone.seedA("lb.contoso.test", [INGRESS_IP]);
    caIssues(w, issued);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", dnsOk: true });
  });
});

describe("renewTarget: pruning old secret versions after a verified renewal", () => {
  function withHistory(): FakeWorld {
    const w = world();
    seedManaged(w, "azureml-tls-current", dueCert);
    seedManaged(w, "azureml-tls-older", older);
    seedManaged(w, "azureml-tls-oldest", oldest);
    pointExtensionAt(w, "azureml-tls-current");
    // not ours to delete: hand-made, another base, another manager
    seedUnmanaged(w, "azureml-tls-manual", oldest);
    seedManaged(w, "other-tls-20250101-00000001", oldest, "other-tls");
    w.kube.seedSecret({ name: "azureml-tls-helm", data: { "cert.pem": oldest.chainPem }, labels: { [LABEL_MANAGED_BY]: "helm", [LABEL_SECRET_BASE]: BASE } });
    caIssues(w, issued);
    return w;
  }
  const unmanaged = ["azureml-tls-manual", "other-tls-20250101-00000001", "azureml-tls-helm"];

  it("keeps the new secret and keepPrevious=1 older version (the one replaced), deleting the rest of ours", async () => {
    const w = withHistory();

    const r = await renewTarget(w.deps, settings({ keepPrevious: 1 }));

    expect(w.kube.deletes.sort()).toEqual(["azureml-tls-older", "azureml-tls-oldest"]);
    expect(w.kube.secrets.has(r.secret!)).toBe(true);
    expect(w.kube.secrets.has("azureml-tls-current")).toBe(true);
    for (const name of unmanaged) expect(w.kube.secrets.has(name)).toBe(true);
  });

  it("with keepPrevious=2, keeps the replaced version and the newest older one", async () => {
    const w = withHistory();

    await renewTarget(w.deps, settings({ keepPrevious: 2 }));

    expect(w.kube.deletes).toEqual(["azureml-tls-oldest"]);
  });

  it("with keepPrevious larger than the history, deletes nothing", async () => {
    const w = withHistory();

    await renewTarget(w.deps, settings({ keepPrevious: 5 }));

    expect(w.kube.deletes).toEqual([]);
  });

  it("when the replaced secret was made by hand, it is never deleted and keepPrevious counts only our versions", async () => {
    const w = world();
    seedUnmanaged(w, "my-tls", dueCert);
    pointExtensionAt(w, "my-tls");
    seedManaged(w, "azureml-tls-older", older);
    seedManaged(w, "azureml-tls-oldest", oldest);
    caIssues(w, issued);

    await renewTarget(w.deps, settings({ keepPrevious: 1 }));

    expect(w.kube.deletes).toEqual(["azureml-tls-oldest"]);
    expect(w.kube.secrets.has("my-tls")).toBe(true);
  });

  it("in fixed mode, deletes nothing", async () => {
    const w = world();
    seedUnmanaged(w, BASE, dueCert);
    seedManaged(w, "azureml-tls-older", older);
    caIssues(w, issued);

    await renewTarget(w.deps, settings({ secretMode: "fixed" }));

    expect(w.kube.deletes).toEqual([]);
  });

  it("when pruning fails, the renewal still succeeds", async () => {
    const w = withHistory();
    w.kube.failDelete = new Error("forbidden");

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", servingOk: true });
  });
});

describe("renewTarget: the cluster Lease", () => {
  it("when another run holds the lease, skips the target without reading or writing anything", async () => {
    const w = world();
    const calls: string[] = [];
    w.deps.lock = { acquire: async () => (calls.push("acquire"), undefined), release: async () => void calls.push("release") };
    const r = await renewTarget(w.deps, settings({ force: true }));
    expect(r).toMatchObject({ action: "skipped", reason: "LockHeld" });
    expect(calls).toEqual(["acquire"]);
    expect(w.acme.requests).toEqual([]);
    expectZeroWrites(w);
  });

  it("when the lease is taken, renews and then releases it, also when the renewal fails", async () => {
    const { intermediate } = await makeTestCa();
    const w = world();
    caIssues(w, await makeLeaf(intermediate, [FQDN], T0, new Date(T0.getTime() + days(90))));
    const calls: string[] = [];
    w.deps.lock = { acquire: async () => (calls.push("acquire"), new AbortController().signal), release: async () => void calls.push("release") };
    await renewTarget(w.deps, settings());
    expect(calls).toEqual(["acquire", "release"]);
    w.extension.failUpdate = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "boom");
    await failedRun(renewTarget(w.deps, settings({ force: true })));
    expect(calls).toEqual(["acquire", "release", "acquire", "release"]);
  });
});

describe("renewTarget: Kubernetes events", () => {
  it("when a renewal fails before rollout, records a RenewalFailed warning naming the stage, and writes no secret", async () => {
    const { intermediate } = await makeTestCa();
    const w = world();
    caIssues(w, await makeLeaf(intermediate, [FQDN], T0, new Date(T0.getTime() + days(90))));
    caIssues(w, issued);
    w.acme.failure = new AmlcertError("ACME_REJECTED", "acme-order", "rejectedIdentifier: policy forbids");
    const err = await failedRun(renewTarget(w.deps, settings()));
    expect(err.exitCode).toBe(ExitCode.RenewalFailed);
    expect(w.kube.events).toEqual([expect.objectContaining({ secretName: BASE, type: "Warning", reason: "RenewalFailed", message: expect.stringMatching(/^acme-order: rejectedIdentifier/) })]);
    expectZeroWrites(w);
  });
});

describe("renewTarget: a broken certificate in place sets no bar", () => {
  it("when the pair in place is broken but expires later (a 1-year certificate with the wrong key), the 90-day replacement is accepted", async () => {
    const { intermediate: ca } = await makeTestCa("commercial");
    const yearLong = await makeLeaf(ca, [FQDN], at(-days(30)), at(days(335)));
    const strangerKey = await makeLeaf(ca, [FQDN], at(-days(30)), at(days(335)));
    const w = world();
    w.kube.seedSecret({ name: "commercial-tls", data: { "cert.pem": yearLong.chainPem, "key.pem": strangerKey.keyPem } });
    pointExtensionAt(w, "commercial-tls");
    caIssues(w, issued);
    const r = await renewTarget(w.deps, settings());
    expect(r).toMatchObject({ action: "renewed", reason: "KeyMismatch", serial: issued.serialNumber });
  });

  it("when the sound pair in place expires later than what the CA returns, the new one is refused and nothing is written", async () => {
    const { intermediate: ca } = await makeTestCa("commercial");
    const yearLong = await makeLeaf(ca, [FQDN], at(-days(30)), at(days(335)));
    const w = world();
    w.kube.seedSecret({ name: "commercial-tls", data: { "cert.pem": yearLong.chainPem, "key.pem": yearLong.keyPem } });
    pointExtensionAt(w, "commercial-tls");
    caIssues(w, issued);
    const err = await failedRun(renewTarget(w.deps, settings({ force: true })));
    expect(err).toMatchObject({ code: "CERT_NOT_NEWER", stage: "validate", exitCode: 3 });
    expect(err.message).toMatch(/not later than the one in place/);
    expectZeroWrites(w);
  });
});

describe("renewTarget: the outcome and the events of each path", () => {
  /** subscribe a recorder; return the event types in order, with the stage for stage events */
  function recordEvents(w: FakeWorld): { events: RenewalEvent[]; trail: () => string[] } {
    const events: RenewalEvent[] = [];
    w.deps.events = [...(w.deps.events ?? []), (e) => void events.push(e)];
    const trail = () => events.filter((e) => e.type !== "stage-started").map((e) => (e.type === "stage-finished" ? `${e.stage}:${e.ok ? "ok" : "failed"}` : e.type));
    return { events, trail };
  }

  it("when the certificate in place is up to date and served: planned, dns-checked, verified (not new), run-finished with action none", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-current", freshCert);
    pointExtensionAt(w, "azureml-tls-current");
    const { events, trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings());

    expect(trail()).toEqual(["run-started", "preflight:ok", "preflight:ok", "planned", "preflight:ok", "dns-checked", "extension:ok", "verify-tls:ok", "verified", "run-finished"]);
    const info = describeCert(new X509Certificate(freshCert.leafPem));
    expect(r).toEqual({
      fqdn: FQDN,
      action: "none",
      reason: "UpToDate",
      serial: info.serialNumber,
      notBefore: info.notBefore.toISOString(),
      notAfter: info.notAfter.toISOString(),
      renewAt: new Date(info.notBefore.getTime() + Math.floor(((info.notAfter.getTime() - info.notBefore.getTime()) * 2) / 3)).toISOString(),
      renewAtSource: "lifetime",
      secret: "azureml-tls-current",
      extensionUpdated: false,
      dnsOk: true,
      servingOk: true,
      durationMs: 0,
    });
    expect(events.at(-1)).toEqual({ type: "run-finished", fqdn: FQDN, at: T0, outcome: r });
  });

  it("when a first certificate is issued: stored (not reused), rolled-out (changed), verified (new), prune, then renewed", async () => {
    const w = world();
    caIssues(w, issued);
    const { events, trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings());

    expect(trail()).toEqual([
      "run-started", "preflight:ok", "preflight:ok", "planned", "preflight:ok", "dns-checked", "store:ok", "acme-order:ok", "validate:ok", "store:ok",
      "stored", "extension:ok", "rolled-out", "verify-dns:ok", "verify-tls:ok", "verified", "prune:ok", "run-finished",
    ]);
    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    expect(events.find((e) => e.type === "stored")).toMatchObject({ secret: newName, reused: false });
    expect(events.find((e) => e.type === "rolled-out")).toMatchObject({ secret: newName, changed: true });
    expect(events.find((e) => e.type === "verified")).toEqual({ type: "verified", fqdn: FQDN, at: T0, secret: newName, newCertificate: true, dnsOk: true, servingOk: true });
    expect(r).toMatchObject({ action: "renewed", reason: "SecretMissing", secret: newName, storedSecret: newName, extensionUpdated: true, dnsOk: true, servingOk: true });
    expect(r.error).toBeUndefined();
  });

  it("when the CA rejects the order: acme-order fails, nothing is stored, the outcome carries the adapter's stage and exit 3", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-due", dueCert);
    pointExtensionAt(w, "azureml-tls-due");
    caIssues(w, issued);
    w.acme.failure = new AmlcertError("ACME_REJECTED", "dns-challenge", "the CA could not validate the challenge");
    const { trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings());

    expect(trail()).toEqual(["run-started", "preflight:ok", "preflight:ok", "planned", "preflight:ok", "dns-checked", "store:ok", "acme-order:failed", "run-finished"]);
    expect(r).toMatchObject({ action: "failed", reason: "InRenewalWindow", secret: "azureml-tls-due", extensionUpdated: false, servingOk: false });
    expect(r.storedSecret).toBeUndefined();
    expect(r.error).toEqual({ code: "ACME_REJECTED", stage: "dns-challenge", message: "the CA could not validate the challenge", exitCode: 3 });
    expectZeroWrites(w);
  });

  it("when the rollout fails: the outcome still names the stored version, and the secret in place stays the old one", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-due", dueCert);
    pointExtensionAt(w, "azureml-tls-due");
    caIssues(w, issued);
    w.extension.failUpdate = new AmlcertError("EXTENSION_LRO_FAILED", "extension", "the operation ended Failed");
    const { trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings());

    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    expect(trail()).toEqual(["run-started", "preflight:ok", "preflight:ok", "planned", "preflight:ok", "dns-checked", "store:ok", "acme-order:ok", "validate:ok", "store:ok", "stored", "extension:failed", "run-finished"]);
    expect(r).toMatchObject({ action: "failed", secret: "azureml-tls-due", storedSecret: newName, serial: describeCert(new X509Certificate(dueCert.leafPem)).serialNumber });
    expect(r.error).toEqual({ code: "EXTENSION_LRO_FAILED", stage: "extension", message: "the operation ended Failed", exitCode: 3 });
  });

  it("when the new certificate is rolled out but azureml-fe keeps the old one: verified with servingOk false, exit 4, nothing pruned", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-due", dueCert);
    pointExtensionAt(w, "azureml-tls-due");
    seedManaged(w, "azureml-tls-oldest", oldest);
    caIssues(w, issued);
    w.tlsProbe.serials = [describeCert(new X509Certificate(dueCert.leafPem)).serialNumber];
    const { events, trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings({ verifyTimeoutMs: 10_000, verifyIntervalMs: 5_000 }));

    expect(trail().slice(-5)).toEqual(["rolled-out", "verify-dns:ok", "verify-tls:failed", "verified", "run-finished"]);
    expect(events.find((e) => e.type === "verified")).toMatchObject({ newCertificate: true, dnsOk: true, servingOk: false });
    expect(r).toMatchObject({ action: "failed", extensionUpdated: true, servingOk: false, error: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", exitCode: 4 } });
    expect(w.kube.deletes).toEqual([]);
  });

  it("when another run holds the lock: run-started, preflight, run-finished skipped with reason LockHeld", async () => {
    const w = world();
    w.deps.lock = { acquire: async () => undefined, release: async () => undefined };
    const { trail } = recordEvents(w);

    const r = await renewTarget(w.deps, settings());

    expect(trail()).toEqual(["run-started", "preflight:ok", "preflight:ok", "run-finished"]);
    expect(r).toEqual({ fqdn: FQDN, action: "skipped", reason: "LockHeld", extensionUpdated: false, dnsOk: false, servingOk: false, durationMs: 0 });
  });

  it("when an adapter throws a TypeError (a bug), the run fails with INTERNAL and exit 1, at the stage it was in", async () => {
    const w = world();
    caIssues(w, issued);
    w.acme.failure = new TypeError("Cannot read properties of undefined (reading 'url')");

    const err = await failedRun(renewTarget(w.deps, settings()));

    expect(err).toEqual({ code: "INTERNAL", stage: "acme-order", message: "Cannot read properties of undefined (reading 'url')", exitCode: 1 });
  });

  it("when a subscriber throws or rejects, the run goes on and its outcome is unchanged", async () => {
    const w = world();
    caIssues(w, issued);
    w.deps.events = [...(w.deps.events ?? []), () => { throw new Error("metrics broke"); }, async () => { throw new Error("history broke"); }];

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", servingOk: true });
  });

  it("when the run is stopped while waiting for azureml-fe, it ends at once as skipped (Stopped), not failed, and releases the lock", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-due", dueCert);
    pointExtensionAt(w, "azureml-tls-due");
    caIssues(w, issued);
    const calls: string[] = [];
    w.deps.lock = { acquire: async (signal) => (calls.push("acquire"), signal), release: async () => void calls.push("release") };
    const stop = new AbortController();
    w.tlsProbe.failure = () => (stop.abort(new Error("SIGTERM")), undefined);
    w.tlsProbe.serials = ["00"];

    const r = await renewTarget(w.deps, settings(), stop.signal);

    expect(r).toMatchObject({ action: "skipped", reason: "Stopped" });
    expect(r.error).toBeUndefined();
    expect(w.tlsProbe.calls).toHaveLength(1);
    expect(calls).toEqual(["acquire", "release"]);
  });

  it("when the run is stopped while waiting for the extension's operation, it ends as skipped (Stopped) and the stored version keeps its rollout count", async () => {
    const w = world();
    seedManaged(w, "azureml-tls-due", dueCert);
    pointExtensionAt(w, "azureml-tls-due");
    caIssues(w, issued);
    const stop = new AbortController();
    w.extension.hangUpdate = true;
    w.extension.onUpdateWait = () => stop.abort(new Error("SIGTERM"));

    const r = await renewTarget(w.deps, settings(), stop.signal);

    const newName = versionedSecretName(BASE, describeCert(new X509Certificate(issued.leafPem)));
    expect(r).toMatchObject({ action: "skipped", reason: "Stopped", storedSecret: newName });
    // not marked as a failed rollout: the operation's result is unknown and the next run reads the extension again
    expect(w.kube.secrets.get(newName)?.annotations).toMatchObject({ [ANNOTATION.rollout]: "pending", [ANNOTATION.rolloutFailures]: "0" });
  });
});

describe("renewTarget: a version whose rollout failed, named by the extension (ARM keeps the new settings after a failed operation)", () => {
  /** the state a failed rollout leaves: the extension names the new version, its operation Failed, azureml-fe serves the old one */
  function afterFailedRollout(failures: number): { w: FakeWorld; name: string } {
    const w = world();
    seedManaged(w, "azureml-tls-old", dueCert);
    pointExtensionAt(w, "azureml-tls-old");
    const info = describeCert(new X509Certificate(issued.leafPem));
    const name = versionedSecretName(BASE, info);
    w.kube.seedSecret(secretFor(name, BASE, FQDN, [FQDN], issued.chainPem, issued.keyPem, info, { state: "pending", failures }));
    Object.assign(w.extension.state.configurationSettings, { sslSecret: name, "scoringFe.sslSecret": name });
    w.extension.state.provisioningState = "Failed";
    w.tlsProbe.serials = [describeCert(new X509Certificate(dueCert.leafPem)).serialNumber, info.serialNumber];
    return { w, name };
  }

  it("rolls the same version out again (no new order); when it takes, the run is renewed, the version is marked done and a Renewed event names it", async () => {
    const { w, name } = afterFailedRollout(1);

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "renewed", reason: "UpToDate", secret: name, storedSecret: name, servingOk: true });
    expect(w.acme.requests).toEqual([]);
    // a PATCH naming it again would change nothing: the extension is pointed back at the version served first
    expect(w.extension.patches).toEqual([
      { sslSecret: "azureml-tls-old", "scoringFe.sslSecret": "azureml-tls-old", sslCname: FQDN },
      { sslSecret: name, "scoringFe.sslSecret": name, sslCname: FQDN },
    ]);
    expect(w.kube.secrets.get(name)?.annotations).toMatchObject({ [ANNOTATION.rollout]: "done", [ANNOTATION.rolloutFailures]: "1" });
    expect(w.kube.events.map((e) => [e.secretName, e.reason])).toEqual([[name, "Renewed"]]);
  });

  it("when the extension keeps failing it, each run counts one more failed rollout; at the third the next run orders a new certificate", async () => {
    const { w, name } = afterFailedRollout(1);
    w.extension.failUpdate = (settings) => (settings.sslSecret === name ? new AmlcertError("EXTENSION_LRO_FAILED", "extension", "E40007 INVALID_SSL_SETTING") : undefined);

    const second = await renewTarget(w.deps, settings());
    expect(second).toMatchObject({ action: "failed", error: { code: "EXTENSION_LRO_FAILED", exitCode: 3 } });
    expect(w.kube.secrets.get(name)?.annotations[ANNOTATION.rolloutFailures]).toBe("2");
    const third = await renewTarget(w.deps, settings());
    expect(third.error?.code).toBe("EXTENSION_LRO_FAILED");
    expect(w.kube.secrets.get(name)?.annotations[ANNOTATION.rolloutFailures]).toBe("3");
    expect(w.acme.requests).toEqual([]);

    w.extension.failUpdate = undefined;
    const fresh = await makeLeaf(intermediate, [FQDN], at(-HOUR / 2), at(days(90)));
    caIssues(w, fresh);
    w.tlsProbe.serials = undefined;
    const fourth = await renewTarget(w.deps, settings());

    // each failed run pointed the extension back at the certificate served, so the fourth plans on that one (due)
    expect(fourth).toMatchObject({ action: "renewed", reason: "InRenewalWindow", serial: describeCert(new X509Certificate(fresh.leafPem)).serialNumber });
    expect(w.acme.requests).toHaveLength(1);
    expect(w.extension.settings.sslSecret).not.toBe(name);
    expect(w.extension.settings.sslSecret).toBe(fourth.secret);
  });

  it("when ARM completed the operation after all (state Succeeded), the version is proven served and marked done, with no new rollout", async () => {
    const { w, name } = afterFailedRollout(1);
    w.extension.state.provisioningState = "Succeeded";
    w.tlsProbe.serials = [describeCert(new X509Certificate(issued.leafPem)).serialNumber];

    const r = await renewTarget(w.deps, settings());

    expect(r).toMatchObject({ action: "none", secret: name, servingOk: true });
    expect(w.extension.patches).toEqual([]);
    expect(w.kube.secrets.get(name)?.annotations).toMatchObject({ [ANNOTATION.rollout]: "done", [ANNOTATION.rolloutFailures]: "1" });
  });
});

describe("renewTarget: slots mode (two fixed secrets <secretName>-a/-b)", () => {
  const SLOT_A = `${BASE}-a`;
  const SLOT_B = `${BASE}-b`;
  const slots = (over: Partial<RenewSettings> = {}) => settings({ secretMode: "slots", ...over });
  const emptySlot = (w: FakeWorld, name: string) => w.kube.seedSecret({ name, data: {}, labels: { [LABEL_MANAGED_BY]: "amlcert", [LABEL_SECRET_BASE]: BASE } });

  it("when both slots are empty, the first certificate goes to -a, replacing it at the resourceVersion read, and both settings name it", async () => {
    const w = world();
    const a = emptySlot(w, SLOT_A);
    emptySlot(w, SLOT_B);
    caIssues(w, issued);
    const writes: (string | undefined)[] = [];
    const write = w.kube.writeSecret.bind(w.kube);
    w.kube.writeSecret = (x) => (writes.push(x.expectedResourceVersion), write(x));

    const r = await renewTarget(w.deps, slots());

    expect(r).toMatchObject({ action: "renewed", reason: "SecretMissing", secret: SLOT_A, servingOk: true });
    expect(writes[0]).toBe(a.resourceVersion);
    expect(w.extension.patches).toEqual([{ sslSecret: SLOT_A, "scoringFe.sslSecret": SLOT_A, sslCname: FQDN }]);
    expect(w.kube.selectors).toEqual([]);
    expect(w.kube.deletes).toEqual([]);
  });

  it("when a slot is missing, it is created (create only: expectedResourceVersion \"\")", async () => {
    const w = world();
    caIssues(w, issued);
    const expected: (string | undefined)[] = [];
    const write = w.kube.writeSecret.bind(w.kube);
    w.kube.writeSecret = (x) => (expected.push(x.expectedResourceVersion), write(x));
    const r = await renewTarget(w.deps, slots());
    expect(r).toMatchObject({ action: "renewed", secret: SLOT_A });
    expect(expected[0]).toBe("");
  });

  it("a renewal writes the slot not served (-b when -a is served), and -a keeps the previous certificate", async () => {
    const w = world();
    seedManaged(w, SLOT_A, dueCert);
    pointExtensionAt(w, SLOT_A);
    emptySlot(w, SLOT_B);
    caIssues(w, issued);
    const r = await renewTarget(w.deps, slots());
    expect(r).toMatchObject({ action: "renewed", reason: "InRenewalWindow", secret: SLOT_B, servingOk: true });
    expect(secretContent(w, SLOT_A)?.cert).toBe(dueCert.chainPem);
    expect(secretContent(w, SLOT_B)?.cert).toBe(issued.chainPem);
    expect(w.extension.patches).toEqual([{ sslSecret: SLOT_B, "scoringFe.sslSecret": SLOT_B, sslCname: FQDN }]);
  });

  it("scoringFe.sslSecret is read first; when the settings disagree, a warning names both and the rollout sets both", async () => {
    const log = recordingLogger();
    const w = world({ logger: log.logger });
    seedManaged(w, SLOT_A, dueCert);
    Object.assign(w.extension.state.configurationSettings, { sslSecret: "aml-old", "scoringFe.sslSecret": SLOT_A, sslCname: FQDN });
    caIssues(w, issued);
    const r = await renewTarget(w.deps, slots());
    expect(r).toMatchObject({ action: "renewed", secret: SLOT_B });
    expect(log.messages("warn").some((m) => m.includes("sslSecret names aml-old, scoringFe.sslSecret names azureml-tls-a"))).toBe(true);
    expect(w.extension.settings).toMatchObject({ sslSecret: SLOT_B, "scoringFe.sslSecret": SLOT_B });
  });

  it("when the extension serves a secret amlcert may not read (403), it refuses at preflight naming the secret and deploy/, writing nothing; --force moves it to the slots", async () => {
    const w = world();
    seedUnmanaged(w, "hand-made", freshCert);
    pointExtensionAt(w, "hand-made");
    w.kube.failGet = (name) => (name === "hand-made" ? new AmlcertError("KUBE_FORBIDDEN", "plan", 'secrets "hand-made" is forbidden') : undefined);
    caIssues(w, issued);

    const err = await failedRun(renewTarget(w.deps, slots()));
    expect(err).toMatchObject({ code: "KUBE_FORBIDDEN", stage: "preflight", exitCode: 3 });
    expect(err.message).toContain("secret hand-made");
    expect(err.message).toContain("deploy/");
    expectZeroWrites(w);

    const forced = await renewTarget(w.deps, slots({ force: true }));
    expect(forced).toMatchObject({ action: "renewed", reason: "Forced", secret: SLOT_A });
    expect(secretContent(w, "hand-made")?.cert).toBe(freshCert.chainPem);
  });

  it("when the extension is busy (Updating), it waits through the Clock and skips (ExtensionBusy) when it stays busy, ordering and writing nothing", async () => {
    const w = world({ extension: { provisioningState: "Updating" } });
    caIssues(w, issued);
    const r = await renewTarget(w.deps, slots({ extensionBusyTimeoutMs: 60_000, extensionBusyIntervalMs: 20_000 }));
    expect(r).toMatchObject({ action: "skipped", reason: "ExtensionBusy" });
    expect(w.clock.sleeps).toEqual([20_000, 20_000, 20_000]);
    expect(w.acme.requests).toEqual([]);
    expectZeroWrites(w);
  });

  it("when the busy extension's operation ends while waiting, the run goes on", async () => {
    const w = world({ extension: { provisioningState: "Updating" } });
    caIssues(w, issued);
    let reads = 0;
    w.extension.observers.push((e) => {
      if (e === "read" && ++reads === 2) w.extension.state.provisioningState = "Succeeded";
    });
    const r = await renewTarget(w.deps, slots({ extensionBusyTimeoutMs: 60_000, extensionBusyIntervalMs: 20_000 }));
    expect(r).toMatchObject({ action: "renewed", secret: SLOT_A });
    expect(w.clock.sleeps.slice(0, 1)).toEqual([20_000]);
  });
});

describe("renewTarget: fixed mode writes into a secret that may be someone else's", () => {
  it("keeps every data key and label it did not write (ca.crt, the owner's labels)", async () => {
    const w = world();
    w.kube.seedSecret({ name: BASE, data: { "cert.pem": dueCert.chainPem, "key.pem": dueCert.keyPem, "ca.crt": "CA BUNDLE" }, labels: { team: "ml-platform" } });
    pointExtensionAt(w, BASE);
    caIssues(w, issued);
    w.extension.changed = true;
    const r = await renewTarget(w.deps, settings({ secretMode: "fixed" }));
    expect(r).toMatchObject({ action: "renewed", secret: BASE });
    const stored = w.kube.secrets.get(BASE)!;
    expect(stored.data["ca.crt"]?.toString()).toBe("CA BUNDLE");
    expect(stored.data["cert.pem"]?.toString()).toBe(issued.chainPem);
    expect(stored.labels).toEqual({ team: "ml-platform" });
  });
});
