import { beforeAll, describe, expect, it } from "vitest";
import { KNOWN_PROFILE_LIFETIMES_MS, planRenewal, renewalTime, renewalTimeOf } from "../../src/renewal/plan.js";
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
  it("falls back to two thirds when renewBefore equals the lifetime (renewing at issuance is no schedule)", () => {
    expect(renewalTime(issued, expires, days(90)).toISOString()).toBe(at(60).toISOString());
  });
  it("falls back to two thirds when renewBefore is zero or negative", () => {
    expect(renewalTime(issued, expires, 0).toISOString()).toBe(at(60).toISOString());
    expect(renewalTime(issued, expires, -days(10)).toISOString()).toBe(at(60).toISOString());
  });
  it("two thirds are rounded down to the millisecond", () => {
    expect(renewalTime(new Date(0), new Date(100)).getTime()).toBe(66);
  });
});

describe("planRenewal", () => {
  it("when no secret is in place, renews with SecretMissing", () => {
    expect(planRenewal({ stored: undefined, names, now: at(1) })).toEqual({
      renew: true,
      reason: "SecretMissing",
      message: "no certificate secret is in place",
      current: undefined,
      currentSound: false,
    });
  });

  it("when the secret lacks key.pem, renews with SecretMissingData naming the key", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, undefined), names, now: at(1) });
    expect(d).toMatchObject({ renew: true, reason: "SecretMissingData", message: "secret aml-tls has no key.pem", currentSound: false });
    expect(d.current?.serialNumber).toBe(leaf.serialNumber);
  });

  it("when the secret lacks cert.pem, or both, renews with SecretMissingData naming what is missing", () => {
    expect(planRenewal({ stored: stored(undefined, leaf.keyPem), names, now: at(1) })).toEqual({
      renew: true,
      reason: "SecretMissingData",
      message: "secret aml-tls has no cert.pem",
      current: undefined,
      currentSound: false,
    });
    expect(planRenewal({ stored: stored("", ""), names, now: at(1) })).toMatchObject({ reason: "SecretMissingData", message: "secret aml-tls has no cert.pem and key.pem" });
  });

  it("when cert.pem is garbage, renews with SecretUnparsable and the parser's words", () => {
    expect(planRenewal({ stored: stored("garbage", leaf.keyPem), names, now: at(1) })).toEqual({
      renew: true,
      reason: "SecretUnparsable",
      message: "secret aml-tls: cert.pem: no PEM CERTIFICATE block found",
      current: undefined,
      currentSound: false,
    });
  });

  it("when the key is encrypted, renews with KeyUnusable", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, encryptKey(leaf.keyPem)), names, now: at(1) })).toMatchObject({
      renew: true,
      reason: "KeyUnusable",
      message: "secret aml-tls: key.pem: the key is passphrase-protected; Azure ML needs an unencrypted key",
      currentSound: false,
    });
  });

  it("when key.pem holds no parsable key, renews with KeyUnusable", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, "not a key"), names, now: at(1) })).toMatchObject({
      reason: "KeyUnusable",
      message: "secret aml-tls: key.pem: not a parsable PEM private key",
      currentSound: false,
    });
  });

  it("when a fresh pair in place has an unencrypted non-PKCS#8 key (e.g. a commercial certificate's), leaves it alone", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, sec1Key(leaf.keyPem)), names, now: at(1) })).toMatchObject({ renew: false, reason: "UpToDate", currentSound: true });
  });

  it("a pair in place with an unencrypted non-PKCS#8 key is still sound when it is due, forced or expired", () => {
    const sec1 = stored(leaf.chainPem, sec1Key(leaf.keyPem));
    expect(planRenewal({ stored: sec1, names, now: at(60) })).toMatchObject({ reason: "InRenewalWindow", currentSound: true });
    expect(planRenewal({ stored: sec1, names, now: at(1), force: true })).toMatchObject({ reason: "Forced", currentSound: true });
    expect(planRenewal({ stored: sec1, names, now: at(91) })).toMatchObject({ reason: "Expired", currentSound: true });
  });

  it("a forced renewal of a sound pair keeps it marked sound; a broken pair is not", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true })).toMatchObject({ reason: "Forced", currentSound: true });
    expect(planRenewal({ stored: stored(leaf.chainPem, other.keyPem), names, now: at(1), force: true })).toMatchObject({ reason: "Forced", currentSound: false });
  });

  it("when the secret holds a mismatched pair, renews with KeyMismatch", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, other.keyPem), names, now: at(1) })).toMatchObject({
      renew: true,
      reason: "KeyMismatch",
      message: "secret aml-tls: key.pem does not match the leaf certificate in cert.pem",
      currentSound: false,
    });
  });

  it("when an extra SAN is added to the config, renews with NamesNotCovered", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names: [...names, "api.contoso.test"], now: at(1) });
    expect(d).toMatchObject({ renew: true, reason: "NamesNotCovered", message: "secret aml-tls: cert.pem does not cover api.contoso.test", currentSound: false });
  });

  it("when the chain holds only the leaf, renews with ChainIncomplete", () => {
    expect(planRenewal({ stored: stored(leaf.leafPem, leaf.keyPem), names, now: at(1) })).toMatchObject({
      renew: true,
      reason: "ChainIncomplete",
      message: "secret aml-tls: cert.pem: the chain holds only the leaf; its issuer (CN=amlcert unit intermediate) is missing",
      currentSound: false,
    });
  });

  it("when the certificate is fresh, does nothing and says when renewal is due", () => {
    const d = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(59) });
    expect(d).toMatchObject({
      renew: false,
      reason: "UpToDate",
      message: `valid until ${expires.toISOString()}; renewal due at ${at(60).toISOString()}`,
      currentSound: true,
    });
    expect(d.renewAt?.toISOString()).toBe(at(60).toISOString());
    expect(d.current?.serialNumber).toBe(leaf.serialNumber);
  });

  it("when the certificate is inside the renewal window, renews with InRenewalWindow", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(60) })).toMatchObject({
      renew: true,
      reason: "InRenewalWindow",
      message: `secret aml-tls: renewal was due at ${at(60).toISOString()}; the certificate expires ${expires.toISOString()}`,
      renewAt: at(60),
      renewAtSource: "lifetime",
      currentSound: true,
    });
  });

  it("when renewBefore is set, the window starts renewBefore before expiry", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(70), renewBeforeMs: days(15) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(75), renewBeforeMs: days(15) })).toMatchObject({ renew: true, reason: "InRenewalWindow" });
  });

  it("when the certificate has expired, renews with Expired", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(91) })).toMatchObject({
      renew: true,
      reason: "Expired",
      message: `secret aml-tls: the certificate expired at ${expires.toISOString()}`,
      renewAt: at(60),
      currentSound: true,
    });
  });

  it("at the very moment of notAfter the certificate counts as expired", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: expires })).toMatchObject({ reason: "Expired" });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: new Date(expires.getTime() - 1) })).toMatchObject({ reason: "InRenewalWindow" });
  });

  it("when --force is given, renews a fresh certificate with Forced", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true })).toMatchObject({
      renew: true,
      reason: "Forced",
      message: "--force was given",
      currentSound: true,
    });
  });

  it("--force wins over every other reason, and a missing secret is still reported as not sound", () => {
    expect(planRenewal({ stored: undefined, names, now: at(1), force: true })).toEqual({
      renew: true,
      reason: "Forced",
      message: "--force was given",
      current: undefined,
      currentSound: false,
    });
  });

  it("when the wanted name is a wildcard, only the same wildcard SAN covers it", async () => {
    const wild = await makeLeaf(ca, ["*.contoso.test"], issued, expires);
    expect(planRenewal({ stored: stored(wild.chainPem, wild.keyPem), names: ["*.contoso.test"], now: at(1) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(wild.chainPem, wild.keyPem), names: ["ml.contoso.test"], now: at(1) })).toMatchObject({ renew: false });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names: ["*.contoso.test"], now: at(1) })).toMatchObject({ reason: "NamesNotCovered" });
  });
});

describe("planRenewal with the CA's ARI window and a profile", () => {
  const span = { notBefore: issued, notAfter: expires };
  const window = { certId: "aki.serial", start: at(40), end: at(42) };

  it("when the CA suggests a window, the renewal time is inside it, stable, and its source is ari", () => {
    const before = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(39), renewalWindow: window });
    expect(before).toMatchObject({ renew: false, reason: "UpToDate", renewAtSource: "ari" });
    expect(before.renewAt!.getTime()).toBeGreaterThanOrEqual(at(40).getTime());
    expect(before.renewAt!.getTime()).toBeLessThan(at(42).getTime());
    expect(before.message).toBe(`valid until ${expires.toISOString()}; renewal due at ${before.renewAt!.toISOString()} (the CA's renewal window)`);
    expect(renewalTimeOf(span, undefined, window)).toEqual({ at: before.renewAt, source: "ari" });
  });

  it("when the window has begun and the chosen time passed, renews with InRenewalWindow although 2/3 of the lifetime is far", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(42), renewalWindow: window })).toMatchObject({
      renew: true,
      reason: "InRenewalWindow",
      renewAtSource: "ari",
    });
  });

  it("when the window is after the certificate's expiry, the renewal time is its notAfter", () => {
    const late = { certId: "x.y", start: at(100), end: at(101) };
    expect(renewalTimeOf(span, undefined, late)).toEqual({ at: expires, source: "ari" });
  });

  it("without a window, the source says lifetime, or renewBefore when renewBefore set the time", () => {
    expect(renewalTimeOf(span)).toEqual({ at: at(60), source: "lifetime" });
    expect(renewalTimeOf(span, days(10))).toEqual({ at: at(80), source: "renewBefore" });
    expect(renewalTimeOf(span, days(90))).toEqual({ at: at(60), source: "lifetime" });
  });

  it("when the profile's certificates would expire before the sound one in place, does not order (ProfileLifetimeShorter) and says from when it will", () => {
    // a 90-day certificate in its window at day 60 (30 days left), and 20-day certificates on order
    const d = planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(60), profile: { name: "tiny", lifetimeMs: days(20) } });
    expect(d).toEqual({
      renew: false,
      reason: "ProfileLifetimeShorter",
      message: `a tiny certificate (20 days) ordered now would expire before the one in place (${expires.toISOString()}), so it would be refused; ordering from ${new Date(at(70).getTime() + 1_000).toISOString()}`,
      current: d.current,
      renewAt: new Date(at(70).getTime() + 1_000),
      renewAtSource: "lifetime",
      currentSound: true,
    });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: new Date(at(70).getTime() + 1_000), profile: { name: "tiny", lifetimeMs: days(20) } })).toMatchObject({
      renew: true,
      reason: "InRenewalWindow",
    });
  });

  it("when --force is given but the profile's certificates would expire first, does not order either", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true, profile: { name: "tlsserver", lifetimeMs: KNOWN_PROFILE_LIFETIMES_MS.tlsserver } })).toMatchObject({
      renew: false,
      reason: "ProfileLifetimeShorter",
    });
    expect(planRenewal({ stored: stored(leaf.chainPem, leaf.keyPem), names, now: at(1), force: true, profile: { name: "classic", lifetimeMs: KNOWN_PROFILE_LIFETIMES_MS.classic } })).toMatchObject({
      renew: true,
      reason: "Forced",
    });
  });

  it("when the pair in place is broken, a shorter profile still orders (anything valid is better)", () => {
    expect(planRenewal({ stored: stored(leaf.chainPem, other.keyPem), names, now: at(1), profile: { name: "shortlived", lifetimeMs: KNOWN_PROFILE_LIFETIMES_MS.shortlived } })).toMatchObject({
      renew: true,
      reason: "KeyMismatch",
    });
  });

  it("Let's Encrypt's profile lifetimes are 90 days, 45 days and 160 hours", () => {
    expect(KNOWN_PROFILE_LIFETIMES_MS).toEqual({ classic: days(90), tlsserver: days(45), shortlived: 160 * 3_600_000 });
  });
});
