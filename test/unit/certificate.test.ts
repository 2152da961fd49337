import { beforeAll, describe, expect, it } from "vitest";
import { inspectPair, parsePrivateKey, sanCovers, validateNewPair, describeProblem } from "../../src/certs/certificate.js";
import { days, encryptKey, makeLeaf, makeTestCa, sec1Key, type TestIssuer, type TestLeaf } from "../support/certs.js";

const now = new Date();
let intermediate: TestIssuer;
let good: TestLeaf;
let other: TestLeaf;

beforeAll(async () => {
  ({ intermediate } = await makeTestCa());
  good = await makeLeaf(intermediate, ["ml.contoso.test", "api.contoso.test"], new Date(now.getTime() - days(1)), new Date(now.getTime() + days(89)));
  other = await makeLeaf(intermediate, ["ml.contoso.test"], new Date(now.getTime() - days(1)), new Date(now.getTime() + days(89)));
});

describe("inspectPair", () => {
  it("when the pair is a full chain with its own unencrypted PKCS#8 key covering the names, reports no problem", () => {
    const r = inspectPair(good.chainPem, good.keyPem, ["ml.contoso.test", "api.contoso.test"]);
    expect(r.problems).toEqual([]);
    expect(r.leaf?.serialNumber).toBe(good.serialNumber);
    expect(r.leaf?.dnsNames).toEqual(["ml.contoso.test", "api.contoso.test"]);
    expect(r.leaf?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("when the key belongs to another certificate, reports a key mismatch", () => {
    const r = inspectPair(good.chainPem, other.keyPem, ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "key-mismatch" }]);
  });

  it("when the key is passphrase-protected, reports it as encrypted", () => {
    const r = inspectPair(good.chainPem, encryptKey(good.keyPem), ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "key", problem: "encrypted" }]);
    expect(describeProblem(r.problems[0]!)).toContain("passphrase-protected");
  });

  it("when the key is unencrypted SEC1 rather than PKCS#8, it still parses and matches, and is reported as not-pkcs8", () => {
    expect(parsePrivateKey(sec1Key(good.keyPem))).toMatchObject({ pkcs8: false });
    expect(inspectPair(good.chainPem, sec1Key(good.keyPem), ["ml.contoso.test"]).problems).toEqual([{ kind: "key", problem: "not-pkcs8" }]);
  });

  it("a new pair with a SEC1 key is refused before any write (Azure ML gets PKCS#8 from amlcert)", () => {
    expect(validateNewPair(good.chainPem, sec1Key(good.keyPem), ["ml.contoso.test"], now).problems).toEqual([{ kind: "key", problem: "not-pkcs8" }]);
  });

  it("when the intermediate comes before the leaf, reports the chain order", () => {
    const r = inspectPair(intermediate.pem + good.leafPem, good.keyPem, ["ml.contoso.test"]);
    expect(r.problems.map((p) => p.kind)).toContain("chain");
    expect(r.problems.find((p) => p.kind === "chain")).toMatchObject({ problem: "order" });
  });

  it("when only the leaf is present, reports an incomplete chain", () => {
    const r = inspectPair(good.leafPem, good.keyPem, ["ml.contoso.test"]);
    expect(r.problems).toEqual([expect.objectContaining({ kind: "chain", problem: "incomplete" })]);
  });

  it("when cert.pem is garbage, reports it unparsable and names the file", () => {
    const r = inspectPair("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", good.keyPem, ["x"]);
    expect(r.problems[0]).toMatchObject({ kind: "cert-unparsable" });
    expect(describeProblem(r.problems[0]!)).toMatch(/^cert\.pem: certificate #1/);
    expect(inspectPair("hello", "world", ["x"]).problems.map((p) => p.kind)).toEqual(["cert-unparsable", "key"]);
  });

  it("when a wanted name is not among the SANs, names the missing name", () => {
    const r = inspectPair(good.chainPem, good.keyPem, ["ml.contoso.test", "www.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "names", missing: ["www.contoso.test"] }]);
  });
});

describe("validateNewPair", () => {
  it("when the candidate does not expire later than the certificate in place, refuses it as not newer", () => {
    const r = validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, new Date(now.getTime() + days(100)));
    expect(r.problems).toEqual([expect.objectContaining({ kind: "not-newer" })]);
  });

  it("when the candidate is already expired, refuses it", async () => {
    const old = await makeLeaf(intermediate, ["ml.contoso.test"], new Date(now.getTime() - days(100)), new Date(now.getTime() - days(10)));
    expect(validateNewPair(old.chainPem, old.keyPem, ["ml.contoso.test"], now).problems.map((p) => p.kind)).toEqual(["expired"]);
  });

  it("when the candidate is good and newer, accepts it", () => {
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, new Date(now.getTime() + days(5))).problems).toEqual([]);
  });
});

describe("sanCovers", () => {
  it.each([
    ["a.example.com", "a.example.com", true],
    ["*.example.com", "a.example.com", true],
    ["*.example.com", "example.com", false],
    ["*.example.com", "a.b.example.com", false],
    ["A.Example.com", "a.example.COM", true],
  ])("%s covers %s: %s", (pattern, name, expected) => {
    expect(sanCovers(pattern, name)).toBe(expected);
  });
});
