/**
 * Crash injection, end to end (issue 7): the built CLI is killed with SIGKILL at one step boundary of a renewal,
 * then run again, and the rerun must leave everything sound. The kill points are driven from the stand-ins: the
 * ACME front's hook (before Pebble sees a request, or after Pebble acted and before the client sees the answer),
 * the ARM stand-in's beforeHandle, the Kubernetes stand-in's requestHook and the DNS server's query log (the
 * propagation wait). A kill "after" a request lets the peer apply it and kills the child before it reads the answer.
 *
 * After each rerun:
 *   - the secret the extension names holds a valid matching pair, and azureml-fe serves it;
 *   - the extension ends on the newest valid certificate (no stored certificate expires later than the served one);
 *   - no TXT value of ours is left in the zone store;
 *   - no secret is left annotated `rollout: pending`, and the history holds no journal;
 *   - the CA saw only the orders needed: one, plus one more when the crashed run's order was lost before its
 *     certificate was stored;
 *   - the crashed run's Lease did not stop the rerun (it took the Lease over: its holder was a dead process).
 */
import { X509Certificate } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { inspectPair } from "../../src/certs/certificate.js";
import { ANNOTATION, LABEL_MANAGED_BY, LABEL_SECRET_BASE, MANAGED_BY } from "../../src/renewal/certificate-version.js";
import { startHarness, type CliRun, type Harness, type SpawnedCli, resultLine } from "../harness/harness.js";
import { ArmHttpError } from "../servers/arm-http.js";
import type { RequestRecord } from "../servers/kube-server.js";
import type { AcmeRequestKind } from "../servers/acme-front.js";

const FQDN = "ml.contoso.test";
const SAN = "api.contoso.test";
const NAMES = [FQDN, SAN];
const DAY = 86_400_000;
const NS = "azureml";
/** how long a kill point may take to be reached, and the bound of each poll for it */
const REACH_MS = 60_000;
const TAKEOVER = "the lease is held by a process of this host that no longer exists";

type Kill = () => void;
interface KillPoint {
  name: string;
  /** install the trigger; it calls `kill` exactly at the point. Returns what undoes it. */
  arm(h: Harness, kill: Kill): () => void;
  /** the CA had created the crashed run's order */
  ordered: boolean;
  /** the crashed run's certificate was stored (the rerun rolls it out instead of ordering) */
  stored: boolean;
  /** what the rerun does: renew (order or roll out the stored certificate), or nothing (already rolled out) */
  rerun: "renewed" | "none";
  /** a propagation delay for the crashed run, so it is killed while waiting */
  propagationDelayMs?: number;
}

/** Kill at the `nth` ACME request of `kind`: before Pebble sees it, or after Pebble answered (the client never sees the answer). */
function acme(kind: AcmeRequestKind, when: "before" | "after", nth = 1): KillPoint["arm"] {
  return (h, kill) => {
    const front = h.acmeFront!;
    let seen = 0;
    let poll: NodeJS.Timeout | undefined;
    const unhook = front.hook((req) => {
      if (req.kind !== kind || ++seen !== nth) return undefined;
      if (when === "before") {
        kill();
        return { hang: true };
      }
      // Pebble acts first; the front then holds the answer back: kill once the log shows Pebble answered
      const mark = front.log().length;
      const started = Date.now();
      poll = setInterval(() => {
        const done = front.log().slice(Math.max(0, mark - 1)).some((e) => e.kind === kind && e.fault === "after");
        if (done || Date.now() - started > REACH_MS) {
          clearInterval(poll);
          if (done) kill();
        }
      }, 5);
      return { hang: true, when: "after" };
    });
    return () => {
      clearInterval(poll);
      unhook();
    };
  };
}

/** Kill at the `nth` ARM request matching; "before": refused and not applied; "after": applied, the answer never read. */
function arm(method: string, path: RegExp, when: "before" | "after", nth = 1): KillPoint["arm"] {
  return (h, kill) => {
    let seen = 0;
    h.arm.beforeHandle = (r) => {
      if (r.method !== method || !path.test(r.path) || ++seen !== nth) return;
      kill();
      if (when === "before") throw new ArmHttpError(503, "ServiceUnavailable", "killed before this request");
    };
    return () => (h.arm.beforeHandle = undefined);
  };
}

/** Kill at the `nth` Kubernetes request matching; "before": refused and not applied; "after": applied, the answer never read. */
function kube(match: (r: RequestRecord) => boolean, when: "before" | "after", nth = 1): KillPoint["arm"] {
  return (h, kill) => {
    const k = h.clusters[0]!.kube;
    let seen = 0;
    k.requestHook = (r) => {
      if (!match(r) || ++seen !== nth) return;
      kill();
      return when === "before" ? "refuse" : undefined;
    };
    return () => (k.requestHook = undefined);
  };
}

/** Kill when the history ConfigMap is changed so that `holds` is true of the target's stored history (applied; the answer never read). */
function historyBecomes(holds: (h: Record<string, unknown>) => boolean): KillPoint["arm"] {
  return (h, kill) => {
    let done = false;
    return h.clusters[0]!.kube.store.onChange((c) => {
      const text = (c.object.data as Record<string, string> | undefined)?.[FQDN];
      if (done || c.storage !== "configmaps" || text === undefined || !holds(JSON.parse(text) as Record<string, unknown>)) return;
      done = true;
      kill();
    });
  };
}

/** `match`, counted only once `first` has matched `n` times */
const afterThe = (first: (r: RequestRecord) => boolean, n: number, match: (r: RequestRecord) => boolean) => {
  let seen = 0;
  return (r: RequestRecord) => (seen >= n ? match(r) : (first(r) && ++seen, false));
};

const write = (r: RequestRecord) => r.verb === "create" || r.verb === "update";
const certSecretWrite = (r: RequestRecord) => r.resource === "secrets" && write(r) && !(r.name ?? "").startsWith("amlcert-acme");
const historyWrite = (r: RequestRecord) => r.resource === "configmaps" && write(r);
const leaseWrite = (r: RequestRecord) => r.resource === "leases" && write(r);
const TXT_PUT = /\/dnsZones\/contoso\.test\/TXT\/_acme-challenge\./;
const EXTENSION = /\/extensions\/azureml$/;
const OPERATION = /\/extensions\/azureml\/operations\//;

/** Kill once the authoritative DNS server is asked for a challenge TXT record (amlcert's propagation wait has begun). */
const propagationWait: KillPoint["arm"] = (h, kill) => {
  const mark = h.dns.queries.length;
  const started = Date.now();
  const poll = setInterval(() => {
    const asked = h.dns.queries.slice(mark).some((q) => q.type === "TXT" && q.name.startsWith("_acme-challenge."));
    if (asked || Date.now() - started > REACH_MS) {
      clearInterval(poll);
      if (asked) kill();
    }
  }, 5);
  return () => clearInterval(poll);
};

// The journal's writes of a renewal, in order: 1 the order (created with the ConfigMap), 2 the TXT values placed
// (one write, or two when the second challenge comes while the first write is in flight), the TXT values removed,
// the stored secret, the run's outcome. Secret writes: 1 the new certificate, 2 its rollout annotation. Lease
// writes: 1 taken, 2 released.
const POINTS: KillPoint[] = [
  { name: "after the Lease is taken", arm: kube(leaseWrite, "after", 1), ordered: false, stored: false, rerun: "renewed" },
  { name: "before the order is journaled", arm: kube(historyWrite, "before", 1), ordered: false, stored: false, rerun: "renewed" },
  { name: "before the order reaches the CA", arm: acme("newOrder", "before"), ordered: false, stored: false, rerun: "renewed" },
  { name: "after the order is created", arm: acme("newOrder", "after"), ordered: true, stored: false, rerun: "renewed" },
  { name: "after the TXT values are journaled, before they are placed", arm: kube(historyWrite, "after", 2), ordered: true, stored: false, rerun: "renewed" },
  { name: "after the first TXT value is placed", arm: arm("PUT", TXT_PUT, "after", 1), ordered: true, stored: false, rerun: "renewed" },
  { name: "after the second TXT value is placed", arm: arm("PUT", TXT_PUT, "after", 2), ordered: true, stored: false, rerun: "renewed" },
  { name: "while waiting for propagation", arm: propagationWait, ordered: true, stored: false, rerun: "renewed", propagationDelayMs: 120_000 },
  { name: "after the first challenge is accepted", arm: acme("challenge", "after", 1), ordered: true, stored: false, rerun: "renewed" },
  { name: "before finalize", arm: acme("finalize", "before"), ordered: true, stored: false, rerun: "renewed" },
  { name: "after finalize", arm: acme("finalize", "after"), ordered: true, stored: false, rerun: "renewed" },
  { name: "after the certificate is downloaded", arm: acme("certificate", "after"), ordered: true, stored: false, rerun: "renewed" },
  { name: "before the secret write", arm: kube(certSecretWrite, "before", 1), ordered: true, stored: false, rerun: "renewed" },
  { name: "after the secret write", arm: kube(certSecretWrite, "after", 1), ordered: true, stored: true, rerun: "renewed" },
  { name: "after the stored secret is journaled", arm: historyBecomes((x) => (x.journal as { stored?: unknown } | undefined)?.stored !== undefined), ordered: true, stored: true, rerun: "renewed" },
  { name: "before the extension PATCH", arm: arm("PATCH", EXTENSION, "before"), ordered: true, stored: true, rerun: "renewed" },
  { name: "after the extension PATCH", arm: arm("PATCH", EXTENSION, "after"), ordered: true, stored: true, rerun: "none" },
  { name: "during the extension operation", arm: arm("GET", OPERATION, "before"), ordered: true, stored: true, rerun: "none" },
  { name: "before the rollout annotation write", arm: kube(certSecretWrite, "before", 2), ordered: true, stored: true, rerun: "none" },
  { name: "after the rollout annotation write", arm: kube(certSecretWrite, "after", 2), ordered: true, stored: true, rerun: "none" },
  { name: "before the run's outcome is written to the history", arm: (h, kill) => kube(afterThe(certSecretWrite, 2, historyWrite), "before")(h, kill), ordered: true, stored: true, rerun: "none" },
  { name: "before the Lease is released", arm: kube(leaseWrite, "before", 2), ordered: true, stored: true, rerun: "none" },
];

const result = (run: CliRun) => resultLine(run, FQDN);

const notAfterOf = (pem: string) => Date.parse(new X509Certificate(pem).validTo);
/** orders the CA saw (one the front held back before Pebble saw it is not an order) */
const caOrders = (h: Harness) => h.acmeFront!.orders().filter((o) => o.fault !== "before").length;

describe(`crash injection: SIGKILL at ${POINTS.length} step boundaries, then a rerun`, () => {
  let h: Harness;
  const passed: string[] = [];

  beforeAll(async () => {
    // no nonce rejections: the kill points count requests, and a badNonce retry would shift them
    h = await startHarness({ clusters: [{ name: "aks-ml", fqdn: FQDN, sans: [SAN] }], acmeFront: true, pebbleEnv: { PEBBLE_AUTHZREUSE: "0", PEBBLE_WFE_NONCEREJECT: "0" } });
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterEach(() => {
    h.arm.beforeHandle = undefined;
    h.clusters[0]!.kube.requestHook = undefined;
  });
  afterAll(async () => {
    console.log(`crash injection: ${passed.length} of ${POINTS.length} injection points passed`);
    await h?.stop();
  });

  it(`has at least 15 injection points (${POINTS.length})`, () => {
    expect(POINTS.length).toBeGreaterThanOrEqual(15);
    expect(new Set(POINTS.map((p) => p.name)).size).toBe(POINTS.length);
  });

  for (const [i, point] of POINTS.entries()) {
    it(`when killed ${point.name}, the rerun leaves a sound, served, newest certificate and nothing of the crashed run behind`, async () => {
      const kubeApi = h.clusters[0]!.kube;
      const fe = h.clusters[0]!.fe;
      // a certificate in place, due for renewal; a new account per point, so that every order presents its challenges
      // in slot a, with slot b empty as the manifests in deploy/ create it
      const before = await h.seedCertificateInPlace({ names: NAMES, name: "aml-tls-a", notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
      kubeApi.putSecret(NS, "aml-tls-b", {}, { labels: { [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_SECRET_BASE]: "aml-tls" } });
      h.seedAccountKey(); // a new key in the account secret the Role names: a new account at the CA
      const config = h.writeConfig({}, `crash-${i}.yaml`);
      h.zones.propagationDelayMs = point.propagationDelayMs ?? 0;
      const orders0 = caOrders(h);

      // the crashed run
      let child: SpawnedCli | undefined;
      let killed = false;
      const kill = () => {
        killed = true;
        child!.child.kill("SIGKILL");
      };
      const disarm = point.arm(h, kill);
      let code: number;
      try {
        child = h.spawnCli(["renew", "--config", config]);
        code = await Promise.race([child.exited, new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`not killed within ${REACH_MS} ms`)), REACH_MS).unref())]);
      } finally {
        disarm();
      }
      expect({ killed, code }, `the kill point was not reached; the run's log:\n${child.stderr()}`).toEqual({ killed: true, code: 137 });
      const ordersByCrashed = caOrders(h) - orders0;
      // ARM finishes an extension operation it accepted whether or not anyone polls it, as the real one does
      await h.arm.settleOperations();
      h.zones.propagationDelayMs = 0;

      // the rerun
      const rerun = await h.runCli(["renew", "--config", config]);
      const r = result(rerun);
      expect({ code: rerun.code, action: r.action }, rerun.stderr).toEqual({ code: 0, action: point.rerun });
      expect(rerun.stderr).toContain(TAKEOVER);

      // the served secret holds a valid matching pair, azureml-fe serves it, and it is the newest stored certificate
      const served = h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret!;
      const pair = kubeApi.getSecret(NS, served)!;
      const inspected = inspectPair(pair["cert.pem"], pair["key.pem"], NAMES);
      expect(inspected.problems).toEqual([]);
      expect(fe.servedSerial()).toBe(inspected.leaf!.serialNumber);
      expect(inspected.leaf!.serialNumber).not.toBe(before.serial);
      const stored = kubeApi.store.all("secrets", NS).filter((s) => s.metadata.labels?.[LABEL_SECRET_BASE] !== undefined);
      for (const s of stored) {
        const pem = kubeApi.getSecret(NS, s.metadata.name!)?.["cert.pem"];
        if (pem) expect(notAfterOf(pem), `secret ${s.metadata.name} outlives the served one`).toBeLessThanOrEqual(notAfterOf(pair["cert.pem"]!));
      }

      // nothing of the crashed run is left: TXT values, pending annotations, the journal
      expect(h.zones.allZones().flatMap((z) => h.zones.listRecordSets(z, "TXT").map((s) => `${s.name}.${z.name}`))).toEqual([]);
      expect(stored.filter((s) => s.metadata.annotations?.[ANNOTATION.rollout] === "pending").map((s) => s.metadata.name)).toEqual([]);
      const history = JSON.parse((kubeApi.store.peek("configmaps", NS, "amlcert-history")?.data as Record<string, string>)[FQDN]!) as Record<string, unknown>;
      expect(history.journal).toBeUndefined();

      // the CA saw the orders needed, no more
      const ordersByRerun = caOrders(h) - orders0 - ordersByCrashed;
      expect({ ordersByCrashed, ordersByRerun }).toEqual({ ordersByCrashed: point.ordered ? 1 : 0, ordersByRerun: point.stored ? 0 : 1 });
      passed.push(point.name);
    });
  }
});

describe("rate-limit discipline against the CA (through the ACME front)", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true, pebbleEnv: { PEBBLE_AUTHZREUSE: "0", PEBBLE_WFE_NONCEREJECT: "0" } });
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("when the CA answers an order 429 with a Retry-After of an hour, the run fails with retryAt; the next run orders nothing and is skipped RateLimited (exit 0); --force orders", async () => {
    await h.seedCertificateInPlace({ name: "aml-tls-a", notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
    h.seedAccountKey();
    const config = h.writeConfig({}, "rate-limit.yaml");
    const front = h.acmeFront!;
    const unhook = front.hook((req) =>
      req.kind === "newOrder"
        ? { status: 429, headers: { "Retry-After": "3600", "Content-Type": "application/problem+json" }, body: { type: "urn:ietf:params:acme:error:rateLimited", detail: "too many new orders recently" } }
        : undefined,
    );
    const orders0 = front.orders().filter((o) => o.fault !== "before").length;
    const limited = await h.runCli(["renew", "--config", config]);
    unhook();

    const failed = result(limited);
    expect({ code: limited.code, action: failed.action }).toEqual({ code: 3, action: "failed" });
    const error = failed.error as { code: string; retryAt?: string };
    expect(error.code).toBe("ACME_RATE_LIMITED");
    expect(Date.parse(error.retryAt!)).toBeGreaterThan(Date.now() + 3_000_000);
    const kubeApi = h.clusters[0]!.kube;
    const history = () => JSON.parse((kubeApi.store.peek("configmaps", NS, "amlcert-history")?.data as Record<string, string>)[FQDN]!) as Record<string, unknown>;
    expect(history()).toMatchObject({ retryNotBefore: error.retryAt, consecutiveFailures: 1, lastError: { code: "ACME_RATE_LIMITED", retryAt: error.retryAt } });
    // the refused order was not issued: it is not counted against the duplicate-certificate limit
    expect(history().issued).toBeUndefined();

    const skipped = await h.runCli(["renew", "--config", config]);
    expect({ code: skipped.code, action: result(skipped).action, reason: result(skipped).reason }).toEqual({ code: 0, action: "skipped", reason: "RateLimited" });
    expect(front.orders().filter((o) => o.fault !== "before").length - orders0).toBe(0);
    expect(history()).toMatchObject({ retryNotBefore: error.retryAt, consecutiveFailures: 1 });

    const forced = await h.runCli(["renew", "--config", config, "--force"]);
    expect({ code: forced.code, action: result(forced).action }).toEqual({ code: 0, action: "renewed" });
    expect(history().retryNotBefore).toBeUndefined();
    expect(history().consecutiveFailures).toBe(0);
  });
});

