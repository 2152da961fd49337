/**
 * The benchmark keeps working (issue 10): `scripts/bench.sh --smoke` runs every section once, without delay, with
 * every client (amlcert's bundle, Debian's lego and certbot, the floor), exactly as a user runs the bench. Only
 * that each part ran and reported is asserted, never a timing: the figures belong in bench/results/, not in a test.
 * Needs root (the bench's own network and mount namespaces) and lego/certbot (scripts/setup.sh installs them).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "amlcert-bench-smoke-"));

afterAll(() => rmSync(out, { recursive: true, force: true }));

function benchSmoke(): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(ROOT, "scripts/bench.sh"), "--no-build", "--smoke", "--out", out], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 540_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe("scripts/bench.sh --smoke", () => {
  it("when run once without delay, every client issues, every section reports, and the results are written", { timeout: 600_000 }, async () => {
    const r = await benchSmoke();
    expect(r.code, r.stderr.slice(-4000)).toBe(0);
    for (const heading of [
      "### One DNS-01 issuance, whole process",
      "### Cold start and memory of an issuance",
      "### amlcert commands, whole process",
      "### Daemon memory over 5 scheduled cycles",
      "### Fleet: targets in one `renew`",
      "### Targets",
    ]) {
      expect(r.stdout).toContain(heading);
    }
    const results = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as {
      issuance: Record<string, Record<string, unknown[]>>;
      start: Record<string, unknown[]>;
      daemon: { cycles: number; samples: unknown[] };
      fleet: Array<{ targets: number; renewed: number }>;
      targets: Array<{ target: string }>;
    };
    expect(Object.keys(results.issuance).sort()).toEqual(["amlcert", "certbot", "floor", "lego"]);
    for (const client of Object.values(results.issuance)) expect(client["0"]).toHaveLength(1);
    expect(results.start.version).toHaveLength(1);
    expect(results.start.noopRenew).toHaveLength(1);
    expect(results.daemon.cycles).toBe(5);
    expect(results.fleet.map((f) => [f.targets, f.renewed])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(results.targets.length).toBeGreaterThan(0);
    expect(readFileSync(join(out, "latest.md"), "utf8")).toBe(r.stdout);
  });
});
