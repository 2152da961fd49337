/**
 * Run after the suite (scripts/test.sh, vitest.scan.config.ts): every line a CLI child wrote during the run, as the
 * harness kept it, is searched for secrets (test/support/secret-scan.ts). A finding fails the suite. The unit test
 * test/unit/secret-scan.test.ts shows the scan fails on a leaked key.
 */
import { describe, expect, it } from "vitest";
import { cliLogDir, formatFindings, scanLogDir } from "../support/secret-scan.js";

describe("the secret scan of this test run's CLI output", () => {
  it("no kept log line holds a private key, a token or JWT, an EAB key, a client secret or a kubeconfig credential", () => {
    const dir = cliLogDir();
    const { files, lines, findings } = scanLogDir(dir);
    process.stdout.write(`secret scan: ${files} files, ${lines} lines in ${dir}, ${findings.length} findings\n`);
    expect(findings, `secrets in the CLI output kept in ${dir}:\n${formatFindings(findings)}`).toEqual([]);
  });
});
