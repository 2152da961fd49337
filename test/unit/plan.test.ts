import { beforeAll, describe, expect, it } from "vitest";
import { planRenewal, renewalTime } from "../../src/renewal/plan.js";
import { days, encryptKey, makeLeaf, makeTestCa, sec1Key, type TestIssuer, type TestLeaf } from "../support/certs.js";

const issued = new Date("2026-11-01T00:00:00Z");
const expires = new Date(issued.getTime() + days(90));
const names = ["ml.contoso.test"];
let ca: TestIssuer;
let leaf: TestLeaf;
let other: TestLeaf;

beforeAll(async () => {
  ({ intermediate: ca } = await makeTestCa());
  leaf = await makeLeaf(ca, names, issued, expires);
  other = await makeLeaf(ca, names, issued, expires);
});

const stored = (certPem?: string, keyPem?: string) => ({ secretName: "aml-tls", certPem, keyPem });
const at = (d: number) => new Date(issued.getTime() + days(d));

describe("renewalTime", () => {
  it("defaults to two thirds of the lifetime", () => {
    expect(renewalTime(issued, expires).toISOString()).toBe(at(60).toISOString());
  });
  it("honours renewBefore when it is shorter than the lifetime", () => {
    expect(renewalTime(issued, expires, days(10)).toISOString()).toBe(at(80).toISOString());
  });
  it("falls back to two thirds when renewBefore is longer than the lifetime", () => {
    expect(renewalTime(issued, expires, days(120)).toISOString()).toBe(at(60).toISOString());
  });
});

describe("planRenewal", () => {
  it("when no secret is in place, renews with SecretMissing", () => {
    expect(planRenewal({ stored: undefined, names, now: at(1) })).toMatchObject({ renew: true, reason: "SecretMissing" });
  });

  it("when the secret lacks key.pem, renews with SecretMissingData naming the key", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, undefined), names, now: at(1) });
    expect(d).toMatchObject({ renew: true, reason: "SecretMissingData" });
    expect(d.message).toContain("key.pem");
  });

  it("when cert.pem is garbage, renews with SecretUnparsable", () => {
    expect(planRenewal({ stored: stored("garbage", leaf.keyPem), names, now: at(1) })).toMatchObject({ reason: "SecretUnparsable" });
  });

  it("when the key is encrypted, renews with KeyUnusable", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, encryptKey(leaf.keyPem)), names, now: at(1) })).toMatchObject({ reason: "KeyUnusable" });
  });

  it("when a fresh pair in place has an unencrypted non-PKCS#8 key (e.g. a commercial certificate's), leaves it alone", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, sec1Key(leaf.keyPem)), names, now: at(1) })).toMatchObject({ renew: false, reason: "UpToDate", currentSound: true });
  });

  it("a forced renewal of a sound pair keeps it marked sound; a broken pair is not", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true })).toMatchObject({ reason: "Forced", currentSound: true });
    expect(planRenewal({ stored: stored(leaf.chainPem, other.keyPem), names, now: at(1), force: true })).toMatchObject({ reason: "Forced", currentSound: false });
  });

  it("when the secret holds a mismatched pair, renews with KeyMismatch", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, other.keyPem), names, now: at(1) })).toMatchObject({ renew: true, reason: "KeyMismatch" });
  });

  it("when an extra SAN is added to the config, renews with NamesNotCovered", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names: [...names, "api.contoso.test"], now: at(1) });
    expect(d).toMatchObject({ reason: "NamesNotCovered" });
    expect(d.message).toContain("api.contoso.test");
  });

  it("when the chain holds only the leaf, renews with ChainIncomplete", () => {
    expect(planRenewal({ stored: stored(leaf.leafPem, leaf.keyPem), names, now: at(1) })).toMatchObject({ reason: "ChainIncomplete" });
  });

  it("when the certificate is fresh, does nothing and says when renewal is due", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(59) });
    expect(d).toMatchObject({ renew: false, reason: "UpToDate" });
    expect(d.renewAt?.toISOString()).toBe(at(60).toISOString());
    expect(d.current?.serialNumber).toBe(leaf.serialNumber);
  });

  it("when the certificate is inside the renewal window, renews with InRenewalWindow", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(60) })).toMatchObject({ renew: true, reason: "InRenewalWindow" });
  });

  it("when renewBefore is set, the window starts renewBefore before expiry", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(70), renewBeforeMs: days(15) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(75), renewBeforeMs: days(15) })).toMatchObject({ renew: true, reason: "InRenewalWindow" });
  });

  it("when the certificate has expired, renews with Expired", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(91) })).toMatchObject({ reason: "Expired" });
  });

  it("when --force is given, renews a fresh certificate with Forced", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true })).toMatchObject({ renew: true, reason: "Forced" });
  });

  it("when the wanted name is a wildcard, only the same wildcard SAN covers it", async () => {
    const wild = await makeLeaf(ca, ["*.contoso.test"], issued, expires);
    expect(planRenewal({ stored: stored(wild.chainPem, wild.keyPem), names: ["*.contoso.test"], now: at(1) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(wild.chainPem, wild.keyPem), names: ["ml.contoso.test"], now: at(1) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names: ["*.contoso.test"], now: at(1) })).toMatchObject({ reason: "NamesNotCovered" });
  });
});
