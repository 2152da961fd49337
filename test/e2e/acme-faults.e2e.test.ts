/**
 * The ACME rows of the fault matrix: the built CLI against the real Pebble behind the ACME front, whose hook answers
 * the faults a CA produces (badNonce, 5xx, a request that never returns, 429 with a short and a long Retry-After).
 * Each row checks the outcome, the exit code, the metric the run pushed to a real Pushgateway, and the log line.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startHarness, type CliRun, type Harness } from "../harness/harness.js";
import type { FrontHook } from "../servers/acme-front.js";
import { startPushgateway, type Pushgateway } from "../servers/pushgateway.js";

const FQDN = "ml.contoso.test";

function result(run: CliRun, fqdn = FQDN): Record<string, unknown> & { error?: Record<string, unknown> } {
  const r = run.lines.find((l) => l.fqdn === fqdn);
  if (!r) throw new Error(`no result line for ${fqdn} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

/** The JSON log lines of a run (stderr). */
const logLines = (run: CliRun) =>
  run.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe("ACME faults through the front: outcome, exit code, metric, log", () => {
  let h: Harness;
  let gateway: Pushgateway;
  let n = 0;

  beforeAll(async () => {
    h = await startHarness({ pebbleEnv: { PEBBLE_AUTHZREUSE: "0", PEBBLE_WFE_NONCEREJECT: "0" }, acmeFront: true });
    gateway = await startPushgateway();
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await gateway?.close();
    await h?.stop();
  });

  /** a config pushing to the gateway, with these ACME bounds */
  const config = (acme: Record<string, unknown> = {}) => h.writeConfig({ acme, metrics: { pushgateway: gateway.url } }, `fault-${++n}.yaml`);
  /** the value of a pushed sample of the target's group, or undefined when the run pushed none */
  async function pushed(family: string, labels: Record<string, string>): Promise<number | undefined> {
    const group = (await gateway.groups()).find((g) => g.labels.job === "amlcert" && g.labels.target === FQDN);
    const sample = group?.families.get(family)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v));
    return sample?.value === undefined ? undefined : Number(sample.value);
  }
  const faulted = (m: number, kind?: string) => h.acmeFront!.log().slice(m).filter((e) => e.fault !== undefined && (kind === undefined || e.kind === kind));
  const withHook = async <T>(hook: FrontHook, run: () => Promise<T>): Promise<T> => {
    const unhook = h.acmeFront!.hook(hook);
    try {
      return await run();
    } finally {
      unhook();
    }
  };

  it("badNonce on every other signed request (50 %): renewed, exit 0, every rejected nonce counted as a 400, the retries in the issue log", async () => {
    const cfg = config();
    let posts = 0;
    const m = h.acmeFront!.log().length;
    const run = await withHook(
      (r) =>
        r.method === "POST" && posts++ % 2 === 1
          ? { status: 400, body: { type: "urn:ietf:params:acme:error:badNonce", detail: "JWS has an invalid anti-replay nonce", status: 400 } }
          : undefined,
      () => h.runCli(["renew", "--config", cfg, "--json"]),
    );
    expect(result(run)).toMatchObject({ action: "renewed" });
    expect(run.code).toBe(0);
    const rejected = faulted(m).length;
    expect(rejected).toBeGreaterThanOrEqual(5);
    expect(await pushed("amlcert_requests_total", { system: "acme", status: "400" })).toBe(rejected);
    expect(logLines(run).find((l) => l["msg"] === "certificate issued")?.["badNonceRetries"]).toBe(rejected);
  });

  it("503 once on newOrder: retried after a backoff, renewed, exit 0, the 503 counted, the retry logged", async () => {
    const cfg = config();
    let left = 1;
    const run = await withHook(
      (r) => (r.kind === "newOrder" && left-- > 0 ? { status: 503, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "maintenance", status: 503 } } : undefined),
      () => h.runCli(["renew", "--config", cfg, "--json"]),
    );
    expect(result(run)).toMatchObject({ action: "renewed" });
    expect(run.code).toBe(0);
    expect(await pushed("amlcert_requests_total", { system: "acme", status: "503" })).toBe(1);
    expect(logLines(run).filter((l) => l["msg"] === "ACME request retried").map((l) => [l["method"], l["status"], l["attempt"]])).toEqual([["POST", 503, 1]]);
  });

  it("503 on every newOrder: failed after acme.maxRetries, exit 3 ACME_ERROR at acme-order saying how often, both 503s and the failure counted", async () => {
    const cfg = config({ maxRetries: 1 });
    const run = await withHook(
      (r) => (r.kind === "newOrder" ? { status: 503, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "down for maintenance", status: 503 } } : undefined),
      () => h.runCli(["renew", "--config", cfg, "--json"]),
    );
    expect(run.code).toBe(3);
    expect(result(run)).toMatchObject({
      action: "failed",
      error: { code: "ACME_ERROR", stage: "acme-order", exitCode: 3, message: "ACME order for ml.contoso.test failed: the CA answered 503 to POST /order-plz 2 times: serverInternal: down for maintenance" },
    });
    expect(await pushed("amlcert_requests_total", { system: "acme", status: "503" })).toBe(2);
    expect(await pushed("amlcert_renewal_failures_total", { stage: "acme-order", code: "ACME_ERROR" })).toBe(1);
  });

  it("a newOrder that never returns: each try cut off at acme.requestTimeout, exit 3 ACME_ERROR naming the request, the tries counted as error", async () => {
    const cfg = config({ requestTimeout: "1s", maxRetries: 1 });
    const m = h.acmeFront!.log().length;
    const run = await withHook((r) => (r.kind === "newOrder" ? { hang: true } : undefined), () => h.runCli(["renew", "--config", cfg, "--json"]));
    expect(run.code).toBe(3);
    expect(result(run)).toMatchObject({
      action: "failed",
      error: { code: "ACME_ERROR", stage: "acme-order", exitCode: 3, message: "ACME order for ml.contoso.test failed: the CA did not answer POST /order-plz: no answer within 1 s, 2 attempts" },
    });
    expect(faulted(m, "newOrder").map((e) => e.status)).toEqual(["hung", "hung"]);
    expect(await pushed("amlcert_requests_total", { system: "acme", status: "error" })).toBe(2);
  });

  it("429 with Retry-After 1 on newOrder: waited, renewed, exit 0, the 429 counted, the wait logged", async () => {
    const cfg = config();
    let left = 1;
    const run = await withHook(
      (r) =>
        r.kind === "newOrder" && left-- > 0
          ? { status: 429, headers: { "retry-after": "1" }, body: { type: "urn:ietf:params:acme:error:rateLimited", detail: "slow down", status: 429 } }
          : undefined,
      () => h.runCli(["renew", "--config", cfg, "--json"]),
    );
    expect(result(run)).toMatchObject({ action: "renewed" });
    expect(run.code).toBe(0);
    expect(await pushed("amlcert_requests_total", { system: "acme", status: "429" })).toBe(1);
    const retry = logLines(run).find((l) => l["msg"] === "ACME request retried")!;
    expect([retry["status"], retry["retryAfterMs"]]).toEqual([429, 1_000]);
    expect(retry["delayMs"]).toBeGreaterThanOrEqual(1_000);
    expect(retry["delayMs"]).toBeLessThanOrEqual(1_100);
  });

  it("429 with Retry-After 3600 on newOrder: exit 3 ACME_RATE_LIMITED with retryAt, kept in the history; the next run orders nothing (skipped RateLimited)", async () => {
    const cfg = config();
    const m = h.acmeFront!.log().length;
    const before = Date.now();
    const run = await withHook(
      (r) =>
        r.kind === "newOrder"
          ? { status: 429, headers: { "retry-after": "3600" }, body: { type: "urn:ietf:params:acme:error:rateLimited", detail: "too many new orders recently", status: 429 } }
          : undefined,
      () => h.runCli(["renew", "--config", cfg, "--json"]),
    );
    expect(run.code).toBe(3);
    const error = result(run).error!;
    expect(error).toMatchObject({ code: "ACME_RATE_LIMITED", stage: "acme-order", exitCode: 3 });
    expect(error["message"]).toMatch(
      /^ACME order for ml\.contoso\.test failed: the CA answered 429 to POST \/order-plz and asks to wait until \S+ \(Retry-After 3600 s, longer than the 120 s a run waits\): rateLimited: too many new orders recently$/,
    );
    const retryAt = Date.parse(error["retryAt"] as string);
    expect(retryAt).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(retryAt).toBeLessThanOrEqual(Date.now() + 3_600_000);
    expect(faulted(m, "newOrder")).toHaveLength(1);
    expect(await pushed("amlcert_renewal_failures_total", { stage: "acme-order", code: "ACME_RATE_LIMITED" })).toBe(1);
    const failure = logLines(run).find((l) => (l["err"] as { code?: string } | undefined)?.code === "ACME_RATE_LIMITED" || l["code"] === "ACME_RATE_LIMITED");
    expect(failure, run.stderr).toBeDefined();

    const status = await h.runCli(["status", "--config", cfg, "--json"]);
    expect(result(status)["retryNotBefore"]).toBe(error["retryAt"]);

    const m2 = h.acmeFront!.log().length;
    const next = await h.runCli(["renew", "--config", cfg, "--json"]);
    expect(result(next)).toMatchObject({ action: "skipped", reason: "RateLimited" });
    expect(next.code).toBe(0);
    expect(h.acmeFront!.log().slice(m2).filter((e) => e.kind === "newOrder")).toEqual([]);
  });
});
