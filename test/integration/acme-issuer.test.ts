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
