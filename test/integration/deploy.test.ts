/**
 * The shipped manifests, rendered by the real kubectl (kustomize built in): the CronJob runs as the ServiceAccount
 * the Role is bound to, with workload identity, locked down, and with a configuration amlcert accepts.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import { ROOT } from "../harness/harness.js";

interface KObj {
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
}

const rendered = () =>
  parseAllDocuments(execFileSync("kubectl", ["kustomize", `${ROOT}/deploy`], { encoding: "utf8" })).map((d) => d.toJS() as KObj);

describe("deploy/ (kubectl kustomize)", () => {
  const objects = rendered();
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it("renders a ServiceAccount, Role, RoleBinding, ConfigMap and CronJob, all in namespace azureml", () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(["ConfigMap", "CronJob", "Role", "RoleBinding", "ServiceAccount"]);
    for (const o of objects) expect(o.metadata.namespace).toBe("azureml");
  });

  it("the CronJob runs as the ServiceAccount the Role is bound to, with workload identity", () => {
    const cron = byKind("CronJob")[0] as unknown as { spec: { concurrencyPolicy: string; jobTemplate: { spec: { template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } } } } };
    const pod = cron.spec.jobTemplate.spec.template;
    expect(pod.spec.serviceAccountName).toBe("amlcert");
    expect(pod.metadata.labels["azure.workload.identity/use"]).toBe("true");
    expect(cron.spec.concurrencyPolicy).toBe("Forbid");
    const binding = byKind("RoleBinding")[0] as unknown as { subjects: { kind: string; name: string }[]; roleRef: { name: string } };
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "amlcert", namespace: "azureml" }]);
    // bound to the Role that is shipped, by its name
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: byKind("Role")[0]!.metadata.name });
    expect(byKind("Role")[0]!.metadata.name).toBe("amlcert");
    expect(byKind("ServiceAccount")[0]!.metadata.name).toBe("amlcert");
    // the placeholder client id that deploy/kustomization.yaml tells the user to replace (README, step 2)
    expect(byKind("ServiceAccount")[0]!.metadata.annotations?.["azure.workload.identity/client-id"]).toBe("00000000-0000-0000-0000-000000000000");
  });

  it("the container cannot escalate, runs as non-root on a read-only root filesystem, and has a memory limit", () => {
    const pod = (byKind("CronJob")[0] as unknown as { spec: { jobTemplate: { spec: { template: { spec: { securityContext: Record<string, unknown>; containers: Record<string, unknown>[] } } } } } }).spec.jobTemplate.spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    const c = pod.containers[0]! as { securityContext: Record<string, unknown>; resources: { limits: Record<string, string> }; args: string[]; volumeMounts: { mountPath: string }[] };
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(c.resources.limits.memory).toBe("256Mi");
    expect(c.args).toEqual(["renew", "--config", "/etc/amlcert/amlcert.yaml"]);
    // the config, read-only, and a writable /tmp: the only writable path on a read-only root filesystem
    expect(c.volumeMounts).toEqual([
      { mountPath: "/etc/amlcert", name: "config", readOnly: true },
      { mountPath: "/tmp", name: "tmp" },
    ]);
  });

  it("the ConfigMap's amlcert.yaml is a configuration amlcert accepts", () => {
    const cm = byKind("ConfigMap")[0] as unknown as { data: Record<string, string> };
    const { config } = loadConfig({ path: "amlcert.yaml", env: {}, readFile: () => cm.data["amlcert.yaml"]! });
    expect(config.targets[0]!.kubernetes.inCluster).toBe(true);
    expect(config.acme.accountKey.secret).toBe("amlcert-acme-account");
  });

  it("the Dockerfile's default command reads the same config path and runs compiled JavaScript on Node 24", () => {
    const dockerfile = readFileSync(`${ROOT}/Dockerfile`, "utf8");
    expect(dockerfile).toMatch(/^FROM node:24-/m);
    expect(dockerfile).toContain('CMD ["renew", "--config", "/etc/amlcert/amlcert.yaml"]');
    expect(dockerfile).toContain('ENTRYPOINT ["node", "/app/dist/src/cli.js"]');
  });
});
