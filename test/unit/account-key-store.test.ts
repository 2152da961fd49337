import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fileAccountKeyStore, secretAccountKeyStore } from "../../src/acme/account-key-store.js";
import type { KubeCluster, SecretWrite, StoredSecret } from "../../src/ports.js";

const work = mkdtempSync(join(tmpdir(), "amlcert-keystore-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("fileAccountKeyStore", () => {
  it("when nothing was saved, load returns undefined", async () => {
    expect(await fileAccountKeyStore(join(work, "none", "account.key")).load()).toBeUndefined();
  });

  it("when saving, creates the directories, writes the file 0600 and leaves no temp file behind", async () => {
    const path = join(work, "a", "b", "account.key");
    const store = fileAccountKeyStore(path);

    await store.save("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");

    expect(await store.load()).toBe("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(work, "a", "b")).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(work, "a", "b"))).toEqual(["account.key"]);
  });

  it("when saving over an existing file, replaces it and keeps 0600", async () => {
    const path = join(work, "replace.key");
    writeFileSync(path, "old", { mode: 0o644 });
    const store = fileAccountKeyStore(path);

    await store.save("new");

    expect(await store.load()).toBe("new");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("describes itself by path, never by content", () => {
    expect(fileAccountKeyStore("/var/lib/amlcert/account.key").describe()).toBe("file /var/lib/amlcert/account.key");
  });
});

/** The slice of KubeCluster the store uses, in memory. */
function fakeKube(initial?: StoredSecret): KubeCluster & { writes: SecretWrite[] } {
  const secrets = new Map<string, StoredSecret>(initial ? [[initial.name, initial]] : []);
  const writes: SecretWrite[] = [];
  const unused = () => Promise.reject(new Error("not used by the account key store"));
  return {
    writes,
    getSecret: async (name) => secrets.get(name),
    async writeSecret(s) {
      writes.push(s);
      const stored: StoredSecret = { ...s, type: "Opaque" };
      secrets.set(s.name, stored);
      return stored;
    },
    listSecrets: unused,
    deleteSecret: unused,
    getServiceIngress: unused,
    recordEvent: async () => undefined,
  };
}

describe("secretAccountKeyStore", () => {
  it("when the secret is missing, load returns undefined", async () => {
    expect(await secretAccountKeyStore(fakeKube(), "amlcert-acme-account").load()).toBeUndefined();
  });

  it("when saving, writes data key account.key with the managed-by label and loads it back", async () => {
    const kube = fakeKube();
    const store = secretAccountKeyStore(kube, "amlcert-acme-account");

    await store.save("PEM");

    expect(kube.writes).toHaveLength(1);
    expect(kube.writes[0]!.name).toBe("amlcert-acme-account");
    expect(kube.writes[0]!.data["account.key"]!.toString()).toBe("PEM");
    expect(kube.writes[0]!.labels["app.kubernetes.io/managed-by"]).toBe("amlcert");
    expect(await store.load()).toBe("PEM");
  });

  it("when the secret already carries labels, annotations and other keys, saving keeps them", async () => {
    const kube = fakeKube({
      name: "acct",
      type: "Opaque",
      data: { "note.txt": Buffer.from("hi") },
      labels: { team: "ml" },
      annotations: { owner: "ops" },
    });

    await secretAccountKeyStore(kube, "acct").save("PEM");

    const w = kube.writes[0]!;
    expect(w.labels).toEqual({ team: "ml", "app.kubernetes.io/managed-by": "amlcert" });
    expect(w.annotations).toEqual({ owner: "ops" });
    expect(w.data["note.txt"]!.toString()).toBe("hi");
  });

  it("saving a first key is create-only: it never overwrites a key another run saved in the meantime", async () => {
    const kube = fakeKube();
    await secretAccountKeyStore(kube, "amlcert-acme-account").save("PEM");
    expect(kube.writes[0]!.expectedResourceVersion).toBe("");
  });

  it("saving over an existing secret is conditional on the version that was read", async () => {
    const kube = fakeKube({ name: "acct", type: "Opaque", data: {}, labels: {}, annotations: {}, resourceVersion: "41" });
    await secretAccountKeyStore(kube, "acct").save("PEM");
    expect(kube.writes[0]!.expectedResourceVersion).toBe("41");
  });

  it("describes itself by secret name", () => {
    expect(secretAccountKeyStore(fakeKube(), "acct").describe()).toBe("secret acct (key account.key)");
  });
});
