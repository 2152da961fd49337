/** The TlsProbe contract against the fake (FakeTlsProbe) and against the real probe on the azureml-fe stand-in. */
import { afterAll, describe } from "vitest";
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
