/**
 * Least privilege, end to end: the Kubernetes stand-in enforces the Role exactly as `kubectl kustomize
 * deploy/overlays/cronjob` renders it (with the objects the manifests create: both slots, the ACME account secret,
 * the Lease, the history ConfigMap), and the built CLI renews under it: a first renewal (a new ACME account, nothing
 * in place), a renewal of a certificate in its window, and a forced renewal. Then each permission of that Role is
 * taken away in turn, and a renewal under what is left fails with a 403 that names the missing permission, which
 * shows that each one is needed.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DNS_RG, OBJECT_ID, ROOT, SUBSCRIPTION, startHarness, type CliRun, type Harness, resultLine } from "../harness/harness.js";
import { deployManifests } from "../servers/kube-rbac.js";
import type { KObj } from "../servers/kube-resources.js";

const FQDN = "ml.contoso.test";
const SLOT_A = "aml-tls-a";
const SLOT_B = "aml-tls-b";
const DAY = 86_400_000;
const inWindow = () => ({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

const result = (run: CliRun) => resultLine(run, FQDN);

/** The Role the harness loads, as rendered (the harness renames the shipped slots to its secretName aml-tls). */
const renderedRole = () => deployManifests(ROOT, "cronjob", "aml-tls").rbac.find((o) => o.kind === "Role")! as KObj & { apiVersion: string; kind: string; rules: Rule[] };

describe("least privilege: renewals under the rendered default Role (deploy/overlays/cronjob)", () => {
  let h: Harness;
  let config: string;
  const kube = () => h.clusters[0]!.kube;
  const role = renderedRole();
  const putRole = (rules: Rule[]) => kube().putObject({ ...structuredClone(role), rules });
  const denied = (since: number) => kube().requests.slice(since).filter((r) => r.status === 403).map((r) => `${r.verb} ${r.resource}/${r.name ?? ""}`);

  beforeAll(async () => {
    h = await startHarness({ rbac: "default", pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    config = h.writeConfig();
  });
  beforeEach(async () => {
    await h.reset();
    putRole(role.rules);
  });
  afterEach(() => putRole(role.rules));
  afterAll(async () => {
    await h?.stop();
  });

  it("the stand-in enforces exactly the rendered Role: C1's rules, the slots named after the config's secretName", () => {
    const stored = kube().store.peek("roles", "azureml", "amlcert") as unknown as { rules: Rule[] };
    expect(stored.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], resourceNames: [SLOT_A, SLOT_B, "amlcert-acme-account"], verbs: ["get", "update"] },
      { apiGroups: [""], resources: ["services"], resourceNames: ["azureml-fe"], verbs: ["get"] },
      { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: ["amlcert"], verbs: ["get", "update"] },
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["amlcert-history"], verbs: ["get", "update"] },
      { apiGroups: [""], resources: ["events"], verbs: ["create"] },
    ]);
    for (const name of [SLOT_A, SLOT_B, "amlcert-acme-account"]) expect(kube().getSecret("azureml", name)).toEqual({});
  });

  it("a first renewal (new ACME account, nothing in place), a renewal in the window and a forced renewal all succeed, with no call refused", async () => {
    const mark = kube().requests.length;
    const first = await h.runCli(["renew", "--config", config]);
    expect(first.code, first.stderr).toBe(0);
    expect(result(first)).toMatchObject({ action: "renewed", secret: SLOT_A, extensionUpdated: true, dnsOk: true, servingOk: true });
    // the account key was stored in the secret the manifests created
    expect(Object.keys(kube().getSecret("azureml", "amlcert-acme-account") ?? {})).toHaveLength(1);

    // a certificate in its renewal window in slot -b, served: the next run renews into -a
    const due = await h.seedCertificateInPlace({ ...inWindow(), name: SLOT_B });
    const second = await h.runCli(["renew", "--config", config]);
    expect(second.code, second.stderr).toBe(0);
    expect(result(second)).toMatchObject({ action: "renewed", secret: SLOT_A, extensionUpdated: true, servingOk: true });
    expect(result(second).serial).not.toBe(due.serial);

    const forced = await h.runCli(["renew", "--config", config, "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(result(forced)).toMatchObject({ action: "renewed", reason: "Forced", secret: SLOT_B, extensionUpdated: true, servingOk: true });
    expect(h.clusters[0]!.fe.servedSerial()).toBe(result(forced).serial);

    expect(denied(mark)).toEqual([]);
    // and it never needed what the Role does not grant
    const secretVerbs = new Set(kube().requests.slice(mark).filter((r) => r.resource === "secrets").map((r) => r.verb));
    expect([...secretVerbs].sort()).toEqual(["get", "update"]);
  });

  /** One permission of the Role: a verb of a rule, or one name of the Secrets rule. */
  interface Permission {
    what: string;
    without: (rules: Rule[]) => Rule[];
    /** the refused request, as the stand-in logs it (verb resource/name; a prefix) */
    refused: string;
    /** the words of the real API server's 403 that amlcert's error carries */
    message: RegExp;
    /** the state that makes the renewal need it (default: nothing in place, a first issuance into slot -a) */
    setup?: () => Promise<unknown>;
  }
  const dropVerb = (resource: string, verb: string) => (rules: Rule[]) =>
    rules.map((r) => (r.resources.includes(resource) ? { ...r, verbs: r.verbs.filter((v) => v !== verb) } : r)).filter((r) => r.verbs.length > 0);
  const dropName = (name: string) => (rules: Rule[]) => rules.map((r) => (r.resources.includes("secrets") ? { ...r, resourceNames: r.resourceNames!.filter((n) => n !== name) } : r));
  const cannot = (verb: string, resource: string, group = "") => new RegExp(`cannot ${verb} resource "${resource}" in API group "${group.replace(/\./g, "\\.")}" in the namespace "azureml"`);
  /** amlcert's log lines (JSON) that carry a KUBE_FORBIDDEN error, as "msg: error message" */
  const forbiddenWarnings = (run: CliRun) =>
    run.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; err?: { code?: string; message?: string }; code?: string; error?: { message?: string } })
      // an error logged whole (err), or its code and message (the Events recorder)
      .map((l) => ({ msg: l.msg, code: l.err?.code ?? l.code, message: l.err?.message ?? l.error?.message }))
      .filter((l) => l.code === "KUBE_FORBIDDEN")
      .map((l) => `${l.msg}: ${l.message}`);

  // Without these the renewal cannot be done: it stops, the certificate in place untouched, exit 3.
  const needed: Permission[] = [
    { what: "get on secrets", without: dropVerb("secrets", "get"), refused: "get secrets/", message: cannot("get", "secrets") },
    { what: "update on secrets", without: dropVerb("secrets", "update"), refused: "update secrets/", message: cannot("update", "secrets") },
    { what: "the ACME account secret's name", without: dropName("amlcert-acme-account"), refused: "get secrets/amlcert-acme-account", message: cannot("get", "secrets") },
    { what: "slot -a's name", without: dropName(SLOT_A), refused: `get secrets/${SLOT_A}`, message: cannot("get", "secrets") },
    // -b is the slot a renewal writes while -a is served
    { what: "slot -b's name", without: dropName(SLOT_B), refused: `get secrets/${SLOT_B}`, message: cannot("get", "secrets"), setup: () => h.seedCertificateInPlace({ ...inWindow(), name: SLOT_A }) },
    { what: "get on services", without: dropVerb("services", "get"), refused: "get services/azureml-fe", message: cannot("get", "services") },
    { what: "get on leases", without: dropVerb("leases", "get"), refused: "get leases/amlcert", message: cannot("get", "leases", "coordination.k8s.io") },
    { what: "update on leases", without: dropVerb("leases", "update"), refused: "update leases/amlcert", message: cannot("update", "leases", "coordination.k8s.io") },
  ];

  it.each(needed)("without $what, a renewal fails with exit 3 and a 403 that names it", async (p) => {
    const inPlace = await p.setup?.();
    putRole(p.without(role.rules));
    const mark = kube().requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(denied(mark).filter((d) => d.startsWith(p.refused)).length, denied(mark).join("\n")).toBeGreaterThan(0);
    expect(run.code, run.stderr).toBe(3);
    const error = result(run).error as { code: string; message: string };
    expect(error.code).toBe("KUBE_FORBIDDEN");
    expect(error.message).toMatch(p.message);
    // nothing was rolled out: the extension names what it named before
    expect(h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret).toBe(inPlace ? SLOT_A : undefined);
  });

  // The history, the run journal and the Events never stop a renewal (amlcert renews, and warns with the 403); what
  // their rule buys is lost instead: the durable history that status, the metrics and the alerts read, the journal
  // that lets the next run clean up after a crash, and the Events on the secret.
  it.each([
    { what: "get on configmaps", without: dropVerb("configmaps", "get"), verb: "get" },
    { what: "update on configmaps", without: dropVerb("configmaps", "update"), verb: "update" },
  ])("without $what, the renewal is done but the history and the journal are not kept, and amlcert warns with the 403 that names it", async (p) => {
    putRole(p.without(role.rules));
    const mark = kube().requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", secret: SLOT_A });
    expect(denied(mark)).toContain(`${p.verb} configmaps/amlcert-history`);
    const warnings = forbiddenWarnings(run);
    expect(warnings.some((w) => w.startsWith("could not write the renewal history") && cannot(p.verb, "configmaps").test(w)), warnings.join("\n")).toBe(true);
    expect(warnings.some((w) => /run journal/.test(w) && cannot(p.verb, "configmaps").test(w)), warnings.join("\n")).toBe(true);
    expect(kube().store.peek("configmaps", "azureml", "amlcert-history")!.data ?? {}).toEqual({});
  });

  it("without create on events, the renewal is done but no Event is recorded on the secret, and amlcert warns with the 403 that names it", async () => {
    putRole(dropVerb("events", "create")(role.rules));
    const mark = kube().requests.length;
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", secret: SLOT_A });
    expect(denied(mark)).toContain("create events/");
    expect(forbiddenWarnings(run).filter((w) => w.startsWith("could not record Kubernetes event") && cannot("create", "events").test(w)), run.stderr).toHaveLength(1);
    expect(kube().listEvents("azureml")).toEqual([]);
    // with the rule, the same renewal records one
    putRole(role.rules);
    const again = await h.runCli(["renew", "--config", config, "--force"]);
    expect(again.code, again.stderr).toBe(0);
    expect(kube().listEvents("azureml").map((e) => (e as { reason?: string }).reason)).toContain("Renewed");
  });

  // Azure, the tighter DNS variant of deploy/azure/role-assignments.sh recordset: the custom record-set role on
  // _acme-challenge.ml only (a placeholder value keeps that record set from being emptied and deleted), the built-in
  // Reader on the zone, and the extension role on the cluster; nothing else.
  it("Azure, tighter: with the record-set role on _acme-challenge.ml, Reader on the zone and the extension role only, a renewal succeeds and the placeholder stays", async () => {
    const zone = h.zones.zoneFor(FQDN)!;
    const zoneScope = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnszones/${zone.name}`;
    const ext = h.clusters[0]!.extension;
    const clusterScope = `/subscriptions/${ext.subscriptionId}/resourceGroups/${ext.resourceGroup}/providers/Microsoft.ContainerService/managedClusters/${ext.clusterName}`;
    // the built-in Reader role's definition
    const reader = join(h.dir, "reader-role.json");
    writeFileSync(reader, JSON.stringify({ Name: "Reader", Actions: ["*/read"], NotActions: [] }));
    h.zones.putRecordSet(zone, "TXT", "_acme-challenge.ml", { ttl: 60, txt: [["amlcert-placeholder"]] });
    h.arm.assignRole({ principalOid: OBJECT_ID, roleFile: reader, scope: zoneScope });
    h.arm.assignRole({ principalOid: OBJECT_ID, roleFile: `${ROOT}/deploy/azure/amlcert-extension-role.json`, scope: clusterScope });

    // without the record-set role the challenge cannot be written, and ARM's 403 names the action
    const refused = await h.runCli(["renew", "--config", config]);
    expect(refused.code, refused.stderr).toBe(3);
    expect(result(refused).error).toMatchObject({ code: "AZURE_FORBIDDEN", stage: "dns-challenge" });
    expect(String((result(refused).error as { message: string }).message)).toContain("Microsoft.Network/dnszones/TXT/write");

    h.arm.assignRole({ principalOid: OBJECT_ID, roleFile: `${ROOT}/deploy/azure/amlcert-dns-recordset-role.json`, scope: `${zoneScope}/TXT/_acme-challenge.ml` });
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", secret: SLOT_A, extensionUpdated: true, dnsOk: true, servingOk: true });
    expect(h.zones.getRecordSet(zone, "TXT", "_acme-challenge.ml")?.txt).toEqual([["amlcert-placeholder"]]);
  });
});
