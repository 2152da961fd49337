import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileAccountKeyStore, type AccountKeyStore } from "../../src/acme/account-key-store.js";
import { createAcmeIssuer, type AcmeIssuerOptions } from "../../src/acme/acme-issuer.js";
import { generateCertificateKey } from "../../src/acme/keys.js";
import { AmlcertError } from "../../src/errors.js";
import { systemClock, type DnsChallengeSolver, type PresentedTxt } from "../../src/ports.js";
import {
  challTestSrvSolver,
  startChallTestSrv,
  startPebble,
  type ChallTestSrv,
  type ChallTestSrvSolver,
  type Pebble,
} from "../servers/pebble.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { frontCertIdOf, startAcmeFront, type AcmeFront } from "../servers/acme-front.js";
import { certIdOf } from "../../src/acme/ari.js";
import type { Clock } from "../../src/ports.js";

/** pino writing JSON lines into a string, to search what the issuer logged */
function captureLogger(): { logger: Logger; text: () => string; lines: () => Record<string, unknown>[] } {
  let out = "";
  const logger = pino({ level: "debug" }, { write: (s: string) => void (out += s) });
  return {
    logger,
    text: () => out,
    lines: () => out.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Wraps a solver: records every value live at each name, and the most values a name held at once. */
function observed(inner: DnsChallengeSolver) {
  const live = new Map<string, string[]>();
  const maxAtOnce = new Map<string, number>();
  const values: string[] = [];
  const solver: DnsChallengeSolver = {
    async present(name, value) {
      const handle = await inner.present(name, value);
      values.push(value);
      const now = [...(live.get(name) ?? []), value];
      live.set(name, now);
      maxAtOnce.set(name, Math.max(maxAtOnce.get(name) ?? 0, now.length));
      return handle;
    },
    async cleanup(handle: PresentedTxt) {
      await inner.cleanup(handle);
      const rest = (live.get(handle.recordFqdn) ?? []).filter((v) => v !== handle.value);
      if (rest.length === 0) live.delete(handle.recordFqdn);
      else live.set(handle.recordFqdn, rest);
    },
  };
  return { solver, maxAtOnce, values };
}

function chainOf(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
}

function sansOf(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "").split(", ").map((s) => s.replace(/^DNS:/, "")).sort();
}

const pemBody = (pem: string) => pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");

describe("ACME issuer against Pebble 2.4.0 (-strict, 15% nonce rejection) with pebble-challtestsrv as DNS", () => {
  let work: string;
  let pki: TestPki;
  let dns: ChallTestSrv;
  let pebble: Pebble;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "amlcert-acme-test-"));
    pki = createTestPki(join(work, "pki"));
    dns = await startChallTestSrv();
    cleanups.push(() => dns.close());
    pebble = await startPebble({ pki, dnsServer: dns.dnsServer, domainBlocklist: ["blocked.test"] });
    cleanups.push(() => pebble.close());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  const issuerFor = (store: AccountKeyStore, logger: Logger, extra: Partial<AcmeIssuerOptions> = {}) =>
    createAcmeIssuer({
      directoryUrl: pebble.directoryUrl,
      email: "ops@example.test",
      accountKeys: store,
      logger,
      clock: systemClock,
      termsOfServiceAgreed: true,
      caPem: pki.caPem,
      poll: { attempts: 20, minDelayMs: 100, maxDelayMs: 1_000 },
      ...extra,
    });

  describe("with one account", () => {
    let keyFile: string;
    let store: AccountKeyStore;
    let solver: ChallTestSrvSolver;

    beforeAll(() => {
      keyFile = join(work, "account", "nested", "account.key");
      store = fileAccountKeyStore(keyFile);
      solver = challTestSrvSolver(dns);
    });

    it("when issuing for the first time, creates and saves an account key, and returns the full chain (leaf first) for the names and key", async () => {
      const log = captureLogger();
      const keyPem = await generateCertificateKey("ecdsa-p256");
      const names = ["www.first.test", "api.first.test"];

      const { chainPem } = await issuerFor(store, log.logger).issue({ names, keyPem }, solver);

      const chain = chainOf(chainPem);
      expect(chain.length).toBeGreaterThanOrEqual(2);
      const [leaf, intermediate] = chain as [X509Certificate, X509Certificate];
      expect(sansOf(leaf)).toEqual([...names].sort());
      expect(leaf.subject).toContain("CN=www.first.test");
      expect(leaf.ca).toBe(false);
      expect(leaf.publicKey.export({ type: "spki", format: "pem" })).toBe(
        createPublicKey(keyPem).export({ type: "spki", format: "pem" }),
      );
      expect(leaf.checkIssued(intermediate)).toBe(true);
      expect(leaf.verify(intermediate.publicKey)).toBe(true);
      expect(intermediate.fingerprint256).toBe(new X509Certificate(await pebble.intermediatePem()).fingerprint256);
      expect(intermediate.verify(new X509Certificate(await pebble.rootPem()).publicKey)).toBe(true);

      // the account key: ECDSA P-256, 0600, and the account was registered (not found)
      const accountKey = createPrivateKey(readFileSync(keyFile, "utf8"));
      expect(accountKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const registered = log.lines().find((l) => l["msg"] === "registered a new ACME account");
      expect(registered?.["created"]).toBe(true);

      // every presented value is gone again
      expect(solver.presentCount()).toBe(solver.cleanupCount());
      expect(solver.published().size).toBe(0);
    });

    it("when another run saves an account key between our read and our save (KUBE_CONFLICT), uses that run's key and account", async () => {
      const winner = await generateCertificateKey("ecdsa-p256");
      let stored: string | undefined;
      const racing: AccountKeyStore = {
        load: async () => stored,
        save: async () => {
          stored = winner; // the other run got there first
          throw new AmlcertError("KUBE_CONFLICT", "store", 'secret "amlcert-acme-account" changed since amlcert read it');
        },
        describe: () => "secret amlcert-acme-account (key account.key)",
      };
      const log = captureLogger();
      const { chainPem } = await issuerFor(racing, log.logger).issue({ names: ["race.first.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, solver);
      expect(chainPem).toContain("BEGIN CERTIFICATE");
      expect(log.lines().some((l) => l["msg"] === "another run saved an ACME account key first; using that one")).toBe(true);
      // the account now registered belongs to the winner's key: a second issuer with that key finds it
      const again = captureLogger();
      await issuerFor({ load: async () => winner, save: async () => undefined, describe: () => "winner" }, again.logger).issue(
        { names: ["race2.first.test"], keyPem: await generateCertificateKey("ecdsa-p256") },
        solver,
      );
      expect(again.lines().some((l) => l["msg"] === "using the existing ACME account")).toBe(true);
    });

    it("when issuing again with the stored key, reuses the account instead of registering a new one", async () => {
      const before = readFileSync(keyFile, "utf8");
      const firstLog = captureLogger();
      await issuerFor(store, firstLog.logger).issue({ names: ["reuse-a.first.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, solver);
      const secondLog = captureLogger();
      await issuerFor(store, secondLog.logger).issue({ names: ["reuse-b.first.test"], keyPem: await generateCertificateKey("rsa2048") }, solver);

      for (const log of [firstLog, secondLog]) {
        expect(log.lines().some((l) => l["msg"] === "registered a new ACME account")).toBe(false);
        expect(log.lines().find((l) => l["msg"] === "using the existing ACME account")?.["created"]).toBe(false);
      }
      const urlOf = (log: typeof firstLog) => log.lines().find((l) => l["msg"] === "using the existing ACME account")?.["accountUrl"];
      expect(urlOf(firstLog)).toBeTruthy();
      expect(urlOf(secondLog)).toBe(urlOf(firstLog));
      expect(readFileSync(keyFile, "utf8")).toBe(before);
      expect(solver.published().size).toBe(0);
    });

    it("when ordering an apex and its wildcard together, two values are live at one TXT name and the certificate names both", async () => {
      const o = observed(solver);
      const names = ["wild.test", "*.wild.test"];

      const { chainPem } = await issuerFor(store, captureLogger().logger).issue({ names, keyPem: await generateCertificateKey("ecdsa-p384") }, o.solver);

      expect(sansOf(chainOf(chainPem)[0]!)).toEqual(["*.wild.test", "wild.test"]);
      expect(o.maxAtOnce.get("_acme-challenge.wild.test")).toBe(2);
      expect(new Set(o.values).size).toBe(2);
      expect(solver.published().size).toBe(0);
    });

    it("when the CA refuses a name by policy, fails with ACME_REJECTED (rejectedIdentifier) and presents nothing", async () => {
      const o = observed(solver);
      const presentsBefore = solver.presentCount();

      const err = await issuerFor(store, captureLogger().logger)
        .issue({ names: ["ok.first.test", "www.blocked.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver)
        .catch((e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", details: { problemType: "rejectedIdentifier" } });
      expect((err as Error).message).toMatch(/rejectedIdentifier/);
      expect((err as Error).message).toMatch(/www\.blocked\.test/);
      expect(solver.presentCount()).toBe(presentsBefore);
      expect(solver.published().size).toBe(0);
    });

    it("when one challenge fails validation, fails with ACME_REJECTED (unauthorized) and removes every value it presented", async () => {
      // publishes a wrong value for one name; the other authorization validates normally
      const lying: DnsChallengeSolver = {
        present: (name, value) => solver.present(name, name.startsWith("_acme-challenge.bad.") ? `wrong-${value}` : value),
        cleanup: (h) => solver.cleanup(h),
      };
      const o = observed(lying);
      const presentsBefore = solver.presentCount();
      const cleanupsBefore = solver.cleanupCount();

      const err = await issuerFor(store, captureLogger().logger)
        .issue({ names: ["good.second.test", "bad.second.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, o.solver)
        .catch((e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", details: { problemType: "unauthorized", identifier: "bad.second.test" } });
      expect(solver.presentCount() - presentsBefore).toBe(2);
      expect(solver.cleanupCount() - cleanupsBefore).toBe(2);
      expect(solver.published().size).toBe(0);
    });

    it("when the CSR is refused at finalization (badCSR), fails with ACME_REJECTED and the challenge values are already gone", async () => {
      // Pebble refuses a CSR whose key is a known account key
      const err = await issuerFor(store, captureLogger().logger)
        .issue({ names: ["csr.third.test"], keyPem: readFileSync(keyFile, "utf8") }, solver)
        .catch((e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_REJECTED", stage: "acme-order", details: { problemType: "badCSR" } });
      expect(solver.published().size).toBe(0);
      expect(solver.presentCount()).toBe(solver.cleanupCount());
    });

    it("when presenting fails for one name, the error from the solver surfaces and the values presented for the others are removed", async () => {
      const failing: DnsChallengeSolver = {
        async present(name, value) {
          if (name.startsWith("_acme-challenge.broken.")) {
            throw new AmlcertError("DNS_PROPAGATION_TIMEOUT", "propagation", `${name} did not propagate`);
          }
          return solver.present(name, value);
        },
        cleanup: (h) => solver.cleanup(h),
      };

      const err = await issuerFor(store, captureLogger().logger)
        .issue({ names: ["fine.fourth.test", "broken.fourth.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, failing)
        .catch((e: unknown) => e);

      expect(err).toMatchObject({ code: "DNS_PROPAGATION_TIMEOUT", stage: "propagation" });
      expect(solver.published().size).toBe(0);
      expect(solver.presentCount()).toBe(solver.cleanupCount());
    });

    it("when a cleanup fails, the issuance still succeeds and the failure is logged and counted", async () => {
      const log = captureLogger();
      const flaky: DnsChallengeSolver = {
        present: (name, value) => solver.present(name, value),
        async cleanup(h) {
          await solver.cleanup(h); // really remove it, then report a failure anyway
          throw new Error("zone write refused");
        },
      };

      const { chainPem } = await issuerFor(store, log.logger).issue({ names: ["cleanup.fifth.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, flaky);

      expect(chainOf(chainPem).length).toBeGreaterThanOrEqual(2);
      const summary = log.lines().find((l) => l["msg"] === "dns-01 cleanup finished with failures");
      expect(summary).toMatchObject({ cleanupFailures: 1, presented: 1 });
    });

    it("when Pebble rejects nonces at random, issuance still succeeds and the retries are counted", async () => {
      let badNonces = 0;
      // 15% of nonces are rejected; a handful of issuances sees at least one rejection with near certainty
      for (let i = 0; i < 10 && badNonces === 0; i++) {
        const log = captureLogger();
        const { chainPem } = await issuerFor(store, log.logger).issue({ names: [`nonce${i}.sixth.test`], keyPem: await generateCertificateKey("ecdsa-p256") }, solver);
        expect(chainOf(chainPem).length).toBeGreaterThanOrEqual(2);
        badNonces += Number(log.lines().find((l) => l["msg"] === "certificate issued")?.["badNonceRetries"] ?? 0);
      }
      expect(badNonces).toBeGreaterThan(0);
    });
  });

  describe("with External Account Binding required", () => {
    const kid = "amlcert-kid-1";
    const hmacKey = randomBytes(32).toString("base64url");
    let eabPebble: Pebble;

    beforeAll(async () => {
      eabPebble = await startPebble({ pki, dnsServer: dns.dnsServer, eab: { [kid]: hmacKey } });
      cleanups.push(() => eabPebble.close());
    });

    const eabIssuer = (store: AccountKeyStore, logger: Logger, eab?: { kid: string; hmacKey: string }) =>
      issuerFor(store, logger, { directoryUrl: eabPebble.directoryUrl, ...(eab === undefined ? {} : { eab }) });

    it("when no EAB is configured, registration fails with ACME_ACCOUNT; with EAB it succeeds, reusing the key saved before the failed attempt", async () => {
      const store = fileAccountKeyStore(join(work, "eab", "account.key"));
      const solver = challTestSrvSolver(dns);
      const log = captureLogger();

      const err = await eabIssuer(store, log.logger)
        .issue({ names: ["eab.seventh.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, solver)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_ACCOUNT", stage: "acme-account", details: { problemType: "externalAccountRequired" } });
      const savedKey = await store.load();
      expect(savedKey).toBeDefined();

      const certKey = await generateCertificateKey("ecdsa-p256");
      const { chainPem } = await eabIssuer(store, log.logger, { kid, hmacKey }).issue({ names: ["eab.seventh.test"], keyPem: certKey }, solver);
      expect(sansOf(chainOf(chainPem)[0]!)).toEqual(["eab.seventh.test"]);
      expect(await store.load()).toBe(savedKey);
      expect(log.lines().find((l) => l["msg"] === "registered a new ACME account")).toMatchObject({ created: true, eabKid: kid });

      // nothing secret reached the log: not the HMAC key, not the account key, not the certificate key
      const text = log.text();
      expect(text).not.toContain(hmacKey);
      expect(text).not.toContain(Buffer.from(hmacKey, "base64url").toString("base64"));
      expect(text).not.toContain("PRIVATE KEY");
      expect(text).not.toContain(pemBody(savedKey!).slice(0, 40));
      expect(text).not.toContain(pemBody(certKey).slice(0, 40));
      expect(solver.published().size).toBe(0);
    });

    it("when the EAB HMAC key is wrong, registration fails with ACME_ACCOUNT and the log does not contain the key", async () => {
      const store = fileAccountKeyStore(join(work, "eab-wrong", "account.key"));
      const log = captureLogger();
      const wrongKey = randomBytes(32).toString("base64url");

      const err = await eabIssuer(store, log.logger, { kid, hmacKey: wrongKey })
        .issue({ names: ["eab-wrong.seventh.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, challTestSrvSolver(dns))
        .catch((e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_ACCOUNT", stage: "acme-account" });
      expect(log.text()).not.toContain(wrongKey);
      expect(JSON.stringify(err)).not.toContain(wrongKey);
    });
  });

  describe("Pebble knobs the harness relies on", () => {
    it("when certificateValidityPeriodSeconds is set, issued certificates live exactly that long", async () => {
      const shortPebble = await startPebble({ pki, dnsServer: dns.dnsServer, certificateValidityPeriodSeconds: 120 });
      cleanups.push(() => shortPebble.close());
      const store = fileAccountKeyStore(join(work, "short", "account.key"));

      const { chainPem } = await issuerFor(store, captureLogger().logger, { directoryUrl: shortPebble.directoryUrl })
        .issue({ names: ["short.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, challTestSrvSolver(dns));

      const leaf = chainOf(chainPem)[0]!;
      // Pebble: notAfter = notBefore + period - 1 s
      expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe(119_000);
    });

    it("when the Pebble binary is missing, startPebble fails saying how to install it", async () => {
      await expect(startPebble({ pki, dnsServer: dns.dnsServer, binary: join(work, "no-such-pebble") })).rejects.toThrow(
        /Pebble is not installed.*scripts\/setup\.sh \(apt-get install pebble\)/,
      );
    });
  });

  describe("when the ACME server is unreachable", () => {
    it("fails with ACME_ERROR, not an account or rejection code", async () => {
      const store = fileAccountKeyStore(join(work, "unreachable", "account.key"));
      const deadPebble = await startPebble({ pki, dnsServer: dns.dnsServer });
      const directoryUrl = deadPebble.directoryUrl;
      await deadPebble.close();

      const err = await issuerFor(store, captureLogger().logger, { directoryUrl, transportRetry: { retries: 2, delaySeconds: 0 } })
        .issue({ names: ["down.test"], keyPem: await generateCertificateKey("ecdsa-p256") }, challTestSrvSolver(dns))
        .catch((e: unknown) => e);

      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "ACME_ERROR", stage: "acme-account" });
    });
  });
});

/**
 * A clock for the transport's waits: now() is real; a Retry-After or backoff wait is recorded and returns at once; the
 * per-request timeout (exactly `timeoutMs`) never fires on its own (only the request's end cancels it).
 */
function waitRecordingClock(timeoutMs: number): Clock & { waits: number[] } {
  const waits: number[] = [];
  return {
    waits,
    now: () => new Date(),
    sleep(ms, signal) {
      if (ms !== timeoutMs) {
        waits.push(ms);
        return signal?.aborted ? Promise.reject(signal.reason) : Promise.resolve();
      }
      return new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason), { once: true }));
    },
  };
}

describe("ACME issuer through the ACME front (ARI, profiles, faults) before Pebble 2.4.0", () => {
  let work: string;
  let pki: TestPki;
  let dns: ChallTestSrv;
  let pebble: Pebble;
  let front: AcmeFront;
  const cleanups: (() => Promise<void>)[] = [];
  const TIMEOUT = 3_600_000;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "amlcert-acme-front-"));
    pki = createTestPki(join(work, "pki"));
    dns = await startChallTestSrv();
    cleanups.push(() => dns.close());
    // no random nonce rejection and no authorization reuse: request counts are exact
    pebble = await startPebble({ pki, dnsServer: dns.dnsServer, env: { PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" } });
    cleanups.push(() => pebble.close());
    front = await startAcmeFront({ upstreamDirectoryUrl: pebble.directoryUrl, pki });
    cleanups.push(() => front.close());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  let n = 0;
  const issuer = (extra: Partial<AcmeIssuerOptions> = {}, log = captureLogger()) =>
    createAcmeIssuer({
      directoryUrl: front.directoryUrl,
      accountKeys: fileAccountKeyStore(join(work, `account-${++n}.key`)),
      logger: log.logger,
      clock: systemClock,
      termsOfServiceAgreed: true,
      caPem: pki.caPem,
      poll: { attempts: 20, minDelayMs: 50, maxDelayMs: 500 },
      ...extra,
    });
  const order = async (i: ReturnType<typeof issuer>, name: string, extra: { replaces?: string; profile?: string } = {}) =>
    i.issue({ names: [name], keyPem: await generateCertificateKey("ecdsa-p256"), ...extra }, challTestSrvSolver(dns));
  const mark = () => front.log().length;
  const since = (m: number) => front.log().slice(m);

  it("when one issuer orders twice, the directory is fetched once, the account is registered once (not looked up again), and the requests share keep-alive connections", async () => {
    front.reset();
    const i = issuer();
    const connectionsBefore = front.connections();
    await order(i, "twice-a.front.test");
    await order(i, "twice-b.front.test");
    const kinds = front.log().map((e) => e.kind);
    expect(kinds.filter((k) => k === "directory")).toHaveLength(1);
    expect(kinds.filter((k) => k === "newAccount")).toHaveLength(1);
    expect(kinds.filter((k) => k === "newOrder")).toHaveLength(2);
    // one name per order, so every request waits for the one before: one connection carries them all
    expect(front.connections() - connectionsBefore).toBe(1);
    expect(kinds.length).toBeGreaterThan(15);
  });

  it("when the CA has renewalInfo, the window of an issued certificate is read once per Retry-After, under the certID the front computes too", async () => {
    const i = issuer();
    const { chainPem } = await order(i, "ari.front.test");
    const certId = certIdOf(chainPem)!;
    expect(certId).toBe(frontCertIdOf(chainPem));
    const leaf = new X509Certificate(chainPem);
    const nb = Date.parse(leaf.validFrom);
    const life = Date.parse(leaf.validTo) - nb;
    const m = mark();
    const w = await i.renewalInfo!(chainPem);
    expect(w).toMatchObject({ certId, start: new Date(nb + Math.floor((life * 2) / 3)), end: new Date(nb + Math.floor((life * 3) / 4)) });
    expect(await i.renewalInfo!(chainPem)).toEqual(w);
    expect(since(m).map((e) => [e.method, e.path, e.status])).toEqual([["GET", `/renewal-info/${certId}`, 200]]);
  });

  it("when the CA answers renewalInfo with a 5xx, there is no window (the lifetime rule) after one try, and nothing fails", async () => {
    const i = issuer();
    const { chainPem } = await order(i, "noari.front.test");
    const certId = certIdOf(chainPem)!;
    const unhook = front.hook((r) => (r.kind === "renewalInfo" ? { status: 500, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "ARI is down" } } : undefined));
    const m = mark();
    expect(await i.renewalInfo!(chainPem)).toBeUndefined();
    unhook();
    // best effort: one try, no retry, so a CA that is down does not hold up plan or status
    expect(since(m).map((e) => [e.kind, e.status])).toEqual([["renewalInfo", 500]]);
    expect(await issuer().renewalInfo!(chainPem)).toMatchObject({ certId });
  });

  it("when an order replaces a certificate and names a profile, both reach the CA in the newOrder payload", async () => {
    const i = issuer();
    const { chainPem } = await order(i, "replace.front.test");
    const certId = certIdOf(chainPem)!;
    const m = mark();
    await order(i, "replace.front.test", { replaces: certId, profile: "tlsserver" });
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => [e.profile, e.replaces, e.status])).toEqual([["tlsserver", certId, 201]]);
  });

  it("when the CA says the certificate was already replaced, the order is placed again without replaces", async () => {
    const i = issuer();
    const log = captureLogger();
    const j = issuer({}, log);
    const { chainPem } = await order(i, "again.front.test");
    const certId = certIdOf(chainPem)!;
    const unhook = front.hook((r) =>
      r.kind === "newOrder" && (r.payload as { replaces?: string } | undefined)?.replaces !== undefined
        ? { status: 409, body: { type: "urn:ietf:params:acme:error:alreadyReplaced", detail: "already replaced", status: 409 } }
        : undefined,
    );
    const m = mark();
    try {
      await order(j, "again.front.test", { replaces: certId });
    } finally {
      unhook();
    }
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => [e.replaces, e.status])).toEqual([
      [certId, 409],
      [undefined, 201],
    ]);
    expect(log.lines().some((l) => l["msg"] === "the CA says the certificate in place was already replaced; ordering without replaces")).toBe(true);
  });

  it("when the directory has no renewalInfo, no window is asked for and replaces is not sent", async () => {
    front.setAri(false);
    try {
      const i = issuer();
      const { chainPem } = await order(i, "plain.front.test");
      const m = mark();
      expect(await i.renewalInfo!(chainPem)).toBeUndefined();
      await order(i, "plain.front.test", { replaces: certIdOf(chainPem)! });
      const after = since(m);
      expect(after.filter((e) => e.kind === "renewalInfo")).toEqual([]);
      expect(after.filter((e) => e.kind === "newOrder").map((e) => e.replaces)).toEqual([undefined]);
    } finally {
      front.setAri(true);
    }
  });

  it("when the directory offers profiles, profiles() lists them; without meta.profiles it is undefined", async () => {
    expect(Object.keys((await issuer().profiles!())!)).toEqual(["classic", "tlsserver", "shortlived"]);
    front.setProfiles(null);
    try {
      expect(await issuer().profiles!()).toBeUndefined();
    } finally {
      front.reset({ keepLog: true });
    }
  });

  it("when newOrder is answered 429 with a Retry-After inside the cap, the issuer waits that long (jittered) and the order goes through", async () => {
    const clock = waitRecordingClock(TIMEOUT);
    const i = issuer({ clock, transport: { requestTimeoutMs: TIMEOUT, retryAfterMaxMs: 60_000 } });
    let left = 1;
    const unhook = front.hook((r) => (r.kind === "newOrder" && left-- > 0 ? { status: 429, headers: { "retry-after": "30" }, body: { type: "urn:ietf:params:acme:error:rateLimited", detail: "slow down" } } : undefined));
    const m = mark();
    try {
      await order(i, "patient.front.test");
    } finally {
      unhook();
    }
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => e.status)).toEqual([429, 201]);
    expect(clock.waits).toHaveLength(1);
    expect(clock.waits[0]).toBeGreaterThanOrEqual(30_000);
    expect(clock.waits[0]).toBeLessThanOrEqual(33_000);
  });

  it("when newOrder is answered 429 with a Retry-After beyond the cap, the order fails at once with ACME_RATE_LIMITED and when to retry", async () => {
    const clock = waitRecordingClock(TIMEOUT);
    const i = issuer({ clock, transport: { requestTimeoutMs: TIMEOUT, retryAfterMaxMs: 60_000 } });
    const unhook = front.hook((r) => (r.kind === "newOrder" ? { status: 429, headers: { "retry-after": "3600" }, body: { type: "urn:ietf:params:acme:error:rateLimited", detail: "too many certificates for this name" } } : undefined));
    const m = mark();
    const before = Date.now();
    let err: unknown;
    try {
      err = await order(i, "limited.front.test").catch((e: unknown) => e);
    } finally {
      unhook();
    }
    expect(err).toBeInstanceOf(AmlcertError);
    const e = err as AmlcertError;
    expect([e.code, e.stage, e.exitCode]).toEqual(["ACME_RATE_LIMITED", "acme-order", 3]);
    expect(e.message).toMatch(/^ACME order for limited\.front\.test failed: the CA answered 429 to POST \/order-plz and asks to wait until \S+ \(Retry-After 3600 s, longer than the 60 s a run waits\): rateLimited: too many certificates for this name$/);
    const retryAt = Date.parse(e.details["retryAt"] as string);
    expect(retryAt).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(retryAt).toBeLessThanOrEqual(Date.now() + 3_600_000);
    expect(e.details).toMatchObject({ transport: "rate-limited", status: 429, problemType: "rateLimited" });
    expect(clock.waits).toEqual([]);
    expect(since(m).filter((x) => x.kind === "newOrder").map((x) => x.status)).toEqual([429]);
  });

  it("when finalize is answered 503 once, it is retried after a jittered backoff and the certificate is issued", async () => {
    const clock = waitRecordingClock(TIMEOUT);
    const i = issuer({ clock, transport: { requestTimeoutMs: TIMEOUT, backoffMinMs: 1_000, backoffMaxMs: 10_000 } });
    let left = 1;
    const unhook = front.hook((r) => (r.kind === "finalize" && left-- > 0 ? { status: 503, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "maintenance" } } : undefined));
    const m = mark();
    try {
      expect((await order(i, "retry.front.test")).chainPem).toContain("BEGIN CERTIFICATE");
    } finally {
      unhook();
    }
    expect(since(m).filter((e) => e.kind === "finalize").map((e) => e.status)).toEqual([503, 200]);
    expect(clock.waits).toEqual([1_000]);
  });

  it("when the CA keeps answering 503, the order fails with ACME_ERROR saying how often, after the configured attempts", async () => {
    const clock = waitRecordingClock(TIMEOUT);
    const i = issuer({ clock, transport: { requestTimeoutMs: TIMEOUT, attempts: 3 } });
    const unhook = front.hook((r) => (r.kind === "newOrder" ? { status: 503, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "down for maintenance" } } : undefined));
    let err: unknown;
    try {
      err = await order(i, "down.front.test").catch((e: unknown) => e);
    } finally {
      unhook();
    }
    expect(err).toMatchObject({
      code: "ACME_ERROR",
      stage: "acme-order",
      message: "ACME order for down.front.test failed: the CA answered 503 to POST /order-plz 3 times: serverInternal: down for maintenance",
    });
    expect(clock.waits).toHaveLength(2);
  });

  it("when newOrder is never answered, each try is cut off at the request timeout and the order fails with ACME_ERROR naming it", async () => {
    const i = issuer({ transport: { requestTimeoutMs: 300, attempts: 2, backoffMinMs: 0, backoffMaxMs: 0 } });
    const unhook = front.hook((r) => (r.kind === "newOrder" ? { hang: true } : undefined));
    const m = mark();
    let err: unknown;
    try {
      err = await order(i, "silent.front.test").catch((e: unknown) => e);
    } finally {
      unhook();
    }
    expect(err).toMatchObject({
      code: "ACME_ERROR",
      stage: "acme-order",
      message: "ACME order for silent.front.test failed: the CA did not answer POST /order-plz: no answer within 0.3 s, 2 attempts",
      details: { transport: "timeout", attempts: 2, timeoutMs: 300 },
    });
    expect(since(m).filter((e) => e.kind === "newOrder").map((e) => e.status)).toEqual(["hung", "hung"]);
  });

  it("when the run's signal aborts during a Retry-After wait, the order ends at once with the signal's reason", async () => {
    const stop = new AbortController();
    const i = issuer({ transport: { retryAfterMaxMs: 600_000 } });
    const unhook = front.hook((r) => {
      if (r.kind !== "newOrder") return undefined;
      setImmediate(() => stop.abort(new Error("stopped by SIGTERM")));
      return { status: 429, headers: { "retry-after": "300" } };
    });
    try {
      await expect(i.issue({ names: ["stopped.front.test"], keyPem: await generateCertificateKey("ecdsa-p256"), signal: stop.signal }, challTestSrvSolver(dns))).rejects.toThrow(
        "stopped by SIGTERM",
      );
    } finally {
      unhook();
    }
  });
});
