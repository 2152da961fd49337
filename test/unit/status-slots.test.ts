/**
 * `amlcert status` in slots mode: which slot is served and which one holds the rollback certificate, from the
 * slots as inspect reads them (resolveSlots over both slots), in the JSON line and in the table.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { statusSlots } from "../../src/app/status.js";
import { formatStatusJson, formatStatusTable, statusLine, type StatusFacts } from "../../src/app/status-view.js";
import { resolveSlots } from "../../src/renewal/policies.js";
import { ANNOTATION } from "../../src/renewal/certificate-version.js";
import type { StoredSecret } from "../../src/ports.js";
import type { TargetHistory } from "../../src/history/history.js";
import { makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";

const FQDN = "ml.contoso.test";
const BASE = "aml-tls";
const A = "aml-tls-a";
const B = "aml-tls-b";
const now = new Date("2026-12-01T12:00:00.000Z");

let older: TestLeaf;
let newer: TestLeaf;
beforeAll(async () => {
  const { intermediate } = await makeTestCa("amlcert status slots");
  older = await makeLeaf(intermediate, [FQDN], new Date("2026-09-01T00:00:00Z"), new Date("2026-11-30T00:00:00Z"));
  newer = await makeLeaf(intermediate, [FQDN], new Date("2026-11-01T00:00:00Z"), new Date("2027-01-30T00:00:00Z"));
});

/** A slot as the manifests create it (free), or holding `leaf` with its rollout state. */
function slot(name: string, leaf?: TestLeaf, rollout?: "pending" | "done"): StoredSecret {
  return {
    name,
    type: "Opaque",
    data: leaf ? { "cert.pem": Buffer.from(leaf.chainPem), "key.pem": Buffer.from(leaf.keyPem) } : {},
    labels: { "app.kubernetes.io/managed-by": "amlcert", "amlcert.io/secret-base": BASE },
    annotations: rollout ? { [ANNOTATION.rollout]: rollout, [ANNOTATION.rolloutFailures]: "0" } : {},
  };
}

/** Inspection.slots as inspectTarget builds it. */
function inspected(named: string | undefined, a: StoredSecret, b: StoredSecret, provisioningState = "Succeeded") {
  const secrets = { [A]: a, [B]: b };
  return { ...resolveSlots({ base: BASE, named, provisioningState, slots: secrets }), secrets };
}

describe("statusSlots: the served slot and the rollback certificate", () => {
  it("when the extension serves -b and -a holds the certificate rolled out before, -b is served and -a is the rollback with its serial and expiry", () => {
    expect(statusSlots(BASE, inspected(B, slot(A, older, "done"), slot(B, newer, "done")))).toEqual({
      served: B,
      rollback: { secret: A, serial: older.serialNumber, notAfter: new Date("2026-11-30T00:00:00Z") },
    });
  });

  it("when the other slot is free (the first certificate), there is no rollback", () => {
    expect(statusSlots(BASE, inspected(A, slot(A, newer, "done"), slot(B)))).toEqual({ served: A });
  });

  it("when the other slot holds a certificate never rolled out (stored for the next rollout), it is no rollback", () => {
    expect(statusSlots(BASE, inspected(A, slot(A, older, "done"), slot(B, newer, "pending")))).toEqual({ served: A });
  });

  it("when the rollout of -b failed and Helm kept -a, -a is served and the rejected -b is no rollback", () => {
    expect(statusSlots(BASE, inspected(B, slot(A, older, "done"), slot(B, newer, "pending"), "Failed"))).toEqual({ served: A });
  });

  it("when the rollout of -a failed and nothing earlier was served, no slot is served", () => {
    expect(statusSlots(BASE, inspected(A, slot(A, newer, "pending"), slot(B), "Failed"))).toEqual({});
  });

  it("when the extension serves a secret that is not a slot, no slot is served and none is the rollback", () => {
    expect(statusSlots(BASE, inspected("hand-made", slot(A, older, "done"), slot(B, newer, "done")))).toEqual({});
  });

  it("when the rollback slot's cert.pem cannot be parsed, the slot is still named, without serial and expiry", () => {
    const broken = { ...slot(A, older, "done"), data: { "cert.pem": Buffer.from("garbage"), "key.pem": Buffer.from("x") } };
    expect(statusSlots(BASE, inspected(B, broken, slot(B, newer, "done")))).toEqual({ served: B, rollback: { secret: A } });
  });

  it("outside slots mode there is nothing to show", () => {
    expect(statusSlots(BASE, undefined)).toBeUndefined();
  });
});

describe("status output in slots mode", () => {
  const history: TargetHistory = {
    fqdn: FQDN,
    consecutiveFailures: 0,
    lastAction: "renewed",
    lastAttempt: "2026-11-01T00:00:00.000Z",
    lastSuccess: "2026-11-01T00:00:00.000Z",
  };
  const facts = (): StatusFacts => ({
    fqdn: FQDN,
    secret: B,
    slots: { served: B, rollback: { secret: A, serial: "0A", notAfter: new Date("2026-11-30T00:00:00.000Z") } },
    serial: "0B",
    notAfter: new Date("2027-01-30T00:00:00.000Z"),
    renewAt: new Date("2026-12-31T00:00:00.000Z"),
    reason: "UpToDate",
    dnsOk: true,
    servingOk: true,
    problems: [],
  });

  it("the JSON line carries the served slot and the rollback slot's serial and expiry (ISO)", () => {
    const line = statusLine(facts(), history, now);
    expect(JSON.parse(formatStatusJson(line)).slots).toEqual({ served: B, rollback: { secret: A, serial: "0A", notAfter: "2026-11-30T00:00:00.000Z" } });
  });

  it("the table names the rollback slot in its column; a target that is not ok also says what the rollback slot holds", () => {
    const ok = statusLine(facts(), history, now);
    const failing = statusLine({ ...facts(), fqdn: "api.contoso.test", servingOk: false }, { ...history, fqdn: "api.contoso.test" }, now);
    const first = statusLine({ ...facts(), fqdn: "new.contoso.test", secret: A, slots: { served: A } }, { ...history, fqdn: "new.contoso.test" }, now);
    const text = formatStatusTable([ok, failing, first], now);
    expect(text.split("\n").slice(0, 4)).toEqual([
      "FQDN              SECRET     ROLLBACK   SERIAL  NOT AFTER          DAYS  RENEW AT           LAST RESULT  FAILURES  DNS  SERVING  HEALTH",
      "ml.contoso.test   aml-tls-b  aml-tls-a  0B      2027-01-30T00:00Z  59    2026-12-31T00:00Z  renewed      0         ok   ok       ok",
      "api.contoso.test  aml-tls-b  aml-tls-a  0B      2027-01-30T00:00Z  59    2026-12-31T00:00Z  renewed      0         ok   FAILED   failing",
      "new.contoso.test  aml-tls-a  -          0B      2027-01-30T00:00Z  59    2026-12-31T00:00Z  renewed      0         ok   ok       ok",
    ]);
    expect(text.split("\n\n").slice(1)).toEqual([
      [
        "api.contoso.test: failing",
        "  azureml-fe does not serve the certificate in place",
        "  rollback certificate in slot aml-tls-a: serial 0A, not after 2026-11-30T00:00Z",
        "  last success 2026-11-01T00:00Z (30d ago)",
      ].join("\n"),
    ]);
  });
});
