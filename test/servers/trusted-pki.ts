/**
 * The test PKI that this process trusts. The Azure SDKs use Node's default https agent, whose extra CA comes only
 * from NODE_EXTRA_CA_CERTS read at process start; so tests that drive the SDKs serve the server certificate that
 * sits next to that CA file (the vitest setup creates both in .cache/test-pki).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { getCACertificates } from "node:tls";
import { readTestPki, type TestPki } from "./pki.js";

export { readTestPki };

/** The PKI whose CA is in NODE_EXTRA_CA_CERTS. Throws (never skips) when the process was not started with it. */
export function trustedTestPki(env: Record<string, string | undefined> = process.env): TestPki {
  const caFile = env.NODE_EXTRA_CA_CERTS;
  if (!caFile) {
    throw new Error(
      "NODE_EXTRA_CA_CERTS is not set: run the tests with scripts/test.sh (npm test), which starts vitest with NODE_EXTRA_CA_CERTS=.cache/test-pki/ca.pem, so that the Azure SDKs trust the loopback stand-ins",
    );
  }
  const dir = dirname(caFile);
  if (!existsSync(join(dir, "server.pem"))) {
    throw new Error(`NODE_EXTRA_CA_CERTS=${caFile}, but ${dir} holds no server.pem/server-key.pem made by createTestPki`);
  }
  const pki = readTestPki(dir);
  // the CA this process actually trusts was read at start-up; a PKI regenerated since then would not verify
  const trusted = getCACertificates("extra").map((c) => c.trim());
  if (!trusted.includes(pki.caPem.trim())) {
    throw new Error(`${caFile} was regenerated after this process started; the SDKs would not trust ${dir}/server.pem. Run again`);
  }
  return pki;
}
