import { describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { createLogger, scrub } from "../../src/observability/logger.js";
import { AmlcertError } from "../../src/errors.js";

function capture() {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { logger: createLogger({ format: "json", destination, level: "debug" }), text: () => chunks.join("") };
}

const KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbWxjZXJ0In0.c2lnbmF0dXJlc2lnbmF0dXJl";

describe("logger", () => {
  it("when key material, tokens or the EAB HMAC are logged by field, they are redacted", () => {
    const { logger, text } = capture();
    logger.info({ keyPem: KEY, eab: { hmacKey: "c2VjcmV0LWhtYWM" }, token: JWT, headers: { authorization: `Bearer ${JWT}` } }, "issuing");
    const out = text();
    expect(out).not.toContain("MIGHAgEAMBMG");
    expect(out).not.toContain("c2VjcmV0LWhtYWM");
    expect(out).not.toContain("eyJzdWIi");
    expect(out).toContain("[REDACTED]");
  });

  it("when a private key or a JWT hides inside a message or an error, it is scrubbed", () => {
    const { logger, text } = capture();
    logger.warn(`unexpected body ${KEY}`);
    logger.error({ err: new AmlcertError("AZURE_AUTH", "preflight", `token ${JWT} refused`, { cause: new Error(`Bearer ${"x".repeat(40)}`) }) }, "failed");
    const out = text();
    expect(out).not.toContain("MIGHAgEAMBMG");
    expect(out).not.toContain("eyJzdWIi");
    expect(out).not.toContain("x".repeat(40));
    expect(out).toContain('"code":"AZURE_AUTH"');
    expect(out).toContain('"stage":"preflight"');
  });

  it("scrub leaves ordinary text alone", () => {
    expect(scrub("serial 0A1B, _acme-challenge.ml.contoso.test")).toBe("serial 0A1B, _acme-challenge.ml.contoso.test");
  });
});
