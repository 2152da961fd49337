import { describe, expect, it } from "vitest";
import { formatPlanLine, formatRenewResult } from "../../src/app/present.js";

const base = { fqdn: "ml.contoso.test", extensionUpdated: true, dnsOk: true, servingOk: true, durationMs: 1234 };

describe("terminal output", () => {
  it("a renewal says what was stored, until when, and whether DNS and serving were verified", () => {
    expect(formatRenewResult({ ...base, action: "renewed", reason: "InRenewalWindow", serial: "0A", notAfter: "2027-01-01T00:00:00.000Z", secret: "aml-tls-20261129-0000000a" })).toBe(
      "ml.contoso.test: renewed (InRenewalWindow) serial 0A, valid until 2027-01-01T00:00:00.000Z, secret aml-tls-20261129-0000000a; DNS ok, serving ok [1.2s]",
    );
  });

  it("a failure names the stage and the code, and where the new certificate is if one was stored", () => {
    const line = formatRenewResult({ ...base, action: "failed", reason: "Forced", secret: "aml-tls-x", storedSecret: "aml-tls-x", servingOk: false, error: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", message: "old serial", exitCode: 4 } });
    expect(line).toBe("ml.contoso.test: FAILED at verify-tls (TLS_OLD_CERT_SERVED): old serial [new certificate stored in aml-tls-x]");
  });

  it("a failure before anything was stored names no stored certificate", () => {
    const line = formatRenewResult({ ...base, action: "failed", reason: "InRenewalWindow", secret: "aml-tls", extensionUpdated: false, servingOk: false, error: { code: "ACME_REJECTED", stage: "acme-order", message: "rejected", exitCode: 3 } });
    expect(line).toBe("ml.contoso.test: FAILED at acme-order (ACME_REJECTED): rejected");
  });

  it("a plan line gives the decision, the current secret and each warning on its own line", () => {
    const line = formatPlanLine({ fqdn: "ml.contoso.test", action: "renew", reason: "KeyMismatch", message: "key.pem does not match", secret: "aml-tls", serial: "0B", warnings: ["DNS: x"], exitCode: 0 });
    expect(line).toBe("ml.contoso.test: would renew (KeyMismatch): key.pem does not match; current secret aml-tls, serial 0B\n  warning: DNS: x");
  });
});
