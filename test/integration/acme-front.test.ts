/**
 * The ACME front (test/servers/acme-front.ts) in front of the real Pebble: what it adds (renewalInfo,
 * meta.profiles), what it records (profile, replaces), and that the CA behind it still issues through it.
 * acme-client is driven directly here: this tests the test server, not amlcert's adapter.
 */
import { X509Certificate } from "node:crypto";
import { request } from "node:https";
import * as acme from "acme-client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { generateCertificateKey } from "../../src/acme/keys.js";
import { frontCertIdOf, startAcmeFront, DEFAULT_PROFILES, type AcmeFront } from "../servers/acme-front.js";
import { challTestSrvSolver, startChallTestSrv, startPebble, type ChallTestSrv, type Pebble } from "../servers/pebble.js";
import { trustedTestPki } from "../servers/trusted-pki.js";

function get(url: string, method = "GET"): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

describe("ACME front before Pebble 2.4", () => {
  const pki = trustedTestPki();
  let dns: ChallTestSrv;
  let pebble: Pebble;
  let front: AcmeFront;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    acme.setLogger(() => undefined);
    dns = await startChallTestSrv();
    stops.push(() => dns.close());
    pebble = await startPebble({ pki, dnsServer: dns.dnsServer, env: { PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" } });
    stops.push(() => pebble.close());
    front = await startAcmeFront({ upstreamDirectoryUrl: pebble.directoryUrl, pki });
    stops.push(() => front.close());
  });
  afterAll(async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  });
  beforeEach(() => front.reset());

  async function issue(profile?: string, replaces?: string): Promise<string> {
    const client = new acme.Client({ directoryUrl: front.directoryUrl, accountKey: await generateCertificateKey("ecdsa-p256"), backoffMin: 50, backoffMax: 500 });
    await client.createAccount({ termsOfServiceAgreed: true });
    const solver = challTestSrvSolver(dns);
    const order = await client.createOrder({
      identifiers: [{ type: "dns", value: "front.test" }],
      ...(profile ? { profile } : {}),
      ...(replaces ? { replaces } : {}),
    } as Parameters<acme.Client["createOrder"]>[0]);
    const [authz] = await client.getAuthorizations(order);
    const challenge = authz!.challenges.find((c) => c.type === "dns-01")!;
    const handle = await solver.present("_acme-challenge.front.test", await client.getChallengeKeyAuthorization(challenge));
    await client.completeChallenge(challenge);
    await client.waitForValidStatus(challenge);
    await solver.cleanup(handle);
    const [, csr] = await acme.crypto.createCsr({ altNames: ["front.test"] }, await generateCertificateKey("ecdsa-p256"));
    const finalized = await client.finalizeOrder(order, csr);
    return client.getCertificate(finalized);
  }

  it("when the directory is asked for, it names the front's URLs, renewalInfo and the profiles", async () => {
    const dir = JSON.parse((await get(front.directoryUrl)).body) as Record<string, unknown> & { meta: { profiles: unknown } };
    expect(dir["newOrder"]).toBe(`${front.origin}/order-plz`);
    expect(dir["newNonce"]).toBe(`${front.origin}/nonce-plz`);
    expect(dir["renewalInfo"]).toBe(`${front.origin}/renewal-info`);
    expect(dir.meta.profiles).toEqual(DEFAULT_PROFILES);
  });

  it("when ARI and profiles are switched off, the directory has neither", async () => {
    front.setAri(false);
    front.setProfiles(null);
    const dir = JSON.parse((await get(front.directoryUrl)).body) as Record<string, unknown> & { meta?: Record<string, unknown> };
    expect(dir["renewalInfo"]).toBeUndefined();
    expect(dir.meta?.["profiles"]).toBeUndefined();
  });

  it("when an order carries profile and replaces, Pebble 2.4 ignores them and issues, and the front records them", async () => {
    const first = await issue("tlsserver");
    const certId = frontCertIdOf(first);
    const second = await issue("tlsserver", certId);
    expect(new X509Certificate(second).subjectAltName).toBe("DNS:front.test");
    expect(front.orders().map((o) => [o.profile, o.replaces, o.identifiers, o.status])).toEqual([
      ["tlsserver", undefined, ["front.test"], 201],
      ["tlsserver", certId, ["front.test"], 201],
    ]);
  });

  it("when an order names a profile the directory does not offer, the front answers invalidProfile", async () => {
    await expect(issue("nonesuch")).rejects.toThrow('profile "nonesuch" is not offered: classic, tlsserver, shortlived');
  });

  it("when renewalInfo is asked for a certificate it issued, it answers the default window (2/3 to 3/4 of the lifetime) and Retry-After", async () => {
    const pem = await issue();
    const leaf = new X509Certificate(pem);
    const certId = frontCertIdOf(pem);
    const res = await get(`${front.renewalInfoUrl}/${certId}`);
    expect(res.status).toBe(200);
    expect(res.headers["retry-after"]).toBe("21600");
    const nb = new Date(leaf.validFrom).getTime();
    const life = new Date(leaf.validTo).getTime() - nb;
    expect(JSON.parse(res.body)).toEqual({
      suggestedWindow: { start: new Date(nb + Math.floor((life * 2) / 3)).toISOString(), end: new Date(nb + Math.floor((life * 3) / 4)).toISOString() },
    });
    expect(front.issued().map((c) => c.certId)).toContain(certId);
  });

  it("when a window is set for a certificate, renewalInfo answers it with its Retry-After; an unknown certID is 404", async () => {
    front.setWindow("abc.def", { start: new Date("2030-01-01T00:00:00Z"), end: new Date("2030-01-02T00:00:00Z"), retryAfterSeconds: 60 });
    const res = await get(`${front.renewalInfoUrl}/abc.def`);
    expect([res.status, res.headers["retry-after"], JSON.parse(res.body)]).toEqual([
      200,
      "60",
      { suggestedWindow: { start: "2030-01-01T00:00:00.000Z", end: "2030-01-02T00:00:00.000Z" } },
    ]);
    expect((await get(`${front.renewalInfoUrl}/unknown.id`)).status).toBe(404);
  });

  it("when a hook answers a fault before Pebble, the client sees it and the log marks it", async () => {
    let seen = 0;
    front.hook((r) => (r.kind === "newNonce" && seen++ === 0 ? { status: 503, headers: { "retry-after": "0" }, body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "down" } } : undefined));
    const first = await get(`${front.origin}/nonce-plz`, "HEAD");
    const second = await get(`${front.origin}/nonce-plz`, "HEAD");
    expect([first.status, second.status]).toEqual([503, 200]);
    expect(front.log().map((e) => [e.kind, e.status, e.fault])).toEqual([
      ["newNonce", 503, "before"],
      ["newNonce", 200, undefined],
    ]);
  });

  it("when a hook answers after Pebble, Pebble acted (its nonce was issued) but the client sees only the fault", async () => {
    front.hook((r) => (r.kind === "newNonce" ? { status: 500, when: "after", body: { type: "urn:ietf:params:acme:error:serverInternal", detail: "lost" } } : undefined));
    const res = await get(`${front.origin}/nonce-plz`, "HEAD");
    expect(res.status).toBe(500);
    // the nonce Pebble issued for the request is handed on, as a CA's error answer carries one
    expect(typeof res.headers["replay-nonce"]).toBe("string");
    expect(front.log().map((e) => [e.kind, e.status, e.fault])).toEqual([["newNonce", 500, "after"]]);
  });

  it("when a hook hangs a request, the request stays unanswered until the client gives up", async () => {
    front.hook((r) => (r.kind === "directory" ? { hang: true } : undefined));
    await expect(
      new Promise((resolve, reject) => {
        const req = request(front.directoryUrl, { timeout: 300, agent: false }, resolve);
        req.on("timeout", () => req.destroy(new Error("client timeout")));
        req.on("error", reject);
        req.end();
      }),
    ).rejects.toThrow("client timeout");
    expect(front.log().map((e) => [e.kind, e.status])).toEqual([["directory", "hung"]]);
  });
});
