/**
 * The KubeCluster contract against the fake (FakeKube) and against the real adapter on the Kubernetes API server
 * stand-in, authenticated as the amlcert ServiceAccount (every call authorized by test/fixtures/rbac-adapters.yaml). One stand-in.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe } from "vitest";
import { createKubeCluster } from "../../src/kubernetes/kube-cluster.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { createTestPki } from "../servers/pki.js";
import { FakeClock, FakeKube } from "../support/fakes.js";
import { describeContract } from "./kube-cluster.contract.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NS = "azureml";
const quiet = { debug: () => {}, info: () => {}, warn: () => {} };

describeContract("in-process fake (FakeKube)", async () => {
  const kube = new FakeKube();
  kube.services.set("azureml-fe", { type: "LoadBalancer", ips: ["127.0.0.1"], hostnames: [], clusterIP: "10.0.0.10" });
  let refuseNext = false;
  kube.failEvent = () => (refuseNext ? ((refuseNext = false), new Error("500 Internal Server Error")) : undefined);
  return {
    kube,
    putSecret: (name, data, opts = {}) => void kube.seedSecret({ name, data, ...opts }),
    secretData: (name) => {
      const secret = kube.secrets.get(name);
      return secret && Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, v.toString("utf8")]));
    },
    setFrontEnd: (ingress) => {
      if (ingress) kube.services.set("azureml-fe", { type: "LoadBalancer", ...ingress, clusterIP: "10.0.0.10" });
      else kube.services.delete("azureml-fe");
    },
    eventsAbout: (secretName) => kube.events.filter((e) => e.secretName === secretName).map(({ type, reason, message }) => ({ type, reason, message })),
    failNextEvent: () => {
      refuseNext = true;
    },
  };
});

describe("on the Kubernetes API server stand-in", () => {
  let dir: string;
  let server: KubeServer;
  let kubeconfig: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-kube-contract-"));
    server = await startKubeServer({ pki: createTestPki(join(dir, "pki")), rbacFile: join(ROOT, "test/fixtures/rbac-adapters.yaml") });
    kubeconfig = server.writeKubeconfig(join(dir, "sa.kubeconfig"), { token: server.saToken });
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describeContract("kube-cluster.ts through @kubernetes/client-node, as the amlcert ServiceAccount", async () => {
    server.faults.clear();
    for (const secret of server.store.all("secrets", NS)) server.deleteObject("v1", "Secret", NS, secret.metadata.name as string);
    server.putService(NS, { name: "azureml-fe", ingress: [{ ip: "127.0.0.1" }] });
    const kube = createKubeCluster({ source: { kind: "kubeconfig", path: kubeconfig }, namespace: NS, logger: quiet, clock: new FakeClock(new Date("2030-01-01T00:00:00Z")) });
    return {
      kube,
      putSecret: (name, data, opts = {}) => void server.putSecret(NS, name, data, opts),
      secretData: (name) => server.getSecret(NS, name),
      setFrontEnd: (ingress) => {
        if (ingress) server.putService(NS, { name: "azureml-fe", ingress: [...ingress.ips.map((ip) => ({ ip })), ...ingress.hostnames.map((hostname) => ({ hostname }))] });
        else server.deleteObject("v1", "Service", NS, "azureml-fe");
      },
      eventsAbout: (secretName) =>
        server
          .listEvents(NS)
          .filter((e) => (e.involvedObject as { name: string; kind: string }).name === secretName && (e.involvedObject as { kind: string }).kind === "Secret")
          .map((e) => ({ type: e.type as string, reason: e.reason as string, message: e.message as string })),
      failNextEvent: () => void server.faults.add({ method: "POST", pathIncludes: "/events", status: 500 }),
    };
  });
});
