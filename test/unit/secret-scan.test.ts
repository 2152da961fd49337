/**
 * The secret scan (test/support/secret-scan.ts) finds each kind of leak, in plain text and in JSON log lines, and
 * stays quiet on what amlcert logs on purpose (certificates, redaction markers, prose about tokens). This is the
 * proof that the scan after the suite (scripts/test.sh, test/scan/) can fail.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cliLogDir, formatFindings, knownSecrets, recordKnownSecrets, scanLogDir, scanText, teeCliOutput } from "../support/secret-scan.js";
import { scrub } from "../../src/observability/logger.js";

const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
const pkcs8Pem = ec.export({ format: "pem", type: "pkcs8" }).toString();
const sec1Pem = ec.export({ format: "pem", type: "sec1" }).toString();
const rsaPkcs1Pem = rsa.export({ format: "pem", type: "pkcs1" }).toString();
const derB64 = (type: "pkcs8" | "pkcs1" | "sec1", key = ec) => key.export({ format: "der", type } as never).toString("base64");
const JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNhIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";
const CERT = `-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVzIGFyZSBwdWJsaWMwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n`;

const kinds = (text: string, known: string[] = []) => scanText(text, known).map((f) => f.kind);
const jsonLine = (o: object) => JSON.stringify({ level: 50, time: "2026-12-02T03:00:00.000Z", name: "amlcert", ...o });

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "amlcert-scan-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("scanText finds", () => {
  it("a PEM private key of any label (PKCS#8, SEC1, PKCS#1, encrypted), in plain text and inside a JSON line with escaped newlines", () => {
    expect(kinds(`oops ${pkcs8Pem}`)).toContain("pem-private-key");
    expect(kinds(sec1Pem)).toContain("pem-private-key");
    expect(kinds(rsaPkcs1Pem)).toContain("pem-private-key");
    expect(kinds("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF")).toEqual(["pem-private-key"]);
    expect(kinds(jsonLine({ msg: "stored", detail: pkcs8Pem }))).toContain("pem-private-key");
  });

  it("a base64 DER private key without PEM armour (PKCS#8, SEC1, PKCS#1), even inside other base64 text or wrapped in lines", () => {
    expect(kinds(`key=${derB64("pkcs8")}`)).toEqual(["der-private-key"]);
    expect(kinds(derB64("sec1"))).toEqual(["der-private-key"]);
    expect(kinds(`x ${derB64("pkcs1", rsa)} y`)).toEqual(["der-private-key"]);
    expect(kinds(`AAAABBBB${derB64("pkcs8")}CCCC`)).toEqual(["der-private-key"]);
    const wrapped = derB64("pkcs1", rsa).match(/.{1,64}/g)!.join("\n");
    expect(kinds(wrapped)).toEqual(["der-private-key"]);
    expect(kinds(jsonLine({ msg: "x", body: wrapped }))).toEqual(["der-private-key"]);
  });

  it("a base64-wrapped PEM key, as kubeconfig client-key-data or a Secret's data hold it, at any alignment", () => {
    for (const prefix of ["", "a", "ab", "abc"]) {
      const b64 = Buffer.from(`${prefix}${pkcs8Pem}`).toString("base64");
      expect(kinds(`data: ${b64}`)).toContain("base64-pem-private-key");
    }
    expect(kinds(jsonLine({ data: { "key.pem": Buffer.from(sec1Pem).toString("base64") } }))).toContain("base64-pem-private-key");
  });

  it("a JWT, a bearer token, an Entra client secret and a credential field with a value", () => {
    expect(kinds(`assertion ${JWT}`)).toEqual(["jwt"]);
    expect(kinds("Authorization: Bearer abcdefghijklmnop0123")).toEqual(["bearer-token"]);
    expect(kinds("client secret aB3~ is not one, but xY78Q~abcdefghijklmnopqrstuvwxyz0123456 is")).toEqual(["azure-client-secret"]);
    expect(kinds(`user:\n  token: admin-0123456789abcdef0123456789abcdef`)).toEqual(["credential-field"]);
    expect(kinds(jsonLine({ user: { token: "sa-0123456789abcdef0123" } }))).toEqual(["credential-field"]);
  });

  it("an exact secret the harness handed out (an EAB HMAC key, a kube token), wherever it appears", () => {
    const hmac = Buffer.from("amlcert-e2e-eab-hmac-key-0123456789abcdef").toString("base64url");
    expect(kinds(`registering with ${hmac}!`, [hmac])).toEqual(["known-secret"]);
    expect(kinds(jsonLine({ msg: `with ${hmac}` }), [hmac])).toEqual(["known-secret"]);
  });
});

describe("scanText stays quiet on", () => {
  it("certificates, their base64 and the logger's redaction markers", () => {
    expect(scanText(CERT)).toEqual([]);
    expect(scanText(Buffer.from(CERT).toString("base64"))).toEqual([]);
    expect(scanText(jsonLine({ keyPem: "[REDACTED]", token: "[REDACTED]", msg: "Bearer [REDACTED] then [REDACTED PRIVATE KEY] and [REDACTED TOKEN]" }))).toEqual([]);
  });

  it("whatever the logger's scrub leaves of a key, a JWT or a bearer token", () => {
    expect(scanText(scrub(`a ${pkcs8Pem} b ${JWT} c Bearer ${"x".repeat(40)}`))).toEqual([]);
  });

  it("prose about tokens and passwords, and the names of settings", () => {
    expect(scanText("the workload-identity token: exchanged at Entra ID; password: must not be empty; acme.eab.hmacKeyFile: /run/eab is empty")).toEqual([]);
  });

  it("a secret the harness recorded but that is not in the text", () => {
    expect(scanText("nothing here", ["sa-token-0123456789"])).toEqual([]);
  });
});

describe("the log directory", () => {
  it("teeCliOutput keeps each child's stdout and stderr in their own files, and the command line", () => {
    const dir = tempDir();
    const tee = teeCliOutput(["renew", "--config", "/x.yaml"], dir);
    tee.stderr('{"msg":"one"}\n');
    tee.stderr('{"msg":"two"}\n');
    tee.stdout('{"fqdn":"ml.contoso.test"}\n');
    const files = readdirSync(dir).sort();
    expect(files.map((f) => f.replace(/^.*-renew/, "renew"))).toEqual(["renew.cmd", "renew.stderr.log", "renew.stdout.log"]);
    expect(readFileSync(join(dir, files[1]!), "utf8")).toBe('{"msg":"one"}\n{"msg":"two"}\n');
    expect(readFileSync(join(dir, files[0]!), "utf8")).toBe("renew --config /x.yaml\n");
  });

  it("when a kept log leaks a key, scanLogDir reports the file, the line and the kind, and never the key itself", () => {
    const dir = tempDir();
    const clean = teeCliOutput(["plan"], dir);
    clean.stderr(`${jsonLine({ msg: "plan", fqdn: "ml.contoso.test" })}\n`);
    const leaky = teeCliOutput(["renew"], dir);
    leaky.stderr(`${jsonLine({ msg: "first" })}\n`);
    leaky.stderr(`${jsonLine({ msg: "stored", extra: pkcs8Pem })}\n`);
    const result = scanLogDir(dir);
    expect(result.files).toBe(2);
    // the armour, and the key inside it read as base64 DER
    expect(result.findings.map((f) => [f.kind, f.line])).toEqual([
      ["pem-private-key", 2],
      ["der-private-key", 2],
    ]);
    expect(result.findings[0]!.file).toMatch(/-renew\.stderr\.log$/);
    const report = formatFindings(result.findings);
    expect(report.split("\n")[0]).toMatch(/-renew\.stderr\.log:2: pem-private-key: -----BEGIN PRIVATE KEY-----$/);
    expect(report.split("\n")[1]).toMatch(/-renew\.stderr\.log:2: der-private-key: MIGHAg\.\.\. \(\d+ chars\)$/);
    expect(report).not.toContain(pkcs8Pem.split("\n")[1]!);
  });

  it("a secret recorded by the harness is searched for in every file; a directory that does not exist has nothing to report", () => {
    const dir = tempDir();
    recordKnownSecrets(["kube-sa-token-0123456789", "short", undefined], dir);
    expect(knownSecrets(dir)).toEqual(["kube-sa-token-0123456789"]);
    teeCliOutput(["status"], dir).stdout("status of kube-sa-token-0123456789\n");
    expect(scanLogDir(dir).findings.map((f) => [f.kind, f.line])).toEqual([["known-secret", 1]]);
    expect(scanLogDir(join(dir, "missing"))).toEqual({ files: 0, lines: 0, findings: [] });
  });

  it("the directory is $AMLCERT_TEST_LOG_DIR when set, else .cache/cli-logs in the project", () => {
    expect(cliLogDir({ AMLCERT_TEST_LOG_DIR: "/tmp/x" })).toBe("/tmp/x");
    expect(cliLogDir({})).toMatch(/\/\.cache\/cli-logs$/);
  });
});
