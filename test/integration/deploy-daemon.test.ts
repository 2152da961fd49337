/**
 * The daemon overlay (deploy/overlays/daemon) as `kubectl kustomize` renders it: `amlcert daemon` with its probes on
 * the daemon's own port and paths, the metrics Service, a ServiceMonitor that yields the job the alerts expect, and
 * the generated PrometheusRule.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { configSchema } from "../../src/config/schema.js";
import { parseServer } from "../../src/dns-check/name-servers.js";
import { ROOT } from "../harness/harness.js";
import { renderKustomization } from "../servers/kube-rbac.js";

const objects = renderKustomization(`${ROOT}/deploy/overlays/daemon`) as any[];
const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const deployment = find("Deployment", "amlcert");
const service = find("Service", "amlcert-metrics");
const monitor = find("ServiceMonitor", "amlcert");
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const defaultPort = parseServer(configSchema.shape.daemon.parse({}).listen)!.port;

describe("deploy/overlays/daemon", () => {
  it("runs amlcert daemon with the probes on the daemon's own port (daemon.listen's default) and paths", () => {
    expect(defaultPort).toBe(9464);
    expect(container.args).toEqual(["daemon", "--config", "/etc/amlcert/amlcert.yaml"]);
    expect(container.ports).toEqual([{ name: "metrics", containerPort: defaultPort, protocol: "TCP" }]);
    expect(container.livenessProbe).toEqual({ httpGet: { path: "/healthz", port: "metrics" }, initialDelaySeconds: 10, periodSeconds: 30, timeoutSeconds: 5, failureThreshold: 3 });
    expect(container.readinessProbe).toEqual({ httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 30, timeoutSeconds: 5 });
    expect(container.resources).toEqual({ requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "256Mi" } });
  });

  it("one replica, replaced (never two versions side by side), with the time its shutdown needs", () => {
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(deployment.spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/component": "daemon" });
  });

  it("the Service selects the daemon's pods and exposes the metrics port by name", () => {
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(service.spec.ports).toEqual([{ name: "metrics", port: defaultPort, targetPort: "metrics", protocol: "TCP" }]);
  });

  it("the ServiceMonitor scrapes that Service's metrics port at /metrics as job amlcert, the job AmlcertMetricsAbsent watches", () => {
    expect(monitor.metadata.namespace).toBe("azureml");
    expect(monitor.spec.selector.matchLabels).toEqual({ "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/component": "daemon" });
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) expect(service.metadata.labels[k]).toBe(v);
    expect(monitor.spec.namespaceSelector).toEqual({ matchNames: ["azureml"] });
    expect(monitor.spec.endpoints).toEqual([{ port: "metrics", path: "/metrics", interval: "60s", scrapeTimeout: "10s" }]);
    // the operator takes the job label's value from this Service label
    expect(service.metadata.labels[monitor.spec.jobLabel]).toBe("amlcert");
    expect(readFileSync(`${ROOT}/deploy/prometheus/amlcert-rules.yaml`, "utf8")).toContain('up{job="amlcert"}');
  });

  it("includes the generated PrometheusRule unchanged, in namespace monitoring", () => {
    const rule = find("PrometheusRule", "amlcert");
    const shipped = parse(readFileSync(`${ROOT}/deploy/prometheus/prometheusrule.yaml`, "utf8"));
    expect(rule.metadata.namespace).toBe("monitoring");
    expect(rule.spec).toEqual(shipped.spec);
  });
});
