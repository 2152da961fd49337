/**
 * The CronJob overlay (deploy/overlays/cronjob) as `kubectl kustomize` renders it: one run a day that never overlaps,
 * bounded in time, with its history limits and retries, running the image's entrypoint with a configuration amlcert
 * accepts. (Schemas, Pod Security, RBAC and the NetworkPolicy of every overlay: manifests.test.ts.)
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { ROOT } from "../harness/harness.js";
import { renderKustomization } from "../servers/kube-rbac.js";

const objects = renderKustomization(`${ROOT}/deploy/overlays/cronjob`);
const cron = objects.find((o) => o.kind === "CronJob") as any;
const job = cron.spec.jobTemplate.spec;
const pod = job.template.spec;
const container = pod.containers[0];

describe("deploy/overlays/cronjob", () => {
  it("runs daily, never two Jobs at once, skips a run missed by more than an hour, keeps 3 succeeded and 5 failed Jobs", () => {
    expect(cron.spec).toMatchObject({
      schedule: "17 3 * * *",
      timeZone: "Etc/UTC",
      concurrencyPolicy: "Forbid",
      startingDeadlineSeconds: 3600,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 5,
    });
  });

  it("a Job retries a failed pod twice, ends within an hour, and gives a stopped pod the 25 s its cleanup needs", () => {
    expect(job.backoffLimit).toBe(2);
    expect(job.activeDeadlineSeconds).toBe(3600);
    expect(pod.restartPolicy).toBe("Never");
    expect(pod.terminationGracePeriodSeconds).toBe(30);
  });

  it("runs `amlcert renew` on the mounted config with JSON logs, a memory limit and a CPU request", () => {
    expect(container.image).toBe("amlcert:0.1.0");
    expect(container.args).toEqual(["renew", "--config", "/etc/amlcert/amlcert.yaml"]);
    expect(container.env).toEqual([{ name: "AMLCERT_LOG_FORMAT", value: "json" }]);
    expect(container.resources).toEqual({ requests: { cpu: "50m", memory: "96Mi" }, limits: { memory: "256Mi" } });
  });

  it("the ConfigMap's amlcert.yaml is a configuration amlcert accepts, in-cluster, with the account key in the manifests' secret", () => {
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name?.startsWith("amlcert-config-")) as any;
    const { config } = loadConfig({ path: "amlcert.yaml", env: {}, readFile: () => cm.data["amlcert.yaml"] });
    expect(config.targets.map((t) => [t.fqdn, t.kubernetes.inCluster, t.secretName])).toEqual([["ml.contoso.com", true, "amlcert-tls"]]);
    expect(config.acme.accountKey).toEqual({ secret: "amlcert-acme-account", kubernetes: { inCluster: true } });
  });

  it("the Dockerfile's default command is the CronJob's, and its entrypoint runs the compiled CLI", () => {
    const dockerfile = readFileSync(`${ROOT}/Dockerfile`, "utf8");
    expect(dockerfile).toContain(`CMD ${JSON.stringify(container.args).replace(/,/g, ", ")}`);
    expect(dockerfile).toContain('ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]');
  });
});
