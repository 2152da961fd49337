import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { planRenewal, type PlanDecision } from "../../src/renewal/plan.js";
import { decideFromSource, followSource } from "../../src/renewal/source-decision.js";
import type { SourceOffer } from "../../src/ports.js";
import { days, makeLeaf, makeTestCa, type TestIssuer, type TestLeaf } from "../support/certs.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { parseExposition, seriesOf } from "../support/exposition.js";

const issued = new Date("2026-11-01T00:00:00Z");
const names = ["ml.contoso.test"];
const ORIGIN = "keyVault https://kv.vault.azure.net/certificates/web";
let ca: TestIssuer;
let inPlace: TestLeaf;
let newer: TestLeaf;
let shorter: TestLeaf;

beforeAll(async () => {
  ({ intermediate: ca } = await makeTestCa());
  inPlace = await makeLeaf(ca, names, issued, new Date(issued.getTime() + days(90)));
  newer = await makeLeaf(ca, names, new Date(issued.getTime() + days(60)), new Date(issued.getTime() + days(150)));
  shorter = await makeLeaf(ca, names, issued, new Date(issued.getTime() + days(80)));
});

const at = (d: number) => new Date(issued.getTime() + days(d));
const plan = (now: Date, o: { certPem?: string; keyPem?: string; force?: boolean } = {}): PlanDecision =>
  planRenewal({ stored: { secretName: "aml-tls-a", certPem: o.certPem ?? inPlace.chainPem, keyPem: o.keyPem ?? inPlace.keyPem }, names, now, force: o.force });
const offerOf = (leaf: TestLeaf, version = "v2"): SourceOffer => {
  const x = new X509Certificate(leaf.leafPem);
  return { version, serialNumber: x.serialNumber.toUpperCase(), fingerprint256: x.fingerprint256, notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) };
};

describe("decideFromSource", () => {
  it("when the source holds a certificate that expires later than the one in place, it renews with SourceUpdated, even when the one in place is not due", () => {
    const { decision, notRenewing, warnings } = decideFromSource({ plan: plan(at(10)), offer: offerOf(newer, "7f3a"), origin: ORIGIN });
    expect(decision.renew).toBe(true);
    expect(decision.reason).toBe("SourceUpdated");
    expect(decision.message).toBe(
      `${ORIGIN} holds a newer certificate (version 7f3a, serial ${newer.serialNumber}, expires ${at(150).toISOString()}) than the one in place (serial ${inPlace.serialNumber}, expires ${at(90).toISOString()})`,
    );
    expect(decision.currentSound).toBe(true);
    expect(notRenewing).toBe(false);
    expect(warnings).toEqual([]);
  });

  it("when the source holds the certificate in place and it is not due, nothing is renewed, no warning, and the message names the source and version", () => {
    const p = plan(at(10));
    const judged = decideFromSource({ plan: p, offer: offerOf(inPlace, "v1"), origin: ORIGIN });
    expect(judged).toEqual({ decision: { ...p, message: `${p.message}; ${ORIGIN} holds this certificate (version v1)` }, notRenewing: false, warnings: [] });
    expect(judged.decision.reason).toBe("UpToDate");
  });

  it("when the certificate in place is due and the source holds the same one, it is SourceNotRenewing: no renewal, one warning", () => {
    const { decision, notRenewing, warnings } = decideFromSource({ plan: plan(at(61)), offer: offerOf(inPlace, "v1"), origin: ORIGIN });
    expect(decision.renew).toBe(false);
    expect(decision.reason).toBe("SourceNotRenewing");
    const message = `the source is not renewing: ${ORIGIN} still holds the certificate in place (serial ${inPlace.serialNumber}, expires ${at(90).toISOString()}; renewal was due at ${at(60).toISOString()}); renew it at the source`;
    expect(decision.message).toBe(message);
    expect(notRenewing).toBe(true);
    expect(warnings).toEqual([message]);
  });

  it("when the certificate in place expired and the source still holds it, it is SourceNotRenewing and says expired", () => {
    const { decision, notRenewing } = decideFromSource({ plan: plan(at(91)), offer: offerOf(inPlace, "v1"), origin: ORIGIN });
    expect(decision.reason).toBe("SourceNotRenewing");
    expect(decision.message).toContain(`expired ${at(90).toISOString()}`);
    expect(notRenewing).toBe(true);
  });

  it("when the source holds a different certificate that expires earlier, the one in place is kept with a warning", () => {
    const { decision, notRenewing, warnings } = decideFromSource({ plan: plan(at(10)), offer: offerOf(shorter, "v0"), origin: ORIGIN });
    expect(decision.reason).toBe("UpToDate");
    expect(decision.message.endsWith(`; ${ORIGIN} holds nothing newer`)).toBe(true);
    expect(notRenewing).toBe(false);
    expect(warnings).toEqual([
      `${ORIGIN} holds a different certificate (version v0, serial ${shorter.serialNumber}) that does not expire later than the one in place (${at(90).toISOString()}); keeping the one in place`,
    ]);
  });

  it("when the one in place is due and the source's different certificate is not newer, it is SourceNotRenewing with both warnings", () => {
    const { decision, warnings } = decideFromSource({ plan: plan(at(70)), offer: offerOf(shorter, "v0"), origin: ORIGIN });
    expect(decision.reason).toBe("SourceNotRenewing");
    expect(decision.message).toContain("still holds no newer certificate");
    expect(warnings).toHaveLength(2);
  });

  it("when nothing sound is in place (a key that does not match), the plan's reason stands and the source's certificate is taken", () => {
    const p = plan(at(10), { keyPem: newer.keyPem });
    expect(p.reason).toBe("KeyMismatch");
    expect(decideFromSource({ plan: p, offer: offerOf(inPlace, "v1"), origin: ORIGIN })).toEqual({
      decision: { ...p, message: `${p.message}; taking the certificate ${ORIGIN} holds (version v1, serial ${inPlace.serialNumber})` },
      notRenewing: false,
      warnings: [],
    });
  });

  it("when no secret is in place, the plan's SecretMissing stands", () => {
    const p = planRenewal({ stored: undefined, names, now: at(1) });
    expect(decideFromSource({ plan: p, offer: offerOf(inPlace), origin: ORIGIN }).decision.reason).toBe("SecretMissing");
  });

  it("when --force is given, Forced stands even though the source holds the same certificate", () => {
    const p = plan(at(10), { force: true });
    expect(decideFromSource({ plan: p, offer: offerOf(inPlace, "v1"), origin: ORIGIN }).decision.reason).toBe("Forced");
  });
});

describe("followSource", () => {
  it("adds the decision's warnings to the inspection's and names the source by its kind when it has no origin", () => {
    const warnings = ["earlier"];
    const decision = followSource(plan(at(61)), offerOf(inPlace, "v1"), { kind: "kubernetesTls" }, warnings);
    expect(decision.reason).toBe("SourceNotRenewing");
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toBe("earlier");
    expect(warnings[1]!.startsWith("the source is not renewing: kubernetesTls still holds")).toBe(true);
  });
});

describe("amlcert_source_not_renewing", () => {
  const at = new Date("2031-01-10T06:00:00.000Z");
  const planned = (fqdn: string, reason: string) => ({ type: "planned" as const, fqdn, at, renew: false, reason, message: "" });

  it("is 1 for a Key Vault target whose plan was SourceNotRenewing, 0 once a plan is not, and has no series for an ACME target", async () => {
    const metrics = createMetrics({ version: "test", defaultMetrics: false });
    metrics.observeSource!("kv.contoso.test", "keyVault");
    metrics.observeSource!("acme.contoso.test", "acme");
    await metrics.sink(planned("kv.contoso.test", "SourceNotRenewing"));
    await metrics.sink(planned("acme.contoso.test", "InRenewalWindow"));
    expect(seriesOf(parseExposition(await metrics.text()), "amlcert_source_not_renewing")).toEqual(
      new Map([['amlcert_source_not_renewing{target="kv.contoso.test",source="keyVault"}', 1]]),
    );
    await metrics.sink(planned("kv.contoso.test", "SourceUpdated"));
    expect(seriesOf(parseExposition(await metrics.text()), "amlcert_source_not_renewing")).toEqual(
      new Map([['amlcert_source_not_renewing{target="kv.contoso.test",source="keyVault"}', 0]]),
    );
  });
});
