/**
 * End to end: `amlcert status`, the built CLI as a child process against the real Pebble and the loopback stand-ins,
 * after the runs a CronJob would have made. The CLI prints JSON lines when stdout is not a terminal (here, a pipe)
 * and the table only on a terminal; the table is checked through its formatter on the JSON lines the CLI printed.
 * Every status run is checked to have written nothing: no request but GET at the Kubernetes API and ARM, and at the
 * CA no request but the directory's GET (status asks for the CA's renewal window when it offers one).
 */
import type { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { servedCertificate } from "../support/served-certificate.js";
import { startHarness, type CliRun, type Harness } from "../harness/harness.js";
import { formatStatusTable, type StatusLine } from "../../src/app/status-view.js";

const FQDN = "ml.contoso.test";
/** the slots of the harness's secretName (slots mode is the default) */
const SLOT_A = "aml-tls-a";
const SLOT_B = "aml-tls-b";

/** The certificate azureml-fe serves for the FQDN, from a TLS handshake that trusts Pebble's roots. */

/** Pebble's log after `before` (the log keeps only its tail, so find where `before` ended). */
function pebbleLogSince(before: string, after: string): string {
  const tail = before.slice(-400);
  const at = tail === "" ? 0 : after.lastIndexOf(tail);
  if (at < 0) throw new Error("Pebble's log no longer holds the point to compare from");
  return after.slice(at + tail.length);
}

/**
 * Pebble logs every request it handles ("GET /dir -> calling handler()"). A request of ours marks the end, so every
 * request made before it is surely in the log by then; the requests in between must be ours alone.
 */
async function pebbleRequestsSince(h: Harness, before: string): Promise<string[]> {
  const marker = `/dir?amlcert-status-e2e=${Date.now()}`;
  const res = await fetch(new URL(marker, h.pebble.directoryUrl), { signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const requests = pebbleLogSince(before, h.pebble.logs())
      .split("\n")
      .filter((l) => l.includes("-> calling handler()"))
      .map((l) => l.replace(/^Pebble \S+ \S+ /, "").replace(" -> calling handler()", ""));
    // Pebble logs the path without the query
    if (requests.includes("GET /dir")) return requests.slice(0, requests.lastIndexOf("GET /dir"));
    if (Date.now() > deadline) throw new Error(`Pebble did not log our marker request within 10 s\n${h.pebble.logs().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `amlcert status` with `args`, and a check that it wrote nothing anywhere. */
async function status(h: Harness, args: string[]): Promise<CliRun & { line: StatusLine }> {
  const kube = h.clusters[0]!.kube;
  const [armBefore, kubeBefore, pebbleBefore] = [h.arm.requests.length, kube.requests.length, h.pebble.logs()];
  const run = await h.runCli(["status", ...args]);
  expect(h.arm.requests.slice(armBefore).filter((r) => r.method !== "GET")).toEqual([]);
  expect(kube.requests.slice(kubeBefore).filter((r) => r.method !== "GET")).toEqual([]);
  // it did read: the extension at ARM, the secret and the history at the Kubernetes API
  expect(h.arm.requests.length).toBeGreaterThan(armBefore);
  expect(kube.requests.slice(kubeBefore).map((r) => r.resource)).toEqual(expect.arrayContaining(["secrets", "configmaps"]));
  // the CA is only read: its directory, to learn whether it offers renewalInfo (ARI, RFC 9773; Pebble 2.4 does not)
  expect((await pebbleRequestsSince(h, pebbleBefore)).filter((r) => r !== "GET /dir")).toEqual([]);
  expect(run.lines, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toHaveLength(1);
  return { ...run, line: run.lines[0] as unknown as StatusLine };
}

/** The table's cells of the target's row (columns are at least two spaces apart; no cell holds two spaces). */
function tableRow(table: string, fqdn = FQDN): string[] {
  const rows = table.split("\n\n")[0]!.split("\n");
  expect(rows[0]!.split(/ {2,}/)).toEqual(["FQDN", "SECRET", "ROLLBACK", "SERIAL", "NOT AFTER", "DAYS", "RENEW AT", "LAST RESULT", "FAILURES", "DNS", "SERVING", "HEALTH"]);
  const row = rows.find((r) => r.startsWith(`${fqdn} `));
  if (!row) throw new Error(`no row for ${fqdn} in\n${table}`);
  return row.split(/ {2,}/);
}

const minute = (iso: string) => `${iso.slice(0, 16)}Z`;
const daysLeft = (notAfter: string, now: Date) => Math.floor((Date.parse(notAfter) - now.getTime()) / 86_400_000);

describe("amlcert status against Pebble and the stand-ins", () => {
  let h: Harness;
  let config: string;
  let served: X509Certificate;

  beforeAll(async () => {
    // a fresh authorization for every order: a renewal that must write a TXT value does
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    config = h.writeConfig();
    const renewed = await h.runCli(["renew", "--config", config]);
    if (renewed.code !== 0) throw new Error(`the first renewal failed (exit ${renewed.code})\n${renewed.stderr}`);
    served = await servedCertificate(h);
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("after a renewal it reports the target healthy with the served certificate, and exits 0 (JSON with --json and on a pipe; the table from the same lines)", async () => {
    const run = await status(h, ["--config", config, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const notAfter = new Date(served.validTo).toISOString();
    const secret = h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret!;
    // the first certificate went to slot -a; slot -b is still free, so there is no rollback certificate yet
    expect(secret).toBe(SLOT_A);
    expect(run.line.slots).toEqual({ served: SLOT_A });
    expect(run.line).toMatchObject({
      fqdn: FQDN,
      secret,
      serial: served.serialNumber.toUpperCase(),
      notAfter,
      reason: "UpToDate",
      problems: [],
      lastResult: "renewed",
      consecutiveFailures: 0,
      dnsOk: true,
      servingOk: true,
      health: "ok",
      exitCode: 0,
    });
    expect(run.line.lastSuccess).toBe(run.line.lastAttempt);
    expect(run.line.error).toBeUndefined();

    // without --json, stdout being a pipe: the same JSON line
    const piped = await status(h, ["--config", config]);
    expect(piped.code).toBe(0);
    expect({ ...piped.line, daysLeft: undefined }).toEqual({ ...run.line, daysLeft: undefined });

    const now = new Date();
    const table = formatStatusTable([run.line], now);
    expect(tableRow(table)).toEqual([
      FQDN,
      secret,
      "-",
      served.serialNumber.toUpperCase(),
      minute(notAfter),
      String(daysLeft(notAfter, now)),
      minute(run.line.renewAt!),
      "renewed",
      "0",
      "ok",
      "ok",
      "ok",
    ]);
    // a healthy target gets no notes under the table
    expect(table.split("\n\n")).toHaveLength(1);
  });

  it("when the certificate in place is past its renewal time, it reports expiring and exits 3", async () => {
    // renewBefore 1 ms short of the lifetime: the renewal time is 1 ms after notBefore, which has passed
    const lifetimeMs = Date.parse(served.validTo) - Date.parse(served.validFrom);
    const due = h.writeConfig({ renewal: { renewBefore: `${lifetimeMs - 1}ms` } }, "due.yaml");
    const renewAt = new Date(Date.parse(served.validFrom) + 1).toISOString();
    const run = await status(h, ["--config", due, "--json"]);
    expect(run.code, run.stderr).toBe(3);
    expect(run.line).toMatchObject({
      fqdn: FQDN,
      serial: served.serialNumber.toUpperCase(),
      renewAt,
      reason: "InRenewalWindow",
      consecutiveFailures: 0,
      dnsOk: true,
      servingOk: true,
      health: "expiring",
      exitCode: 3,
    });

    const now = new Date();
    const table = formatStatusTable([run.line], now);
    expect(tableRow(table).slice(-1)).toEqual(["expiring"]);
    const note = table.split("\n\n")[1]!.split("\n");
    expect(note[0]).toBe(`${FQDN}: expiring`);
    expect(note[1]).toMatch(new RegExp(`^  due for renewal since ${minute(renewAt).replace(/[.:]/g, "\\$&")} \\(\\d+[sm] ago\\)$`));
  });

  it("after a failed renewal it reports failing with the failure count, the code and the stage, and exits 3", async () => {
    h.arm.deny({ action: "Microsoft.Network/dnszones/TXT/write" });
    try {
      // a new ACME account, so the CA has no valid authorization to reuse and the challenge must be written
      const failing = await h.runCli(["renew", "--config", h.writeConfig({ acme: { accountKey: { secret: "amlcert-acme-status-403" } } }, "dns403.yaml"), "--force"]);
      expect(failing.code, failing.stderr).toBe(3);
    } finally {
      h.arm.clearAuthorization();
    }
    const run = await status(h, ["--config", config, "--json"]);
    expect(run.code, run.stderr).toBe(3);
    expect(run.line).toMatchObject({
      fqdn: FQDN,
      // the previous certificate is still in place and served
      serial: served.serialNumber.toUpperCase(),
      reason: "UpToDate",
      lastResult: "failed",
      lastStage: "dns-challenge",
      lastError: { code: "AZURE_FORBIDDEN", stage: "dns-challenge" },
      consecutiveFailures: 1,
      dnsOk: true,
      servingOk: true,
      health: "failing",
      exitCode: 3,
    });
    expect(run.line.lastFailure).toBe(run.line.lastAttempt);
    expect(Date.parse(run.line.lastSuccess!)).toBeLessThan(Date.parse(run.line.lastFailure!));

    const table = formatStatusTable([run.line], new Date());
    expect(tableRow(table).slice(7)).toEqual(["failed at dns-challenge", "1", "ok", "ok", "failing"]);
    const note = table.split("\n\n")[1]!.split("\n");
    expect(note[0]).toBe(`${FQDN}: failing`);
    expect(note[1]).toMatch(/^ {2}the last attempt failed at dns-challenge \(AZURE_FORBIDDEN\): /);
    // the previous certificate is served from slot -a, and slot -b was never written: no rollback
    expect(run.line.slots).toEqual({ served: SLOT_A });
  });

  it("after a second renewal into slot -b, it reports -b served and -a holding the first certificate as the rollback", async () => {
    const first = served;
    const renewed = await h.runCli(["renew", "--config", config, "--force"]);
    expect(renewed.code, renewed.stderr).toBe(0);
    const second = await servedCertificate(h);
    expect(second.serialNumber).not.toBe(first.serialNumber);

    const run = await status(h, ["--config", config, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.line).toMatchObject({ fqdn: FQDN, secret: SLOT_B, serial: second.serialNumber.toUpperCase(), health: "ok", consecutiveFailures: 0 });
    expect(run.line.slots).toEqual({
      served: SLOT_B,
      rollback: { secret: SLOT_A, serial: first.serialNumber.toUpperCase(), notAfter: new Date(first.validTo).toISOString() },
    });
    const table = formatStatusTable([run.line], new Date());
    expect(tableRow(table).slice(0, 4)).toEqual([FQDN, SLOT_B, SLOT_A, second.serialNumber.toUpperCase()]);
  });
});

describe("amlcert status over a certificate a test seeded under the default Role", () => {
  it("when the harness seeds a certificate without a name in slots mode, it goes to slot -a, which the default Role may read: status is ok on it", async () => {
    const h = await startHarness();
    try {
      const config = h.writeConfig();
      const DAY = 86_400_000;
      const inPlace = await h.seedCertificateInPlace({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
      expect(inPlace.secret).toBe(SLOT_A);
      const run = await status(h, ["--config", config, "--json"]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.line).toMatchObject({ fqdn: FQDN, secret: SLOT_A, serial: inPlace.serial, reason: "UpToDate", problems: [], health: "ok", exitCode: 0 });
      expect(run.line.slots).toEqual({ served: SLOT_A });
      // nothing was refused: every read status made was allowed by the shipped Role
      expect(h.clusters[0]!.kube.requests.filter((r) => r.status === 403)).toEqual([]);
    } finally {
      await h.stop();
    }
  });
});
