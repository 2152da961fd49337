/** The TlsProbe contract against the fake (FakeTlsProbe) and against the real probe on the azureml-fe stand-in. */
import { createServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import { createTlsProbe } from "../../src/tls-probe/tls-probe.js";
import { startAzuremlFe, type AzuremlFe, type ServedCertificate } from "../servers/azureml-fe.js";
import { FakeTlsProbe } from "../support/fakes.js";
import { describeContract } from "./tls-probe.contract.js";

describeContract("in-process fake (FakeTlsProbe)", async (trust) => {
  let served: string | undefined;
  let listening = true;
  const probe = new FakeTlsProbe(() => (listening ? served : undefined));
  return {
    probe,
    target: { host: "20.30.40.50", port: 443 },
    serve: async (leaf) => {
      served = leaf.chainPem;
      probe.authorized = trust.isTrusted(leaf.chainPem);
    },
    stop: async () => {
      listening = false;
    },
  };
});

describe("on the azureml-fe stand-in", () => {
  let fe: AzuremlFe | undefined;
  let secret: ServedCertificate | undefined;
  afterAll(async () => {
    await fe?.close();
  });

  describeContract("tls-probe.ts (node:tls, verification on)", async (trust) => {
    // one stand-in for the file; started again only after a test stopped it
    fe ??= await startAzuremlFe({ load: async () => secret });
    const running = fe;
    return {
      probe: createTlsProbe({ caPem: trust.trustedRootPem, timeoutMs: 5_000 }),
      target: { host: running.host, port: running.port },
      serve: async (leaf) => {
        secret = { certPem: leaf.chainPem, keyPem: leaf.keyPem };
        await running.reload();
      },
      stop: async () => {
        await running.close();
        fe = undefined;
      },
    };
  });
});

describe("tls-probe.ts against a peer that accepts the connection and never answers the handshake (issue 7)", () => {
  it("when the handshake hangs, the probe gives up after verify.probeTimeout with TLS_PROBE_FAILED naming the bound", async () => {
    const sockets = new Set<Socket>();
    const hung = createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => hung.listen(0, "127.0.0.1", resolve));
    const port = (hung.address() as AddressInfo).port;
    try {
      const err = await createTlsProbe({ timeoutMs: 200 })
        .probe({ host: "127.0.0.1", port, servername: "ml.contoso.test" })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AmlcertError);
      expect(err).toMatchObject({ code: "TLS_PROBE_FAILED", stage: "verify-tls", details: { host: "127.0.0.1", port, servername: "ml.contoso.test" } });
      expect((err as Error).message).toBe(`TLS handshake with 127.0.0.1:${port} (SNI ml.contoso.test) did not finish within 200 ms (verify.probeTimeout)`);
      expect(sockets.size).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => hung.close(() => resolve()));
    }
  });
});
