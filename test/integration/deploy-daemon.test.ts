import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { configSchema } from "../../src/config/schema.js";
import { parseServer } from "../../src/dns-check/name-servers.js";

type Obj = { kind: string; spec: Record<string, any> };
const docs = parseAllDocuments(readFileSync(new URL("../../deploy/daemon.yaml", import.meta.url), "utf8")).map((d) => d.toJS() as Obj);
const deployment = docs.find((d) => d.kind === "Deployment")!;
const service = docs.find((d) => d.kind === "Service")!;
const pod = deployment.spec.template.spec;
const container = pod.containers[0];

describe("deploy/daemon.yaml", () => {
  it("runs amlcert daemon with the probes on the daemon's own port and paths", () => {
    const defaultPort = parseServer(configSchema.shape.daemon.parse({}).listen)!.port;
    expect(container.args).toEqual(["daemon", "--config", "/etc/amlcert/amlcert.yaml"]);
    expect(container.ports).toEqual([{ name: "metrics", containerPort: defaultPort }]);
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    expect(service.spec.ports).toEqual([{ name: "metrics", port: defaultPort, targetPort: "metrics" }]);
  });

  it("gives the pod the time its shutdown needs and the Lease a holder identity", () => {
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(container.env).toContainEqual({ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } });
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
  });

  it("meets the restricted Pod Security Standard, as the CronJob does", () => {
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } });
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(pod.serviceAccountName).toBe("amlcert");
  });
});
