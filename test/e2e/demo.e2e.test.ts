/**
 * The sandbox demo (README "Quick start"), as `scripts/demo.sh` runs it: the built demo script, its own harness and
 * PKI, under the shipped least-privilege Role. It must end with exit 0 and the one JSON line the README shows, with
 * the new certificate in slot aml-tls-a and served.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT } from "../harness/harness.js";

const run = promisify(execFile);

describe("the sandbox demo", () => {
  it("renews the hand-made certificate into slot aml-tls-a, serves it, and prints one JSON line (exit 0)", async () => {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "dist/test/harness/demo.js")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" },
      timeout: 180_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const lines = stdout.trim().split("\n");
    expect(lines, stderr).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ fqdn: "ml.contoso.test", secret: "aml-tls-a", extensionUpdated: true, dnsOk: true, servingOk: true });
    expect(line.serial).toMatch(/^[0-9A-F]+$/);
    expect(stderr).toContain("azureml-fe now serves serial " + String(line.serial));
  }, 200_000);
});
