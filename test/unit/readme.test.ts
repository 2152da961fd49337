import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { BEGIN, END, configReference } from "../support/config-docs.js";

describe("README", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

  it("carries the configuration reference generated from the schema (run npm run docs:config after changing it)", () => {
    const block = readme.slice(readme.indexOf(BEGIN), readme.indexOf(END) + END.length);
    expect(block).toBe(configReference());
  });

  it("documents every exit code the CLI uses", () => {
    for (const code of ["0", "1", "2", "3", "4"]) expect(readme).toMatch(new RegExp(`^\\| \`${code}\` \\|`, "m"));
  });

  it("has a runbook section for every shipped alert, which the alert's runbook_url points at", () => {
    const rules = parse(readFileSync(new URL("../../deploy/prometheus/amlcert-rules.yaml", import.meta.url), "utf8")) as {
      groups: { rules: { alert?: string; annotations?: { runbook_url?: string } }[] }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);
    expect(alerts.length).toBe(10);
    for (const a of alerts) {
      expect(readme).toMatch(new RegExp(`^#### ${a.alert}$`, "m"));
      expect(a.annotations?.runbook_url).toBe(`https://github.com/amlcert/amlcert#${a.alert!.toLowerCase()}`);
    }
  });

  it("documents every metric the metrics module registers", async () => {
    const { createMetrics } = await import("../../src/observability/metrics.js");
    const names = (await createMetrics({ version: "0.0.0", defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toHaveLength(16);
    for (const n of names) expect(readme).toContain(`| \`${n}\` |`);
  });
});
