import { describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import type { AcmeIssuer, DnsChallengeSolver, IssueRequest, RenewalWindow } from "../../src/ports.js";
import { createAcmeSource } from "../../src/sources/acme-source.js";
import { recordingLogger } from "../support/fakes.js";
import { days, makeLeaf, makeTestCa } from "../support/certs.js";

const solver: DnsChallengeSolver = { present: async (recordFqdn, value) => ({ recordFqdn, value, zone: "z" }), cleanup: async () => undefined };

function issuer(offered: Record<string, string> | undefined, chainPem = "chain") {
  const requests: IssueRequest[] = [];
  const acme: AcmeIssuer = {
    issue: async (req) => {
      requests.push(req);
      return { chainPem };
    },
    profiles: async () => offered,
    renewalInfo: async (pem): Promise<RenewalWindow | undefined> => (pem === "in place" ? { certId: "a.b", start: new Date(0), end: new Date(1) } : undefined),
  };
  return { acme, requests };
}
const PROFILES = { classic: "90 days", tlsserver: "45 days" };

describe("the ACME source", () => {
  it("when the target's profile is offered, the order carries it, replaces and the run's signal", async () => {
    const { acme, requests } = issuer(PROFILES);
    const source = createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key", profile: { name: "tlsserver", field: "targets[1].profile" } });
    const signal = new AbortController().signal;
    await source.obtain({ names: ["ml.contoso.test"], replaces: "a.b" }, signal);
    expect(requests.map((r) => [r.names, r.keyPem, r.profile, r.replaces, r.signal === signal])).toEqual([[["ml.contoso.test"], "key", "tlsserver", "a.b", true]]);
    expect(source.profile).toEqual({ name: "tlsserver", lifetimeMs: days(45) });
  });

  it("when the profile is not offered, it fails CONFIG_INVALID (exit 2) naming the field and what the CA offers, before any key or order", async () => {
    const { acme, requests } = issuer(PROFILES);
    let keys = 0;
    const source = createAcmeSource({ acme: () => acme, solver, generateKey: async () => (keys++, "key"), profile: { name: "shortlived", field: "acme.profile" }, directory: "https://ca.test/dir" });
    const err = (await source.obtain({ names: ["ml.contoso.test"] }).catch((e: unknown) => e)) as AmlcertError;
    expect([err.code, err.exitCode, err.message]).toEqual(["CONFIG_INVALID", 2, 'acme.profile: "shortlived" is not a profile the CA at https://ca.test/dir offers; it offers classic, tlsserver']);
    expect([keys, requests.length]).toEqual([0, 0]);
  });

  it("check() refuses a profile the CA does not offer, and is quiet when the CA cannot be asked (the order reports that)", async () => {
    const { acme } = issuer(PROFILES);
    await expect(createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key", profile: { name: "nope", field: "acme.profile" } }).check!()).rejects.toThrow(
      'acme.profile: "nope" is not a profile the CA offers; it offers classic, tlsserver',
    );
    await expect(createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key", profile: { name: "classic", field: "acme.profile" } }).check!()).resolves.toBeUndefined();
    const down: AcmeIssuer = { ...acme, profiles: async () => Promise.reject(new AmlcertError("ACME_ERROR", "acme-order", "ACME directory request failed")) };
    await expect(createAcmeSource({ acme: () => down, solver, generateKey: async () => "key", profile: { name: "classic", field: "acme.profile" } }).check!()).resolves.toBeUndefined();
  });

  it("when the CA offers no profiles at all, a configured profile is refused saying so", async () => {
    const { acme } = issuer(undefined);
    const source = createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key", profile: { name: "classic", field: "targets[0].profile" } });
    await expect(source.obtain({ names: ["ml.contoso.test"] })).rejects.toThrow("targets[0].profile: the CA offers no profiles (its directory has no meta.profiles); remove targets[0].profile");
  });

  it("without a profile, nothing is checked and the order names none; renewalInfo asks the issuer", async () => {
    const { acme, requests } = issuer(undefined);
    const source = createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key" });
    await source.obtain({ names: ["ml.contoso.test"] });
    expect(requests[0]!.profile).toBeUndefined();
    expect(source.profile).toBeUndefined();
    expect(await source.renewalInfo!("in place")).toEqual({ certId: "a.b", start: new Date(0), end: new Date(1) });
  });

  it("when a profile of unknown lifetime brings certificates that live no longer than renewBefore, it warns once, naming both", async () => {
    const { intermediate } = await makeTestCa();
    const leaf = await makeLeaf(intermediate, ["ml.contoso.test"], new Date("2030-01-01T00:00:00Z"), new Date("2030-01-08T00:00:00Z"));
    const { acme } = issuer({ weekly: "7 days" }, leaf.chainPem);
    const log = recordingLogger();
    const source = createAcmeSource({ acme: () => acme, solver, generateKey: async () => "key", profile: { name: "weekly", field: "acme.profile" }, renewBeforeMs: days(10), logger: log.logger });
    await source.obtain({ names: ["ml.contoso.test"] });
    await source.obtain({ names: ["ml.contoso.test"] });
    expect(log.messages("warn")).toEqual([
      "renewal.renewBefore (10 days) is not shorter than the 7 days that weekly certificates live (acme.profile); amlcert renews them at 2/3 of their lifetime instead. Set renewBefore shorter",
    ]);
  });
});
