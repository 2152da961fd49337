import { describe, expect, it } from "vitest";
import { formatStatusJson, formatStatusTable, statusExitCode, statusLine, type StatusFacts } from "../../src/app/status-view.js";
import type { TargetHistory } from "../../src/history/history.js";

const now = new Date("2026-12-01T12:00:00.000Z");

const healthyFacts: StatusFacts = {
  fqdn: "ml.contoso.test",
  secret: "aml-tls-20261101-0000000a",
  serial: "0A1B2C",
  notAfter: new Date("2027-01-30T00:00:00.000Z"),
  renewAt: new Date("2026-12-31T00:00:00.000Z"),
  reason: "UpToDate",
  dnsOk: true,
  servingOk: true,
  problems: [],
};
const healthyHistory: TargetHistory = {
  fqdn: "ml.contoso.test",
  consecutiveFailures: 0,
  lastAction: "renewed",
  lastReason: "InRenewalWindow",
  lastAttempt: "2026-11-01T00:00:00.000Z",
  lastSuccess: "2026-11-01T00:00:00.000Z",
  nextAttempt: "2026-12-02T00:00:00.000Z",
  serial: "0A1B2C",
  dnsOk: true,
  servingOk: true,
};

const acmeRejected = { code: "ACME_REJECTED", stage: "acme-order" as const, message: "the CA refused the order", exitCode: 3 };
const failingFacts: StatusFacts = {
  fqdn: "api.contoso.test",
  secret: "aml-tls-api",
  serial: "0B",
  notAfter: new Date("2026-12-20T00:00:00.000Z"),
  renewAt: new Date("2026-11-30T00:00:00.000Z"),
  reason: "InRenewalWindow",
  problems: [],
};
const failingHistory: TargetHistory = {
  fqdn: "api.contoso.test",
  consecutiveFailures: 2,
  lastAction: "failed",
  lastAttempt: "2026-12-01T06:00:00.000Z",
  lastFailure: "2026-12-01T06:00:00.000Z",
  lastSuccess: "2026-11-20T00:00:00.000Z",
  lastError: acmeRejected,
  nextAttempt: "2026-12-01T18:00:00.000Z",
  dnsOk: true,
  servingOk: true,
};

const forbidden = { code: "KUBE_FORBIDDEN", stage: "preflight", message: 'Kubernetes denied "get" on secrets "aml-tls" in namespace "azureml" (403 Forbidden).' };
const unreadableFacts: StatusFacts = { fqdn: "x.contoso.test", reason: "KUBE_FORBIDDEN", problems: [], error: forbidden };

describe("statusLine", () => {
  it("when the certificate is well before its renewal time and the last run succeeded, the target is ok with exit 0", () => {
    expect(statusLine(healthyFacts, healthyHistory, now)).toEqual({
      fqdn: "ml.contoso.test",
      secret: "aml-tls-20261101-0000000a",
      serial: "0A1B2C",
      notAfter: "2027-01-30T00:00:00.000Z",
      daysLeft: 59,
      renewAt: "2026-12-31T00:00:00.000Z",
      reason: "UpToDate",
      problems: [],
      lastResult: "renewed",
      lastStage: undefined,
      lastError: undefined,
      consecutiveFailures: 0,
      lastSuccess: "2026-11-01T00:00:00.000Z",
      lastFailure: undefined,
      lastAttempt: "2026-11-01T00:00:00.000Z",
      nextAttempt: "2026-12-02T00:00:00.000Z",
      dnsOk: true,
      servingOk: true,
      health: "ok",
      exitCode: 0,
      error: undefined,
    });
  });

  it("when the target has no history yet, it is judged on the facts alone with 0 failures", () => {
    expect(statusLine(healthyFacts, undefined, now)).toMatchObject({ health: "ok", exitCode: 0, consecutiveFailures: 0, lastResult: undefined, lastAttempt: undefined });
  });

  it("when past the renewal time without failures, the target is expiring with exit 3", () => {
    const line = statusLine({ ...failingFacts, dnsOk: true, servingOk: true }, { ...healthyHistory, fqdn: "api.contoso.test" }, now);
    expect(line).toMatchObject({ health: "expiring", exitCode: 3, daysLeft: 18 });
  });

  it("when fewer than 7 days are left, the target is expiring even before its renewal time", () => {
    const facts = { ...healthyFacts, notAfter: new Date("2026-12-08T11:59:59.000Z"), renewAt: new Date("2026-12-07T00:00:00.000Z") };
    expect(statusLine(facts, healthyHistory, now)).toMatchObject({ health: "expiring", exitCode: 3, daysLeft: 6 });
    expect(statusLine({ ...facts, notAfter: new Date("2026-12-08T12:00:00.000Z") }, healthyHistory, now)).toMatchObject({ health: "ok", exitCode: 0, daysLeft: 7 });
  });

  it("when there is no usable certificate in place, the target is expiring with exit 3", () => {
    const facts: StatusFacts = { fqdn: "new.contoso.test", secret: "aml-tls-new", reason: "SecretMissing", dnsOk: true, problems: [] };
    expect(statusLine(facts, undefined, now)).toMatchObject({ health: "expiring", exitCode: 3, daysLeft: undefined, notAfter: undefined });
  });

  it("when the certificate has expired, days left is negative", () => {
    expect(statusLine({ ...healthyFacts, notAfter: new Date("2026-11-30T00:00:00.000Z") }, healthyHistory, now)).toMatchObject({ health: "expiring", daysLeft: -2 });
  });

  it("when the last attempts failed in a renewal stage, the target is failing with exit 3 and the last stage", () => {
    expect(statusLine(failingFacts, failingHistory, now)).toMatchObject({
      health: "failing",
      exitCode: 3,
      consecutiveFailures: 2,
      lastResult: "failed",
      lastStage: "acme-order",
      lastError: acmeRejected,
    });
  });

  it("when the failures are in a check after rollout, the exit code is 4; when also past renewal, 3 outranks it", () => {
    const tls = { ...failingHistory, lastError: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls" as const, message: "old serial served", exitCode: 4 }, servingOk: false };
    expect(statusLine(healthyFacts, { ...tls, fqdn: "ml.contoso.test" }, now)).toMatchObject({ health: "failing", exitCode: 4, lastStage: "verify-tls" });
    expect(statusLine(failingFacts, tls, now)).toMatchObject({ health: "failing", exitCode: 3 });
  });

  it("when failing, the exit code the run recorded for its error is used as is", () => {
    const internal = { ...failingHistory, lastError: { code: "KUBE_ERROR", stage: "store" as const, message: "an SDK error let through", exitCode: 1 } };
    expect(statusLine(failingFacts, internal, now)).toMatchObject({ health: "failing", exitCode: 1 });
  });

  it("when DNS or serving is not ok without a failed run, the target is failing with exit 4; a fresh fact outranks the history's", () => {
    expect(statusLine({ ...healthyFacts, servingOk: false }, healthyHistory, now)).toMatchObject({ health: "failing", exitCode: 4, servingOk: false });
    const unchecked = { ...healthyFacts, dnsOk: undefined, servingOk: undefined };
    expect(statusLine(unchecked, { ...healthyHistory, dnsOk: false }, now)).toMatchObject({ health: "failing", exitCode: 4, dnsOk: false, servingOk: true });
    expect(statusLine(unchecked, undefined, now)).toMatchObject({ health: "ok", exitCode: 0, dnsOk: undefined, servingOk: undefined });
  });

  it("when the last attempt reported an error without action failed, the last result is failed; after a success the error stays but the result does not", () => {
    const notServed = { ...healthyHistory, lastAction: "none" as const, consecutiveFailures: 1, lastFailure: "2026-12-01T06:00:00.000Z", lastAttempt: "2026-12-01T06:00:00.000Z", lastError: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls" as const, message: "x", exitCode: 4 } };
    expect(statusLine(healthyFacts, notServed, now)).toMatchObject({ lastResult: "failed", lastStage: "verify-tls", health: "failing", exitCode: 4 });
    const healed = { ...notServed, consecutiveFailures: 0, lastAttempt: "2026-12-01T08:00:00.000Z", lastSuccess: "2026-12-01T08:00:00.000Z" };
    expect(statusLine(healthyFacts, healed, now)).toMatchObject({ lastResult: "none", lastStage: undefined, lastError: notServed.lastError, lastFailure: "2026-12-01T06:00:00.000Z", health: "ok", exitCode: 0 });
  });

  it("when the facts cannot be read, the target is error with the read error's exit code, and the history's certificate is shown", () => {
    const line = statusLine(unreadableFacts, { ...failingHistory, fqdn: "x.contoso.test", serial: "0C", notAfter: "2026-12-20T00:00:00.000Z", secret: "aml-tls-x" }, now);
    expect(line).toMatchObject({ health: "error", exitCode: 3, error: forbidden, serial: "0C", secret: "aml-tls-x", notAfter: "2026-12-20T00:00:00.000Z", daysLeft: 18, consecutiveFailures: 2 });
    expect(statusLine({ ...unreadableFacts, error: { code: "CONFIG_INVALID", stage: "config", message: "bad kubeconfig" } }, undefined, now)).toMatchObject({ health: "error", exitCode: 2 });
    expect(statusLine({ ...unreadableFacts, error: { code: "INTERNAL", stage: "plan", message: "bug" } }, undefined, now)).toMatchObject({ health: "error", exitCode: 1 });
    expect(statusLine({ ...unreadableFacts, error: { code: "KUBE_ERROR", stage: "no-such-stage", message: "?" } }, undefined, now)).toMatchObject({ health: "error", exitCode: 1 });
  });
});

describe("statusExitCode", () => {
  it("is the worst target's code, with 3 outranking 4", () => {
    const lines = [statusLine(healthyFacts, healthyHistory, now), statusLine({ ...healthyFacts, servingOk: false }, healthyHistory, now), statusLine(failingFacts, failingHistory, now)];
    expect(lines.map((l) => l.exitCode)).toEqual([0, 4, 3]);
    expect(statusExitCode(lines)).toBe(3);
    expect(statusExitCode(lines.slice(0, 2))).toBe(4);
    expect(statusExitCode([])).toBe(0);
  });
});

describe("formatStatusTable", () => {
  it("prints aligned columns, one row per target, then what is wrong with each target that is not ok", () => {
    const lines = [
      statusLine(healthyFacts, healthyHistory, now),
      statusLine({ ...failingFacts, problems: ["DNS: api.contoso.test resolves to 10.0.0.9, not 20.1.2.3"] }, failingHistory, now),
      statusLine(unreadableFacts, undefined, now),
    ];
    expect(formatStatusTable(lines, now)).toBe(
      [
        "FQDN              SECRET                     ROLLBACK  SERIAL  NOT AFTER          DAYS  RENEW AT           LAST RESULT           FAILURES  DNS  SERVING  HEALTH",
        "ml.contoso.test   aml-tls-20261101-0000000a  -         0A1B2C  2027-01-30T00:00Z  59    2026-12-31T00:00Z  renewed               0         ok   ok       ok",
        "api.contoso.test  aml-tls-api                -         0B      2026-12-20T00:00Z  18    2026-11-30T00:00Z  failed at acme-order  2         ok   ok       failing",
        "x.contoso.test    -                          -         -       -                  -     -                  -                     0         -    -        error",
        "",
        "api.contoso.test: failing",
        "  2 attempts in a row failed, the last at acme-order (ACME_REJECTED): the CA refused the order",
        "  due for renewal since 2026-11-30T00:00Z (36h ago)",
        "  last success 2026-11-20T00:00Z (11d ago); next attempt 2026-12-01T18:00Z (in 6h)",
        "  problem: DNS: api.contoso.test resolves to 10.0.0.9, not 20.1.2.3",
        "",
        "x.contoso.test: error",
        '  cannot read the current state, preflight (KUBE_FORBIDDEN): Kubernetes denied "get" on secrets "aml-tls" in namespace "azureml" (403 Forbidden).',
        "  no attempt recorded yet",
      ].join("\n"),
    );
  });

  it("says why an expiring or unserved target is not ok, and how long ago it last succeeded", () => {
    const expiring = statusLine({ ...healthyFacts, notAfter: new Date("2026-12-05T00:00:00.000Z"), renewAt: new Date("2026-12-04T00:00:00.000Z"), servingOk: false }, { ...healthyHistory, nextAttempt: undefined }, now);
    const none = statusLine({ fqdn: "new.contoso.test", reason: "SecretMissing", problems: [] }, { fqdn: "new.contoso.test", consecutiveFailures: 0, lastAction: "skipped", lastAttempt: "2026-12-01T11:59:30.000Z" }, now);
    const text = formatStatusTable([expiring, none], now);
    expect(text.split("\n\n").slice(1)).toEqual([
      [
        "ml.contoso.test: failing",
        "  expires 2026-12-05T00:00Z (in 3d)",
        "  azureml-fe does not serve the certificate in place",
        "  last success 2026-11-01T00:00Z (30d ago)",
      ].join("\n"),
      ["new.contoso.test: expiring", "  no usable certificate in place (SecretMissing)", "  no success recorded"].join("\n"),
    ]);
    expect(text.split("\n")[2]).toBe("new.contoso.test  -                          -         -       -                  -     -                  skipped      0         -    -        expiring");
  });

  it("with no targets, prints the header only", () => {
    expect(formatStatusTable([], now)).toBe("FQDN  SECRET  ROLLBACK  SERIAL  NOT AFTER  DAYS  RENEW AT  LAST RESULT  FAILURES  DNS  SERVING  HEALTH");
  });
});

describe("formatStatusJson", () => {
  it("prints one JSON object per target with the StatusLine's fields, leaving out what is unknown", () => {
    const line = statusLine(failingFacts, failingHistory, now);
    expect(JSON.parse(formatStatusJson(line))).toEqual({
      fqdn: "api.contoso.test",
      secret: "aml-tls-api",
      serial: "0B",
      notAfter: "2026-12-20T00:00:00.000Z",
      daysLeft: 18,
      renewAt: "2026-11-30T00:00:00.000Z",
      reason: "InRenewalWindow",
      problems: [],
      lastResult: "failed",
      lastStage: "acme-order",
      lastError: { code: "ACME_REJECTED", stage: "acme-order", message: "the CA refused the order", exitCode: 3 },
      consecutiveFailures: 2,
      lastSuccess: "2026-11-20T00:00:00.000Z",
      lastFailure: "2026-12-01T06:00:00.000Z",
      lastAttempt: "2026-12-01T06:00:00.000Z",
      nextAttempt: "2026-12-01T18:00:00.000Z",
      dnsOk: true,
      servingOk: true,
      health: "failing",
      exitCode: 3,
    });
    expect(formatStatusJson(line)).not.toContain("\n");
  });
});
