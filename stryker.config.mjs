// Mutation testing (Stryker) over the modules where a bug costs a certificate or a secret. Run it with
// scripts/mutation.sh (full run, every module must score >= 85%) or scripts/mutation.sh --smoke (a few mutants).
//
// Each mutant runs only the tests that executed its code in the dry run (coverageAnalysis "perTest"), drawn from
// its group's unit and integration files below: never the e2e suite, never the whole suite. The integration files start
// the loopback ARM/Entra stand-ins and need NODE_EXTRA_CA_CERTS (scripts/mutation.sh sets it).
import { readFileSync } from "node:fs";

const smoke = process.env.AMLCERT_MUTATION_SMOKE === "1";
const noCheck = process.env.AMLCERT_MUTATION_TYPECHECK === "0";

/**
 * The modules in scope, each with the tests that cover it. Stryker runs once per group (scripts/mutation.sh), so a
 * mutant that is "static" (module-level code, e.g. the zod schema) runs its own module's tests, not every file here.
 */
export const groups = {
  certs: { mutate: ["src/certs/**/*.ts", "src/renewal/plan.ts"], testFiles: ["test/unit/certificate.test.ts", "test/unit/plan.test.ts"] },
  config: { mutate: ["src/config/**/*.ts"], testFiles: ["test/unit/config.test.ts", "test/unit/config-schema.test.ts", "test/unit/readme.test.ts"] },
  logger: { mutate: ["src/observability/logger.ts"], testFiles: ["test/unit/logger.test.ts"] },
  "azure-dns": { mutate: ["src/azure-dns/azure-dns-zone.ts"], testFiles: ["test/integration/azure-dns-zone.test.ts"] },
  extension: { mutate: ["src/extension/extension-client.ts"], testFiles: ["test/integration/extension-client.test.ts"] },
  // the use case's rollout, reuse and prune logic, and the DNS check it decides on
  renewal: {
    mutate: ["src/renewal/policies.ts", "src/renewal/rollout.ts", "src/renewal/prune.ts", "src/renewal/obtain.ts", "src/renewal/verify-dns.ts", "src/renewal/certificate-version.ts"],
    testFiles: ["test/unit/renew.test.ts", "test/unit/verify-dns.test.ts", "test/unit/policies.test.ts", "test/unit/prune.test.ts", "test/unit/rollout.test.ts", "test/unit/obtain.test.ts", "test/unit/certificate-version.test.ts"],
  },
  // the smoke run: renewalTime in plan.ts, a handful of mutants, unit tests only, no type checker
  smoke: {
    get mutate() {
      return [renewalTimeLines()];
    },
    testFiles: ["test/unit/plan.test.ts"],
  },
};

/** The lines of renewalTime in src/renewal/plan.ts, found by name so that the smoke run follows edits around it. */
function renewalTimeLines() {
  const lines = readFileSync(new URL("./src/renewal/plan.ts", import.meta.url), "utf8").split("\n");
  const start = lines.findIndex((l) => l.startsWith("export function renewalTime("));
  const end = lines.findIndex((l, i) => i > start && l.startsWith("}"));
  if (start < 0 || end < 0) throw new Error("stryker.config.mjs: renewalTime not found in src/renewal/plan.ts (the smoke run mutates it)");
  return `src/renewal/plan.ts:${start + 1}-${end + 1}`;
}

/** The group this run mutates: AMLCERT_MUTATION_GROUP, or "smoke" when AMLCERT_MUTATION_SMOKE=1. */
export const groupName = () => (process.env.AMLCERT_MUTATION_SMOKE === "1" ? "smoke" : (process.env.AMLCERT_MUTATION_GROUP ?? ""));

const name = groupName();
const group = groups[name];
if (!group) throw new Error(`AMLCERT_MUTATION_GROUP must be one of ${Object.keys(groups).join(", ")}; run scripts/mutation.sh`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: "npm",
  testRunner: "vitest",
  // stryker.vitest.config.mjs limits vitest to the group's testFiles (see there why not Stryker's `testFiles`)
  vitest: { configFile: "stryker.vitest.config.mjs", related: false, pool: "forks" },
  plugins: ["@stryker-mutator/vitest-runner", "@stryker-mutator/typescript-checker"],
  checkers: smoke || noCheck ? [] : ["typescript"],
  // only the mutated modules and what they import: a type error elsewhere (work in progress) cannot stop the run
  tsconfigFile: "tsconfig.mutation.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: "perTest",
  mutate: group.mutate,
  // the machine is shared: one test runner, one checker (scripts/mutation.sh also runs Stryker under nice)
  concurrency: 1,
  incremental: !smoke,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  reporters: smoke ? ["clear-text", "json"] : ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  // the per-module gate (>= 85% each) is in scripts/mutation.sh; Stryker's own threshold is on the total
  thresholds: { high: 90, low: 85, break: null },
  timeoutMS: 10_000,
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
  ignorePatterns: ["dist", ".cache/pebble*", "coverage", "bench/results"],
};
