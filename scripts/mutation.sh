#!/usr/bin/env bash
# Mutation testing with Stryker (stryker.config.mjs) over the modules where a bug costs a certificate or a secret.
#
#   scripts/mutation.sh                  every group (certs, config, logger, azure-dns, extension, renewal); each module must
#                                        score >= 85% (killed + timeout over all valid mutants), or this exits 1
#   scripts/mutation.sh config logger    only these groups
#   scripts/mutation.sh --smoke          a handful of mutants (renewalTime in src/renewal/plan.ts), unit tests only,
#                                        no type checker: well under 2 minutes; must also score >= 85%
#   scripts/mutation.sh --force          ignore the incremental results in reports/mutation/ and test every mutant
#   scripts/mutation.sh --no-typecheck   skip the TypeScript checker (faster; mutants that do not compile then count
#                                        as killed or survived instead of "compile error")
#
# Reports: reports/mutation/<group>.html and .json, the scores in reports/mutation/scores.md. The machine is shared,
# so Stryker runs one test runner at a time, under nice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Node, npm dependencies, the build and the loopback test PKI (NODE_EXTRA_CA_CERTS, for the integration tests)
source scripts/setup.sh

smoke=0
stryker_args=()
groups=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --force) stryker_args+=(--force) ;;
    --no-typecheck) export AMLCERT_MUTATION_TYPECHECK=0 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "mutation.sh: unknown option $arg" >&2; exit 2 ;;
    *) groups+=("$arg") ;;
  esac
done
if [ "$smoke" = 1 ]; then
  groups=(smoke)
elif [ ${#groups[@]} -eq 0 ]; then
  groups=(certs config logger azure-dns extension renewal)
fi

mkdir -p reports/mutation
timings=()
for group in "${groups[@]}"; do
  started=$(date +%s)
  echo "mutation.sh: group $group" >&2
  env AMLCERT_MUTATION_GROUP="$group" AMLCERT_MUTATION_SMOKE="$smoke" nice -n 10 npx stryker run "${stryker_args[@]}"
  timings+=("$group=$(($(date +%s) - started))")
done

# One line per module, from each group's JSON report; exit 1 when a module scores below 85%.
node --input-type=module - "${timings[@]}" <<'EOF'
import { readFileSync, writeFileSync } from "node:fs";
const MIN = 85;
const rows = [];
for (const arg of process.argv.slice(2)) {
  const [group, seconds] = arg.split("=");
  const report = JSON.parse(readFileSync(`reports/mutation/${group}.json`, "utf8"));
  for (const [file, { mutants }] of Object.entries(report.files)) {
    const n = (s) => mutants.filter((m) => m.status === s).length;
    const c = { killed: n("Killed"), timeout: n("Timeout"), survived: n("Survived"), noCoverage: n("NoCoverage"), compileError: n("CompileError"), runtimeError: n("RuntimeError"), ignored: n("Ignored") };
    const valid = c.killed + c.timeout + c.survived + c.noCoverage;
    const score = valid === 0 ? 100 : (100 * (c.killed + c.timeout)) / valid;
    rows.push({ group, seconds, file, score, ...c });
  }
}
const table = [
  "| module | score | killed | timeout | survived | no coverage | compile errors | group run (s) |",
  "|---|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) => `| \`${r.file}\` | ${r.score.toFixed(2)}% | ${r.killed} | ${r.timeout} | ${r.survived} | ${r.noCoverage} | ${r.compileError} | ${r.seconds} |`),
].join("\n");
writeFileSync("reports/mutation/scores.md", `${table}\n`);
process.stdout.write(`\n${table}\n\n`);
const low = rows.filter((r) => r.score < MIN);
if (low.length > 0) {
  process.stderr.write(`mutation.sh: below ${MIN}%: ${low.map((r) => `${r.file} (${r.score.toFixed(2)}%)`).join(", ")}\n`);
  process.exit(1);
}
process.stdout.write(`mutation.sh: every module scores at least ${MIN}%\n`);
EOF
