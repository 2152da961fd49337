import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { describe as describeCert } from "../../src/certs/certificate.js";
import { ANNOTATION, secretFor, type RolloutState } from "../../src/renewal/certificate-version.js";
import { chooseReusable, inPlaceRollout, resolveSlots, versionsToPrune, type ReuseInput } from "../../src/renewal/policies.js";
import type { StoredSecret } from "../../src/ports.js";
import { days, makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);
const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";

let issued: TestLeaf; // notBefore T0-1d, notAfter T0+89d: renewal time T0+59d
let newer: TestLeaf; // notAfter T0+100d
let wrongName: TestLeaf;

beforeAll(async () => {
  const { intermediate } = await makeTestCa("amlcert policies");
  issued = await makeLeaf(intermediate, [FQDN], at(-days(1)), at(days(89)));
  newer = await makeLeaf(intermediate, [FQDN], at(-days(1)), at(days(100)));
  wrongName = await makeLeaf(intermediate, ["www.contoso.test"], at(-days(1)), at(days(89)));
});

const info = (leaf: TestLeaf) => describeCert(new X509Certificate(leaf.leafPem));

function stored(name: string, leaf: TestLeaf, rollout: RolloutState = { state: "pending", failures: 0 }): StoredSecret {
  const w = secretFor({ name, base: BASE, fqdn: FQDN, names: [FQDN], chainPem: leaf.chainPem, keyPem: leaf.keyPem, leaf: info(leaf) }, rollout);
  return { ...w, type: "Opaque" };
}

const input = (candidates: StoredSecret[], over: Partial<ReuseInput> = {}): ReuseInput => ({ candidates, names: [FQDN], now: T0, ...over });

describe("chooseReusable: which stored, never rolled-out certificate a renewal may roll out", () => {
  it("when a stored version is pending and valid, it is picked with its PEM, leaf and failure count", () => {
    const d = chooseReusable(input([stored("v1", issued, { state: "pending", failures: 2 })], { keyType: "ecdsa-p256" }));
    expect(d.rejected).toEqual([]);
    expect(d.pick).toEqual({ name: "v1", chainPem: issued.chainPem, keyPem: issued.keyPem, leaf: info(issued), failures: 2 });
  });

  it("when no candidate is stored, nothing is picked and nothing rejected", () => {
    expect(chooseReusable(input([]))).toEqual({ pick: undefined, rejected: [] });
  });

  it("when the candidate is the secret in place, it is rejected as InPlace", () => {
    const d = chooseReusable(input([stored("v1", issued)], { inPlace: "v1" }));
    expect(d).toEqual({ pick: undefined, rejected: [{ name: "v1", reason: "InPlace" }] });
  });

  it("when the candidate was rolled out before (or is not ours), it is rejected as RolledOutBefore", () => {
    const unannotated = { ...stored("v2", issued), annotations: {} };
    const d = chooseReusable(input([stored("v1", issued, { state: "done", failures: 0 }), unannotated]));
    expect(d.rejected).toEqual([
      { name: "v1", reason: "RolledOutBefore" },
      { name: "v2", reason: "RolledOutBefore" },
    ]);
    expect(d.pick).toBeUndefined();
  });

  it("when the candidate's rollout failed MAX_ROLLOUT_FAILURES times, it is rejected as RolloutRejected", () => {
    const d = chooseReusable(input([stored("v1", issued, { state: "pending", failures: 3 })]));
    expect(d.rejected).toEqual([{ name: "v1", reason: "RolloutRejected" }]);
  });

  it("when the candidate's key is missing, or its certificate is for other names, it is rejected as Unusable", () => {
    const noKey = stored("v1", issued);
    delete noKey.data["key.pem"];
    const noCert = stored("v2", issued);
    delete noCert.data["cert.pem"];
    const d = chooseReusable(input([noKey, noCert, stored("v3", wrongName)]));
    expect(d.rejected).toEqual([
      { name: "v1", reason: "Unusable" },
      { name: "v2", reason: "Unusable" },
      { name: "v3", reason: "Unusable" },
    ]);
    expect(d.pick).toBeUndefined();
  });

  it("when the configured key type differs from the candidate's, it is rejected as OtherKeyType", () => {
    const d = chooseReusable(input([stored("v1", issued)], { keyType: "rsa2048" }));
    expect(d.rejected).toEqual([{ name: "v1", reason: "OtherKeyType" }]);
  });

  it("when the candidate expires no later than the sound certificate in place (equal or earlier), it is rejected as NotNewer", () => {
    const notAfter = info(issued).notAfter;
    const equal = chooseReusable(input([stored("v1", issued)], { mustOutlive: notAfter }));
    expect(equal.rejected).toEqual([{ name: "v1", reason: "NotNewer" }]);
    const later = chooseReusable(input([stored("v1", issued)], { mustOutlive: new Date(notAfter.getTime() + 1) }));
    expect(later.rejected).toEqual([{ name: "v1", reason: "NotNewer" }]);
    const earlier = chooseReusable(input([stored("v1", issued)], { mustOutlive: new Date(notAfter.getTime() - 1) }));
    expect(earlier.pick?.name).toBe("v1");
  });

  it("when the candidate is itself due at its renewal time (or after), it is rejected as Due", () => {
    // renewal time: notBefore + 2/3 of 90 days = T0 + 59 days
    const renewAt = at(days(59));
    expect(chooseReusable(input([stored("v1", issued)], { now: renewAt })).rejected).toEqual([{ name: "v1", reason: "Due" }]);
    expect(chooseReusable(input([stored("v1", issued)], { now: at(days(70)) })).rejected).toEqual([{ name: "v1", reason: "Due" }]);
    expect(chooseReusable(input([stored("v1", issued)], { now: new Date(renewAt.getTime() - 1) })).pick?.name).toBe("v1");
    // renewBefore moves the renewal time: 30 days before expiry = T0 + 59 days too; 10 days before = T0 + 79 days
    expect(chooseReusable(input([stored("v1", issued)], { now: at(days(70)), renewBeforeMs: days(10) })).pick?.name).toBe("v1");
  });

  it("when several candidates are usable, the one expiring last is picked whatever their order", () => {
    for (const order of [
      [stored("old", issued), stored("new", newer)],
      [stored("new", newer), stored("old", issued)],
    ]) {
      expect(chooseReusable(input(order)).pick?.name).toBe("new");
    }
  });

  it("when two usable candidates expire at the same moment, the first listed is kept", () => {
    expect(chooseReusable(input([stored("a", issued), stored("b", issued)])).pick?.name).toBe("a");
  });
});

const version = (name: string, notAfter: string): StoredSecret => ({ name, type: "Opaque", data: {}, labels: {}, annotations: { [ANNOTATION.notAfter]: notAfter } });

describe("versionsToPrune: which older versions to delete", () => {
  const managed = [
    version("v-feb", "2026-02-01T00:00:00.000Z"),
    version("v-apr", "2026-04-01T00:00:00.000Z"),
    version("v-jan", "2026-01-01T00:00:00.000Z"),
    version("v-mar", "2026-03-01T00:00:00.000Z"),
    version("v-new", "2026-08-01T00:00:00.000Z"),
  ];

  it("when only the new version is kept, the newest older ones are kept up to keepPrevious and the rest deleted oldest last", () => {
    expect(versionsToPrune(managed, ["v-new"], 1)).toEqual(["v-mar", "v-feb", "v-jan"]);
    expect(versionsToPrune(managed, ["v-new"], 2)).toEqual(["v-feb", "v-jan"]);
  });

  it("when the replaced version is kept too, it counts towards keepPrevious", () => {
    expect(versionsToPrune(managed, ["v-new", "v-feb"], 1)).toEqual(["v-apr", "v-mar", "v-jan"]);
    expect(versionsToPrune(managed, ["v-new", "v-feb"], 2)).toEqual(["v-mar", "v-jan"]);
  });

  it("when the replaced version named in keep is not stored, it does not count towards keepPrevious", () => {
    expect(versionsToPrune(managed, ["v-new", "gone"], 1)).toEqual(["v-mar", "v-feb", "v-jan"]);
  });

  it("when keepPrevious is 0, every version but the kept ones is deleted", () => {
    expect(versionsToPrune(managed, ["v-new", "v-feb"], 0)).toEqual(["v-apr", "v-mar", "v-jan"]);
  });

  it("when a version has no notAfter annotation, it sorts as the oldest", () => {
    expect(versionsToPrune([version("v-mar", "2026-03-01T00:00:00.000Z"), { ...version("x", ""), annotations: {} }, version("v-new", "2026-08-01T00:00:00.000Z")], ["v-new"], 1)).toEqual(["x"]);
  });
});

describe("inPlaceRollout: was the version the extension names really rolled out?", () => {
  const pending = (failures: number) => stored("v1", issued, { state: "pending", failures });

  it("when no secret is in place, or it was rolled out, it is Confirmed whatever the extension's state", () => {
    expect(inPlaceRollout(undefined, "Failed")).toBe("Confirmed");
    expect(inPlaceRollout(stored("v1", issued, { state: "done", failures: 1 }), "Failed")).toBe("Confirmed");
  });

  it("when it is pending and the extension's last operation Failed or was Canceled (any case), its rollout is Pending", () => {
    expect(inPlaceRollout(pending(1), "Failed")).toBe("Pending");
    expect(inPlaceRollout(pending(0), "canceled")).toBe("Pending");
    expect(inPlaceRollout(pending(2), "CANCELED")).toBe("Pending");
  });

  it("when it is pending but the extension's last operation did not fail, it is Confirmed", () => {
    expect(inPlaceRollout(pending(1), "Succeeded")).toBe("Confirmed");
    expect(inPlaceRollout(pending(1), undefined)).toBe("Confirmed");
    expect(inPlaceRollout(pending(1), "NotFailed")).toBe("Confirmed");
    expect(inPlaceRollout(pending(1), "FailedOver")).toBe("Confirmed");
  });

  it("when its rollout failed MAX_ROLLOUT_FAILURES times, it is Rejected", () => {
    expect(inPlaceRollout(pending(3), "Failed")).toBe("Rejected");
    expect(inPlaceRollout(pending(4), "Failed")).toBe("Rejected");
  });
});

describe("resolveSlots: which slot is served and which one the next certificate goes to", () => {
  const A = `${BASE}-a`;
  const B = `${BASE}-b`;
  const empty = (name: string): StoredSecret => ({ name, type: "Opaque", data: {}, labels: {}, annotations: {} });
  const done = (name: string, leaf = issued) => stored(name, leaf, { state: "done", failures: 0 });
  const pending = (name: string, leaf = newer) => stored(name, leaf, { state: "pending", failures: 1 });

  it("when the extension names a slot and its last operation succeeded, that slot is served and the other is the target", () => {
    expect(resolveSlots({ base: BASE, named: A, provisioningState: "Succeeded", slots: { [A]: done(A), [B]: empty(B) } })).toEqual({ served: A, target: B, reason: "NamedSlot" });
    expect(resolveSlots({ base: BASE, named: B, provisioningState: "Succeeded", slots: { [A]: done(A), [B]: done(B) } })).toEqual({ served: B, target: A, reason: "NamedSlot" });
  });

  it("when the named slot's rollout failed (pending, Failed) and the other was rolled out, Helm kept serving the other: it is served, the failed one is the target", () => {
    expect(resolveSlots({ base: BASE, named: B, provisioningState: "Failed", slots: { [A]: done(A), [B]: pending(B) } })).toEqual({ served: A, target: B, failedRollout: B, reason: "FailedRolloutRolledBack" });
    expect(resolveSlots({ base: BASE, named: B, provisioningState: "Canceled", slots: { [A]: done(A), [B]: pending(B) } })).toMatchObject({ served: A, target: B });
  });

  it("when the named slot's rollout failed and nothing else was ever rolled out, nothing is known served and the other slot is the target (a real change)", () => {
    expect(resolveSlots({ base: BASE, named: A, provisioningState: "Failed", slots: { [A]: pending(A), [B]: empty(B) } })).toEqual({ target: B, failedRollout: A, reason: "FailedRolloutNothingServed" });
  });

  it("when the extension failed for another reason (the named slot was rolled out before), the named slot is still served", () => {
    expect(resolveSlots({ base: BASE, named: A, provisioningState: "Failed", slots: { [A]: done(A), [B]: pending(B) } })).toEqual({ served: A, target: B, reason: "NamedSlot" });
  });

  it("when the extension names a secret that is not a slot, it is served, and the target is a free slot, else one never rolled out, else the one expiring first, else -a", () => {
    const named = "hand-made";
    const at = (slots: Record<string, StoredSecret | undefined>) => resolveSlots({ base: BASE, named, provisioningState: "Succeeded", slots }).target;
    expect(resolveSlots({ base: BASE, named, provisioningState: "Succeeded", slots: { [A]: empty(A), [B]: empty(B) } })).toEqual({ served: named, target: A, reason: "NotASlot" });
    expect(at({ [A]: done(A), [B]: undefined })).toBe(B);
    expect(at({ [A]: done(A), [B]: pending(B) })).toBe(B);
    expect(at({ [A]: pending(A), [B]: done(B) })).toBe(A);
    expect(at({ [A]: done(A, newer), [B]: done(B, issued) })).toBe(B);
    expect(at({ [A]: done(A, issued), [B]: done(B, newer) })).toBe(A);
    expect(at({ [A]: done(A), [B]: done(B) })).toBe(A);
  });

  it("when the extension names nothing, nothing is served and the first free slot is the target", () => {
    expect(resolveSlots({ base: BASE, provisioningState: "Succeeded", slots: { [A]: undefined, [B]: undefined } })).toEqual({ target: A, reason: "NothingNamed" });
    expect(resolveSlots({ base: BASE, provisioningState: "Succeeded", slots: { [A]: done(A), [B]: empty(B) } })).toEqual({ target: B, reason: "NothingNamed" });
  });
});
