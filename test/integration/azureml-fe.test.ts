import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import { createTlsProbe } from "../../src/tls-probe/tls-probe.js";
import { startAzuremlFe, type AzuremlFe, type ServedCertificate } from "../servers/azureml-fe.js";
import { createTestPki, type TestPki } from "../servers/pki.js";

const FQDN = "endpoint.contoso.test";

/** A leaf for `names` signed by the PKI's CA (openssl), with a fresh P-256 key. */
function issueLeaf(pki: TestPki, names: string[], tag: string): ServedCertificate {
  const dir = pki.dir;
  const key = join(dir, `${tag}-key.pem`);
  const csr = join(dir, `${tag}.csr`);
  const ext = join(dir, `${tag}.ext`);
  const cert = join(dir, `${tag}.pem`);
  execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", key], { stdio: "ignore" });
  execFileSync("openssl", ["req", "-new", "-key", key, "-subj", `/CN=${names[0]}`, "-out", csr], { stdio: "ignore" });
  writeFileSync(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n`);
  execFileSync(
    "openssl",
    ["x509", "-req", "-in", csr, "-CA", pki.caFile, "-CAkey", join(dir, "ca-key.pem"), "-CAcreateserial", "-days", "1", "-sha256", "-extfile", ext, "-out", cert],
    { stdio: "ignore" },
  );
  return { certPem: readFileSync(cert, "utf8"), keyPem: readFileSync(key, "utf8") };
}

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber;

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("azureml-fe stand-in and the TLS probe", () => {
  let workDir: string;
  let pki: TestPki;
  let otherPki: TestPki;
  let first: ServedCertificate;
  let second: ServedCertificate;
  let secret: ServedCertificate | undefined;
  let fe: AzuremlFe | undefined;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), "amlcert-fe-test-"));
    pki = createTestPki(join(workDir, "pki"));
    otherPki = createTestPki(join(workDir, "other-pki"));
    first = issueLeaf(pki, [FQDN], "first");
    second = issueLeaf(pki, [FQDN], "second");
  });
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));
  afterEach(async () => {
    await fe?.close();
    fe = undefined;
  });

  const start = async (opts: { reloadDelayMs?: number } = {}) => {
    secret = first;
    fe = await startAzuremlFe({ load: async () => secret, ...opts });
    return fe;
  };
  /** trust: "test-ca" (default), another CA's PEM, or "default" for Node's default trust store */
  const probe = (trust: string = "test-ca", servername = FQDN) => {
    const caPem = trust === "test-ca" ? pki.caPem : trust === "default" ? undefined : trust;
    return createTlsProbe({ ...(caPem === undefined ? {} : { caPem }), timeoutMs: 5_000 }).probe({ host: fe!.host, port: fe!.port, servername });
  };

  it("when probed with the right trust store and name, reports the served serial over TLS 1.2 as authorized", async () => {
    await start();
    const result = await probe();
    expect(result).toMatchObject({ serialNumber: serialOf(first.certPem), protocol: "TLSv1.2", authorized: true });
    expect(result.fingerprint256).toBe(new X509Certificate(first.certPem).fingerprint256);
    expect(fe!.servedSerial()).toBe(serialOf(first.certPem));
  });

  it("when a client insists on TLS 1.3, the handshake fails (azureml-fe speaks TLS 1.2 only)", async () => {
    await start();
    const outcome = await new Promise<string>((resolve) => {
      const s = connect({ host: fe!.host, port: fe!.port, servername: FQDN, ca: pki.caPem, minVersion: "TLSv1.3" });
      s.once("secureConnect", () => {
        s.destroy();
        resolve("connected");
      });
      s.once("error", (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    });
    expect(outcome).toMatch(/^error /);
  });

  it("when the secret changes, the old certificate is served until reload(), then the new one", async () => {
    await start();
    secret = second;
    expect((await probe()).serialNumber).toBe(serialOf(first.certPem));

    await fe!.reload();

    const after = await probe();
    expect(after.serialNumber).toBe(serialOf(second.certPem));
    expect(after.authorized).toBe(true);
    expect(fe!.rollouts()).toBe(1);
  });

  it("when frozen, reload() keeps serving the old certificate", async () => {
    await start();
    fe!.freeze();
    secret = second;

    await fe!.reload();

    expect((await probe()).serialNumber).toBe(serialOf(first.certPem));
    expect(fe!.servedSerial()).toBe(serialOf(first.certPem));
    expect(fe!.rollouts()).toBe(0);
  });

  it("when pods roll slowly (reloadDelayMs), the old certificate is still served right after reload and the new one later", async () => {
    // pods that take longer to roll than this test runs: the old certificate is served after reload, however slow the probe
    await start({ reloadDelayMs: 600_000 });
    secret = second;
    await fe!.reload();
    expect((await probe()).serialNumber).toBe(serialOf(first.certPem));
    expect(fe!.servedSerial()).toBe(serialOf(first.certPem));
    await fe!.close(); // also cancels the pending roll

    // pods that roll in 50 ms: the new certificate is served once they have (polled, bounded)
    await start({ reloadDelayMs: 50 });
    secret = second;
    await fe!.reload();
    await eventually(async () => (await probe()).serialNumber === serialOf(second.certPem), "the new certificate to be served");
  });

  it("when the secret is broken at reload, the old certificate stays and the error is reported", async () => {
    await start();
    secret = { certPem: second.certPem, keyPem: first.keyPem };

    await fe!.reload();

    expect((await probe()).serialNumber).toBe(serialOf(first.certPem));
    expect(fe!.lastReloadError()).toBeDefined();
  });

  it("when probed with a trust store that does not hold the issuing CA, reports authorized=false with the reason", async () => {
    await start();
    const result = await probe(otherPki.caPem);
    expect(result.authorized).toBe(false);
    expect(result.authorizationError).toMatch(/UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(result.serialNumber).toBe("");
  });

  it("when probed with the default trust store (test CA not in it), reports authorized=false", async () => {
    await start();
    const result = await probe("default");
    expect(result.authorized).toBe(false);
  });

  it("when the served certificate does not name the probed FQDN, reports authorized=false", async () => {
    await start();
    const result = await probe("test-ca", "other.contoso.test");
    expect(result.authorized).toBe(false);
    expect(result.authorizationError).toMatch(/ALTNAME/);
  });

  it("when nothing listens, the probe rejects with TLS_PROBE_FAILED at stage verify-tls", async () => {
    await start();
    const port = fe!.port;
    await fe!.close();
    fe = undefined;
    const err = await createTlsProbe({ caPem: pki.caPem, timeoutMs: 5_000 })
      .probe({ host: "127.0.0.1", port, servername: FQDN })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmlcertError);
    expect(err).toMatchObject({ code: "TLS_PROBE_FAILED", stage: "verify-tls" });
  });

  it("when asked over HTTPS, answers 200 azureml-fe (so curl works)", async () => {
    await start();
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: fe!.host, port: fe!.port, servername: FQDN, path: "/api/v1/service/x/score", ca: pki.caPem, timeout: 5_000 },
        (res) => {
          let data = "";
          res.on("data", (c: Buffer) => (data += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(200);
    expect(body).toBe("azureml-fe");
  });

  it("when started without a usable secret, handshakes fail until a reload finds one", async () => {
    secret = undefined;
    fe = await startAzuremlFe({ load: async () => secret });
    expect(fe.servedSerial()).toBeUndefined();
    await expect(probe()).rejects.toMatchObject({ code: "TLS_PROBE_FAILED" });

    secret = first;
    await fe.reload();
    expect((await probe()).serialNumber).toBe(serialOf(first.certPem));
  });
});
