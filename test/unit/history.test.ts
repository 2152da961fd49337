import { describe, expect, it } from "vitest";
import type { TargetHistory } from "../../src/history/history.js";
import { decodeHistory, encodeHistory, isFailure, MAX_ERROR_MESSAGE, nextHistory } from "../../src/history/record.js";
import type { TargetOutcome } from "../../src/renewal/events.js";

const FQDN = "ml.contoso.test";
const t0 = new Date("2026-11-01T00:00:00.000Z");
const t1 = new Date("2026-11-02T00:00:00.000Z");
const t2 = new Date("2026-11-03T00:00:00.000Z");
const t3 = new Date("2026-11-04T00:00:00.000Z");

const outcome = (o: Partial<TargetOutcome> & Pick<TargetOutcome, "action">): TargetOutcome => ({
  fqdn: FQDN,
  reason: "UpToDate",
  extensionUpdated: false,
  dnsOk: true,
  servingOk: true,
  durationMs: 1200,
  ...o,
});

const renewed = outcome({
  action: "renewed",
  reason: "InRenewalWindow",
  serial: "0A",
  notBefore: "2026-11-01T00:00:00.000Z",
  notAfter: "2027-01-30T00:00:00.000Z",
  renewAt: "2026-12-31T00:00:00.000Z",
  secret: "aml-tls-20261101-0000000a",
  extensionUpdated: true,
});
const acmeRejected = { code: "ACME_REJECTED", stage: "acme-order" as const, message: "the CA refused the order", exitCode: 3 };
const failed = outcome({ action: "failed", reason: "InRenewalWindow", dnsOk: true, servingOk: false, error: acmeRejected });

describe("nextHistory", () => {
  it("when a target has no history and its first run renews, records a success with the new certificate", () => {
    expect(nextHistory(undefined, renewed, t0, t1)).toEqual({
      fqdn: FQDN,
      lastAttempt: "2026-11-01T00:00:00.000Z",
      lastSuccess: "2026-11-01T00:00:00.000Z",
      lastAction: "renewed",
      lastReason: "InRenewalWindow",
      consecutiveFailures: 0,
      nextAttempt: "2026-11-02T00:00:00.000Z",
      serial: "0A",
      notBefore: "2026-11-01T00:00:00.000Z",
      notAfter: "2027-01-30T00:00:00.000Z",
      renewAt: "2026-12-31T00:00:00.000Z",
      secret: "aml-tls-20261101-0000000a",
      dnsOk: true,
      servingOk: true,
    } satisfies TargetHistory);
  });

  it("when runs fail, each one increments consecutiveFailures, keeps lastSuccess and the certificate, and records the error", () => {
    const h0 = nextHistory(undefined, renewed, t0);
    const h1 = nextHistory(h0, failed, t1);
    const h2 = nextHistory(h1, { ...failed, error: { code: "AZURE_THROTTLED", stage: "dns-challenge", message: "429", exitCode: 3 } }, t2);
    expect(h1).toMatchObject({ consecutiveFailures: 1, lastSuccess: t0.toISOString(), lastFailure: t1.toISOString(), lastAction: "failed", lastError: acmeRejected });
    expect(h2).toEqual({
      ...h0,
      lastAttempt: t2.toISOString(),
      lastFailure: t2.toISOString(),
      lastAction: "failed",
      consecutiveFailures: 2,
      lastError: { code: "AZURE_THROTTLED", stage: "dns-challenge", message: "429", exitCode: 3 },
      servingOk: false,
    });
  });

  it("when a run succeeds after failures, the count goes back to 0 and the last error stays, dated by lastFailure", () => {
    const failing = nextHistory(nextHistory(nextHistory(undefined, renewed, t0), failed, t1), failed, t2);
    expect(failing.consecutiveFailures).toBe(2);
    const healed = nextHistory(failing, outcome({ action: "none", reason: "UpToDate", serial: "0A" }), t3);
    expect(healed).toMatchObject({ consecutiveFailures: 0, lastSuccess: t3.toISOString(), lastFailure: t2.toISOString(), lastError: acmeRejected, lastAction: "none" });
  });

  it("when another run held the lock (skipped), neither counter, the checks nor the certificate change", () => {
    const failing = nextHistory(nextHistory(undefined, renewed, t0), failed, t1);
    const skipped = nextHistory(failing, outcome({ action: "skipped", reason: "LockHeld", dnsOk: false, servingOk: false }), t2);
    expect(skipped).toEqual({ ...failing, lastAttempt: t2.toISOString(), lastAction: "skipped", lastReason: "LockHeld" });
    expect(nextHistory(undefined, outcome({ action: "skipped", reason: "LockHeld" }), t2)).toEqual({
      fqdn: FQDN,
      consecutiveFailures: 0,
      lastAttempt: t2.toISOString(),
      lastAction: "skipped",
      lastReason: "LockHeld",
    });
  });

  it("when a run without a renewal reports an error (the certificate in place is not served), it counts as a failure", () => {
    const h0 = nextHistory(undefined, renewed, t0);
    const notServed = outcome({ action: "none", serial: "0A", servingOk: false, error: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls", message: "old serial served", exitCode: 4 } });
    expect(isFailure(notServed)).toBe(true);
    expect(nextHistory(h0, notServed, t1)).toMatchObject({ consecutiveFailures: 1, lastSuccess: t0.toISOString(), lastAction: "none", servingOk: false });
    expect(isFailure(outcome({ action: "none" }))).toBe(false);
    expect(isFailure(outcome({ action: "skipped", error: acmeRejected }))).toBe(false);
  });

  it("when the outcome carries a new serial, the previous certificate's facts are replaced, not mixed in", () => {
    const h0 = nextHistory(undefined, renewed, t0);
    const next = nextHistory(h0, outcome({ action: "renewed", serial: "0B", notAfter: "2027-03-01T00:00:00.000Z", secret: "aml-tls-0b" }), t1);
    expect(next).toMatchObject({ serial: "0B", notAfter: "2027-03-01T00:00:00.000Z", secret: "aml-tls-0b" });
    expect(next.renewAt).toBeUndefined();
    expect(next.notBefore).toBeUndefined();
  });

  it("when the outcome carries no certificate facts (a failure before planning), the recorded certificate is kept", () => {
    const h0 = nextHistory(undefined, renewed, t0);
    const next = nextHistory(h0, outcome({ action: "failed", reason: "AZURE_AUTH", dnsOk: false, servingOk: false, error: { code: "AZURE_AUTH", stage: "preflight", message: "no token", exitCode: 3 } }), t1);
    expect(next).toMatchObject({ serial: "0A", notBefore: h0.notBefore, notAfter: h0.notAfter, renewAt: h0.renewAt, secret: h0.secret, dnsOk: false, servingOk: false });
  });

  it("when no next attempt is given, a previously planned one is dropped as stale", () => {
    const h0 = nextHistory(undefined, renewed, t0, t1);
    expect(nextHistory(h0, renewed, t1).nextAttempt).toBeUndefined();
    expect(nextHistory(h0, renewed, t1, t3).nextAttempt).toBe(t3.toISOString());
  });

  it("when the error message is long or holds a token, the recorded one is capped and scrubbed", () => {
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbWxjZXJ0In0.c2lnbmF0dXJl";
    const long = nextHistory(undefined, outcome({ action: "failed", error: { code: "ACME_ERROR", stage: "acme-order", message: "x".repeat(5000), exitCode: 3 } }), t0);
    expect(long.lastError!.message).toHaveLength(MAX_ERROR_MESSAGE);
    expect(long.lastError!.message.endsWith("…")).toBe(true);
    const leaky = nextHistory(undefined, outcome({ action: "failed", error: { code: "AZURE_AUTH", stage: "preflight", message: `token ${jwt} refused`, exitCode: 3 } }), t0);
    expect(leaky.lastError!.message).toBe("token [REDACTED TOKEN] refused");
  });
});

describe("encodeHistory / decodeHistory", () => {
  const full = nextHistory(nextHistory(undefined, renewed, t0, t1), failed, t1, t2);

  it("when a history is encoded, it decodes to the same history", () => {
    expect(decodeHistory(FQDN, encodeHistory(full))).toEqual({ history: full });
    expect(JSON.parse(encodeHistory(full))).toEqual(full);
  });

  it("when the stored text is not a history amlcert wrote, the problem is named instead of throwing", () => {
    expect(decodeHistory(FQDN, "{not json")).toMatchObject({ problem: expect.stringMatching(/^not JSON \(/) });
    expect(decodeHistory(FQDN, "[]")).toEqual({ problem: "not a JSON object" });
    expect(decodeHistory(FQDN, "null")).toEqual({ problem: "not a JSON object" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":-1}')).toEqual({ problem: "consecutiveFailures is not a non-negative integer" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":"2"}')).toEqual({ problem: "consecutiveFailures is not a non-negative integer" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":0,"lastSuccess":"yesterday"}')).toEqual({ problem: "lastSuccess is not a timestamp" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":0,"dnsOk":"yes"}')).toEqual({ problem: "dnsOk is not a boolean" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":0,"lastAction":"exploded"}')).toEqual({ problem: "lastAction is not one of renewed, none, skipped, failed" });
    expect(decodeHistory(FQDN, '{"consecutiveFailures":0,"lastError":"boom"}')).toEqual({ problem: "lastError is not an object with code, stage and message" });
    expect(decodeHistory(FQDN, '{"fqdn":"other.contoso.test","consecutiveFailures":0}')).toEqual({ problem: 'it is the history of "other.contoso.test"' });
  });

  it("when a stored error has no exit code (written before it was recorded), it is derived from code and stage", () => {
    const text = (error: object) => JSON.stringify({ consecutiveFailures: 1, lastError: error });
    expect(decodeHistory(FQDN, text({ code: "DNS_MISMATCH", stage: "verify-dns", message: "m" }))).toEqual({
      history: { fqdn: FQDN, consecutiveFailures: 1, lastError: { code: "DNS_MISMATCH", stage: "verify-dns", message: "m", exitCode: 4 } },
    });
    expect(decodeHistory(FQDN, text({ code: "CONFIG_INVALID", stage: "config", message: "m" }))).toMatchObject({ history: { lastError: { exitCode: 2 } } });
    expect(decodeHistory(FQDN, text({ code: "INTERNAL", stage: "plan", message: "m" }))).toMatchObject({ history: { lastError: { exitCode: 1 } } });
    expect(decodeHistory(FQDN, text({ code: "ACME_ERROR", stage: "a-later-stage", message: "m" }))).toMatchObject({ history: { lastError: { stage: "a-later-stage", exitCode: 1 } } });
  });

  it("when the stored text has fields this version does not know, they are dropped and the rest is read", () => {
    expect(decodeHistory(FQDN, '{"consecutiveFailures":3,"serial":"0C","futureField":{"a":1}}')).toEqual({ history: { fqdn: FQDN, consecutiveFailures: 3, serial: "0C" } });
  });

  it("keeps the rate-limit state, the issuance list and the journal through encode and decode", () => {
    const h: TargetHistory = {
      fqdn: FQDN,
      consecutiveFailures: 1,
      lastError: { code: "ACME_RATE_LIMITED", stage: "acme-order", message: "429", exitCode: 3, retryAt: "2026-11-02T06:00:00.000Z" },
      retryNotBefore: "2026-11-02T06:00:00.000Z",
      issued: [{ at: "2026-11-01T00:00:00.000Z", names: FQDN }],
      journal: {
        holder: "pod-a/7",
        txt: [{ record: `_acme-challenge.${FQDN}`, zone: "contoso.test", value: "v1" }],
        order: { names: FQDN, at: "2026-11-01T00:00:00.000Z" },
        stored: { secret: "aml-tls-b", serial: "0B", at: "2026-11-01T00:01:00.000Z" },
      },
    };
    expect(decodeHistory(FQDN, encodeHistory(h))).toEqual({ history: h });
  });

  it("when the journal or the issuance list is not what amlcert writes, the problem is named", () => {
    const text = (o: object) => JSON.stringify({ consecutiveFailures: 0, ...o });
    expect(decodeHistory(FQDN, text({ journal: [] }))).toEqual({ problem: "journal is not an object" });
    expect(decodeHistory(FQDN, text({ journal: { txt: [{ record: "r", zone: "z" }] } }))).toEqual({ problem: "journal.txt has an entry without record, zone and value" });
    expect(decodeHistory(FQDN, text({ journal: { txt: Array.from({ length: 201 }, () => ({ record: "r", zone: "z", value: "v" })) } }))).toEqual({ problem: "journal.txt is not a list of at most 200 values" });
    expect(decodeHistory(FQDN, text({ journal: { txt: [], stored: { secret: "s" } } }))).toEqual({ problem: "journal.stored is not an object with secret, serial and at" });
    expect(decodeHistory(FQDN, text({ journal: { txt: [], order: { names: FQDN, at: "soon" } } }))).toEqual({ problem: "journal.order is not an object with names and at" });
    expect(decodeHistory(FQDN, text({ issued: [{ at: "x", names: FQDN }] }))).toEqual({ problem: "issued has an entry without a timestamp `at` and `names`" });
    expect(decodeHistory(FQDN, text({ retryNotBefore: "later" }))).toEqual({ problem: "retryNotBefore is not a timestamp" });
  });
});

describe("nextHistory: rate limits and the journal", () => {
  const limited = outcome({ action: "failed", reason: "InRenewalWindow", error: { code: "ACME_RATE_LIMITED", stage: "acme-order", message: "429", exitCode: 3, retryAt: "2026-11-05T00:00:00.000Z" } });

  it("when a run fails with a rate limit's retryAt, records it as retryNotBefore; a skipped run keeps it; a success drops it", () => {
    const h1 = nextHistory(undefined, limited, t0);
    expect(h1).toMatchObject({ retryNotBefore: "2026-11-05T00:00:00.000Z", consecutiveFailures: 1, lastError: { retryAt: "2026-11-05T00:00:00.000Z" } });
    const h2 = nextHistory(h1, outcome({ action: "skipped", reason: "RateLimited" }), t1);
    expect(h2).toMatchObject({ retryNotBefore: "2026-11-05T00:00:00.000Z", consecutiveFailures: 1, lastReason: "RateLimited" });
    const h3 = nextHistory(h2, renewed, t2);
    expect(h3.retryNotBefore).toBeUndefined();
    expect(nextHistory(h1, failed, t1).retryNotBefore).toBeUndefined();
  });

  it("when a run finishes, its order is over; its stored secret is forgotten once it is the secret in place, kept otherwise; TXT values it could not remove stay", () => {
    const txt = [{ record: `_acme-challenge.${FQDN}`, zone: "contoso.test", value: "v" }];
    const journal = { txt: [], order: { names: FQDN, at: t0.toISOString() }, stored: { secret: renewed.secret!, serial: "0A", at: t0.toISOString() } };
    expect(nextHistory({ fqdn: FQDN, consecutiveFailures: 0, journal }, renewed, t1).journal).toBeUndefined();
    expect(nextHistory({ fqdn: FQDN, consecutiveFailures: 0, journal }, { ...failed, secret: "aml-tls-old" }, t1).journal).toEqual({ txt: [], stored: journal.stored });
    expect(nextHistory({ fqdn: FQDN, consecutiveFailures: 0, journal: { txt } }, renewed, t1).journal).toEqual({ txt });
  });
});
