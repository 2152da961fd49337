/**
 * Where the ACME account key lives between runs. Losing it is not fatal (a new account is registered), but with
 * External Account Binding a new account may need a new EAB credential, so the key is kept safe: a file written
 * 0600 and atomically (temp file + rename), or a Kubernetes secret in the amlcert namespace.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, basename } from "node:path";
import type { KubeCluster } from "../ports.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../labels.js";

export interface AccountKeyStore {
  /** The stored PEM, or undefined when nothing is stored yet. */
  load(): Promise<string | undefined>;
  /** Store `pem`, replacing what was stored. */
  save(pem: string): Promise<void>;
  /** Where the key lives, for logs and messages (never the key itself). */
  describe(): string;
}

/** The account key in a local file (mode 0600; parent directories are created with 0700). */
export function fileAccountKeyStore(path: string): AccountKeyStore {
  return {
    async load() {
      try {
        return await readFile(path, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
    async save(pem) {
      const dir = dirname(path);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
      const handle = await open(tmp, "wx", 0o600);
      try {
        await handle.writeFile(pem, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      // make the rename itself durable
      const dirHandle = await open(dir, "r");
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    },
    describe: () => `file ${path}`,
  };
}

export const ACCOUNT_KEY_DATA_KEY = "account.key";

/** The account key in a Kubernetes secret (data key `account.key`), labelled as managed by amlcert. */
export function secretAccountKeyStore(kube: KubeCluster, secretName: string): AccountKeyStore {
  return {
    async load() {
      const secret = await kube.getSecret(secretName);
      const data = secret?.data[ACCOUNT_KEY_DATA_KEY];
      return data === undefined || data.length === 0 ? undefined : data.toString("utf8");
    },
    async save(pem) {
      // keep whatever else people put on the secret (labels, annotations, other keys); and never overwrite a key
      // another run saved meanwhile (KUBE_CONFLICT): its account is the one to use
      const existing = await kube.getSecret(secretName);
      await kube.writeSecret({
        name: secretName,
        data: { ...existing?.data, [ACCOUNT_KEY_DATA_KEY]: Buffer.from(pem, "utf8") },
        labels: { ...existing?.labels, [LABEL_MANAGED_BY]: MANAGED_BY },
        annotations: { ...existing?.annotations },
        expectedResourceVersion: existing?.resourceVersion ?? "",
      });
    },
    describe: () => `secret ${secretName} (key ${ACCOUNT_KEY_DATA_KEY})`,
  };
}
