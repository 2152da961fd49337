import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ariRenewalTime, certIdOf, parseSuggestedWindow } from "../../src/acme/ari.js";

/** A CA with a known subject key identifier and a leaf with a chosen serial, made by openssl. */
function makePair(dir: string, serialHex: string, aki = true): string {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key");
  run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ari test CA", "-days", "2",
    "-addext", "subjectKeyIdentifier=0102030405060708090a0b0c0d0e0f1011121314", "-addext", "basicConstraints=critical,CA:TRUE", "-out", "ca.pem");
  run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key");
  run("req", "-new", "-key", "leaf.key", "-subj", "/CN=ari.test", "-out", "leaf.csr");
  writeFileSync(join(dir, "leaf.ext"), `subjectAltName=DNS:ari.test\n${aki ? "authorityKeyIdentifier=keyid\n" : "authorityKeyIdentifier=none\nsubjectKeyIdentifier=none\n"}`);
  run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", `0x${serialHex}`, "-days", "1", "-extfile", "leaf.ext", "-out", "leaf.pem");
  return readFileSync(join(dir, "leaf.pem"), "utf8");
}

describe("ARI certID (RFC 9773 section 4.1)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-ari-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("when the serial's high bit is set, the certID keeps the DER's leading zero octet", () => {
    const pem = makePair(dir, "87654321");
    expect(certIdOf(pem)).toBe(`${Buffer.from("0102030405060708090a0b0c0d0e0f1011121314", "hex").toString("base64url")}.${Buffer.from("0087654321", "hex").toString("base64url")}`);
  });

  it("when the serial's high bit is clear, the certID is the serial's octets as they are", () => {
    const pem = makePair(dir, "1234abcd");
    expect(certIdOf(pem)).toBe("AQIDBAUGBwgJCgsMDQ4PEBESExQ.EjSrzQ");
  });

  it("when the certificate has no Authority Key Identifier, there is no certID", () => {
    expect(certIdOf(makePair(dir, "0a", false))).toBeUndefined();
  });
});

describe("ARI window", () => {
  const window = { start: new Date("2030-01-01T00:00:00Z"), end: new Date("2030-01-03T00:00:00Z") };

  it("when the same certificate and window are asked twice, the renewal time is the same, inside the window", () => {
    const a = ariRenewalTime(window, "abc.def");
    expect(ariRenewalTime(window, "abc.def")).toEqual(a);
    expect(a.getTime()).toBeGreaterThanOrEqual(window.start.getTime());
    expect(a.getTime()).toBeLessThan(window.end.getTime());
  });

  it("when certificates differ, their renewal times spread over the window", () => {
    const times = new Set(Array.from({ length: 20 }, (_, i) => ariRenewalTime(window, `cert.${i}`).getTime()));
    expect(times.size).toBe(20);
  });

  it("when the window is a single instant, that is the renewal time", () => {
    expect(ariRenewalTime({ start: window.start, end: window.start }, "x.y")).toEqual(window.start);
  });

  it("when the answer is well formed, the window is read; when end is before start or a field is missing, it is refused", () => {
    expect(parseSuggestedWindow({ suggestedWindow: { start: "2030-01-01T00:00:00Z", end: "2030-01-02T00:00:00Z" }, explanationURL: "https://ca.test/why" })).toEqual({
      start: new Date("2030-01-01T00:00:00Z"),
      end: new Date("2030-01-02T00:00:00Z"),
      explanationURL: "https://ca.test/why",
    });
    expect(parseSuggestedWindow({ suggestedWindow: { start: "2030-01-02T00:00:00Z", end: "2030-01-01T00:00:00Z" } })).toBeUndefined();
    expect(parseSuggestedWindow({ suggestedWindow: { start: "2030-01-02T00:00:00Z" } })).toBeUndefined();
    expect(parseSuggestedWindow("nope")).toBeUndefined();
  });
});
