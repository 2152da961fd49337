import { describe, expect, it } from "vitest";
import { checkDns } from "../../src/renewal/verify-dns.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import { makeDeps } from "../support/fakes.js";

const FQDN = "ml.contoso.test";
const IP = "20.30.40.50";
const settings = { fqdn: FQDN, names: [FQDN], manageRecord: false } as unknown as RenewSettings;

describe("checkDns: does the FQDN resolve to azureml-fe?", () => {
  it("when the A record holds exactly azureml-fe's address, the check passes through both the authoritative servers and the resolver", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns).toEqual({ ok: true, expected: [IP], authoritative: [IP], system: [IP], problems: [] });
  });

  it("when a stale extra A record stands beside the right address, the check fails naming both addresses (some clients would go elsewhere)", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.seedA(FQDN, [IP, "10.9.9.9"]);

    const dns = await checkDns(w.deps, settings, [IP]);

    expect(dns.ok).toBe(false);
    expect(dns.problems).toEqual([
      `authoritative servers answer ${IP}, 10.9.9.9 for ${FQDN}, expected ${IP}`,
      `the resolver answers ${IP}, 10.9.9.9 for ${FQDN}, expected ${IP}`,
    ]);
  });

  it("when the A record points elsewhere, the check fails naming what was found", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    w.zone.seedA(FQDN, ["10.9.9.9"]);
    const dns = await checkDns(w.deps, settings, [IP]);
    expect(dns.problems).toEqual([
      `authoritative servers answer 10.9.9.9 for ${FQDN}, expected ${IP}`,
      `the resolver answers 10.9.9.9 for ${FQDN}, expected ${IP}`,
    ]);
  });

  it("when azureml-fe has no address at all, the check fails saying so", async () => {
    const w = makeDeps({ fqdn: FQDN, zone: "contoso.test", ingressIp: IP });
    const dns = await checkDns(w.deps, settings, []);
    expect(dns.problems).toEqual(["no expected address: azureml-fe has no ingress and expectedAddress is not set"]);
  });
});
