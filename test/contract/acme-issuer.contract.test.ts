/**
 * The AcmeIssuer contract against the fake (FakeAcme) and against the real adapter on Pebble (-strict, 15% nonce
 * rejection) with pebble-challtestsrv as the DNS its validation asks. One Pebble per file, one ACME account.
 */
import { createPublicKey, webcrypto } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { pino } from "pino";
import { afterAll, beforeAll, describe } from "vitest";
import { fileAccountKeyStore } from "../../src/acme/account-key-store.js";
import { createAcmeIssuer } from "../../src/acme/acme-issuer.js";
import { systemClock, type DnsChallengeSolver, type IssueRequest } from "../../src/ports.js";
import { challTestSrvSolver, startChallTestSrv, startPebble, type ChallTestSrv, type Pebble } from "../servers/pebble.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { days, makeTestCa, type TestIssuer } from "../support/certs.js";
import { FakeAcme } from "../support/fakes.js";
import { describeContract } from "./acme-issuer.contract.js";

const BLOCKED = "blocked.test";

/** The fake CA's signer: a leaf for the request's names and public key (ECDSA P-256), under a test intermediate. */
async function signFor(issuer: TestIssuer, req: IssueRequest): Promise<string> {
  const spki = createPublicKey(req.keyPem).export({ type: "spki", format: "der" });
  const publicKey = await webcrypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${req.names[0]}`,
    issuer: issuer.cert.subject,
    // @peculiar/x509 is typed against the DOM's WebCrypto; Node's is the same API
    publicKey: publicKey as never,
    signingKey: issuer.keys.privateKey as never,
    notBefore: new Date(now - days(1)),
    notAfter: new Date(now + days(90)),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.SubjectAlternativeNameExtension(req.names.map((value) => ({ type: "dns" as const, value })))],
  });
  return `${cert.toString("pem")}\n${issuer.pem}`;
}

describe("in-process fake", () => {
  let intermediate: TestIssuer;
  beforeAll(async () => {
    ({ intermediate } = await makeTestCa("fake acme"));
  });

  describeContract("FakeAcme", async () => {
    const live = new Map<string, string[]>();
    const solver: DnsChallengeSolver = {
      present: async (recordName, value) => {
        live.set(recordName, [...(live.get(recordName) ?? []), value]);
        return { recordFqdn: recordName, value, zone: "memory" };
      },
      cleanup: async (h) => {
        const rest = (live.get(h.recordFqdn) ?? []).filter((v) => v !== h.value);
        if (rest.length > 0) live.set(h.recordFqdn, rest);
        else live.delete(h.recordFqdn);
      },
    };
    const acme = new FakeAcme();
    acme.resolveTxt = (recordName) => live.get(recordName) ?? [];
    acme.blockedNames = [BLOCKED];
    acme.chainPem = (req) => signFor(intermediate, req);
    return { issuer: acme, solver, published: () => new Map(live), blockedDomain: BLOCKED };
  });
});

describe("on Pebble with pebble-challtestsrv", () => {
  let work: string;
  let dns: ChallTestSrv | undefined;
  let pebble: Pebble | undefined;
  let pki: TestPki;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "amlcert-acme-contract-"));
    pki = createTestPki(join(work, "pki"));
    dns = await startChallTestSrv();
    pebble = await startPebble({ pki, dnsServer: dns.dnsServer, domainBlocklist: [BLOCKED] });
  });
  afterAll(async () => {
    await pebble?.close();
    await dns?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describeContract("acme-issuer.ts through acme-client", async () => {
    const solver = challTestSrvSolver(dns!);
    const issuer = createAcmeIssuer({
      directoryUrl: pebble!.directoryUrl,
      email: "ops@example.test",
      accountKeys: fileAccountKeyStore(join(work, "account", "account.key")),
      logger: pino({ level: "silent" }),
      clock: systemClock,
      termsOfServiceAgreed: true,
      caPem: pki.caPem,
      poll: { attempts: 20, minDelayMs: 100, maxDelayMs: 1_000 },
    });
    return { issuer, solver, published: () => solver.published(), blockedDomain: BLOCKED };
  });
});
