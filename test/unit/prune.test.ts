import { describe, expect, it } from "vitest";
import { ANNOTATION, LABEL_MANAGED_BY, LABEL_SECRET_BASE, MANAGED_BY } from "../../src/renewal/certificate-version.js";
import type { RenewSettings } from "../../src/renewal/deps.js";
import type { Inspection } from "../../src/renewal/inspect.js";
import { pruneVersions } from "../../src/renewal/prune.js";
import { makeDeps, recordingLogger, type FakeWorld } from "../support/fakes.js";

const FQDN = "ml.contoso.test";
const BASE = "azureml-tls";
const settings = (over: Partial<RenewSettings> = {}) => ({ fqdn: FQDN, names: [FQDN], secretName: BASE, secretMode: "versioned", keepPrevious: 1, ...over }) as RenewSettings;
const inspection = (currentSecretName?: string) => ({ currentSecretName }) as Inspection;

function seedVersion(w: FakeWorld, name: string, notAfter: string): void {
  w.kube.seedSecret({
    name,
    data: { "cert.pem": "c", "key.pem": "k" },
    labels: { [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_SECRET_BASE]: BASE },
    annotations: { [ANNOTATION.notAfter]: notAfter },
  });
}

function world() {
  const log = recordingLogger();
  const w = makeDeps({ fqdn: FQDN, logger: log.logger });
  seedVersion(w, "v-jan", "2026-01-01T00:00:00.000Z");
  seedVersion(w, "v-feb", "2026-02-01T00:00:00.000Z");
  seedVersion(w, "v-mar", "2026-03-01T00:00:00.000Z");
  seedVersion(w, "v-new", "2026-08-01T00:00:00.000Z");
  return { w, log };
}

describe("pruneVersions: older versions deleted once the new one is served", () => {
  it("when the served version replaced another, both stay and the older ones are deleted, each logged", async () => {
    const { w, log } = world();
    await pruneVersions(w.deps, settings(), inspection("v-jan"), "v-new");
    expect(w.kube.selectors).toEqual([`${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_SECRET_BASE}=${BASE}`]);
    expect(w.kube.deletes).toEqual(["v-mar", "v-feb"]);
    expect([...w.kube.secrets.keys()].sort()).toEqual(["v-jan", "v-new"]);
    expect(log.entries.filter((e) => e.stage === "prune").map((e) => ({ level: e.level, msg: e.msg, fqdn: e.fqdn, secret: e.secret }))).toEqual([
      { level: 30, msg: "old secret version deleted", fqdn: FQDN, secret: "v-mar" },
      { level: 30, msg: "old secret version deleted", fqdn: FQDN, secret: "v-feb" },
    ]);
  });

  it("when the served version is the one in place (a re-drive), only keepPrevious older ones stay", async () => {
    const { w } = world();
    await pruneVersions(w.deps, settings(), inspection("v-new"), "v-new");
    expect(w.kube.deletes).toEqual(["v-feb", "v-jan"]);
  });

  it("when nothing was in place, only keepPrevious older ones stay", async () => {
    const { w } = world();
    await pruneVersions(w.deps, settings({ keepPrevious: 0 }), inspection(undefined), "v-new");
    expect(w.kube.deletes).toEqual(["v-mar", "v-feb", "v-jan"]);
  });

  it("in fixed mode, nothing is listed or deleted", async () => {
    const { w } = world();
    await pruneVersions(w.deps, settings({ secretMode: "fixed" }), inspection("v-jan"), "v-new");
    expect(w.kube.selectors).toEqual([]);
    expect(w.kube.deletes).toEqual([]);
  });

  it("when a delete fails, the renewal still succeeds and a warning says the pruning failed", async () => {
    const { w, log } = world();
    w.kube.failDelete = new Error("forbidden");
    await expect(pruneVersions(w.deps, settings(), inspection("v-jan"), "v-new")).resolves.toBeUndefined();
    expect(w.kube.deletes).toEqual(["v-mar"]);
    const warns = log.entries.filter((e) => e.level === 40);
    expect(warns.map((e) => ({ msg: e.msg, stage: e.stage, fqdn: e.fqdn, err: (e.err as { message: string }).message }))).toEqual([
      { msg: "could not prune old secret versions (the renewal itself succeeded)", stage: "prune", fqdn: FQDN, err: "forbidden" },
    ]);
  });
});
