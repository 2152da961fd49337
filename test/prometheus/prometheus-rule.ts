/**
 * deploy/prometheus/prometheusrule.yaml is generated from deploy/prometheus/amlcert-rules.yaml, the single source of
 * truth: the same `groups`, comments included, wrapped in a monitoring.coreos.com/v1 PrometheusRule.
 * test/integration/alert-rules.test.ts checks that the two agree; after editing the rules run
 *   npm run -s build && node dist/test/prometheus/prometheus-rule.js
 */
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Document, isMap, isSeq, parseDocument } from "yaml";

/** The repository root, from test/prometheus/ or dist/test/prometheus/. */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = resolve(here, "..", "..");
  return basename(up) === "dist" ? resolve(up, "..") : up;
}

export const RULES_FILE = join(repoRoot(), "deploy/prometheus/amlcert-rules.yaml");
export const PROMETHEUS_RULE_FILE = join(repoRoot(), "deploy/prometheus/prometheusrule.yaml");

const HEADER = [
  " The amlcert alerts for the Prometheus operator (kubectl apply -k deploy/prometheus/).",
  " GENERATED from amlcert-rules.yaml (the plain rules file, the single source of truth); do not edit by hand:",
  "   npm run -s build && node dist/test/prometheus/prometheus-rule.js",
  " The operator selects PrometheusRules by label (Prometheus.spec.ruleSelector): kube-prometheus-stack's default",
  " wants release: <its Helm release name>; add that label (kustomize `labels:`) if yours does.",
].join("\n");

/** The PrometheusRule YAML for the rules file text `rulesYaml`: its groups node, comments and all. */
export function prometheusRuleYaml(rulesYaml: string): string {
  const source = parseDocument(rulesYaml);
  if (source.errors.length > 0) throw new Error(`the rules file does not parse: ${source.errors[0]!.message}`);
  const groups = source.get("groups", true);
  if (!isSeq(groups)) throw new Error("the rules file has no `groups` list");
  const out = new Document({
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: {
      name: "amlcert",
      labels: { "app.kubernetes.io/name": "amlcert", "app.kubernetes.io/component": "alerting" },
    },
    spec: {},
  });
  const spec = out.get("spec", true);
  if (!isMap(spec)) throw new Error("unreachable: spec is a map");
  spec.set("groups", groups);
  out.commentBefore = HEADER;
  return out.toString({ lineWidth: 0 });
}

/** Regenerate deploy/prometheus/prometheusrule.yaml. */
export function writePrometheusRule(): void {
  writeFileSync(PROMETHEUS_RULE_FILE, prometheusRuleYaml(readFileSync(RULES_FILE, "utf8")));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writePrometheusRule();
  console.log(`wrote ${PROMETHEUS_RULE_FILE}`);
}
