/**
 * The command line as a user meets it: the BUILT CLI (`node dist/src/cli.js`, made by `npm run -s build`) as a child
 * process. Only stable facts are asserted (exit codes, the names a message must carry, the version), not the usage
 * text. Every case here stops before anything is contacted; the config still points every address at a closed
 * loopback port, so a regression that starts talking fails here and never leaves the machine.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist/src/cli.js");
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const SUB = "11111111-2222-4333-8444-555555555555";
const CLOSED = "127.0.0.1:9"; // discard port: nothing listens there

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI with only PATH from this process (no AMLCERT_* leaks in), bounded to 30 s. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 30_000, encoding: "utf8" }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
      resolve({ code: typeof code === "number" ? code : null, stdout, stderr });
    });
  });
}

const target = (fqdn: string, clusterName: string, secretName: string) => ({
  fqdn,
  dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName, name: "azureml" },
  kubernetes: { kubeconfig: "/nonexistent/kubeconfig", context: clusterName },
  secretName,
  probeAddress: CLOSED,
});

const validConfig = {
  acme: { directory: `https://${CLOSED}/directory`, accountKey: { file: "/nonexistent/account.pem" } },
  azure: { resourceManagerEndpoint: `https://${CLOSED}`, authorityHost: `https://${CLOSED}` },
  dns: { nameServers: [CLOSED], resolvers: [CLOSED] },
  targets: [target("ml.contoso.test", "aks-1", "ml-tls"), target("api.contoso.test", "aks-2", "api-tls")],
};

let dir: string;
let configFile: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with npm run -s build (scripts/test.sh does)`);
  dir = mkdtempSync(join(tmpdir(), "amlcert-cli-"));
  configFile = join(dir, "amlcert.yaml");
  writeFileSync(configFile, JSON.stringify(validConfig)); // JSON is YAML
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const writeConfig = (name: string, config: unknown) => {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(config));
  return file;
};

describe("amlcert command line", () => {
  it("when the command is unknown, exits 2 and names the command", async () => {
    const r = await cli(["frobnicate", "--config", configFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("frobnicate");
  });

  it("when no command is given, exits 2", async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
  });

  it("when a command gets an extra argument, exits 2 and names the argument", async () => {
    const r = await cli(["plan", "surplus-argument", "--config", configFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("surplus-argument");
  });

  it("when an option is unknown, exits 2 and names the option", async () => {
    const r = await cli(["plan", "--frobnicate", "--config", configFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--frobnicate");
  });

  it("when --target names an FQDN that is not configured, exits 2 naming it and listing the configured targets", async () => {
    const r = await cli(["plan", "--config", configFile, "--target", "www.contoso.test"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("www.contoso.test");
    expect(r.stderr).toContain("ml.contoso.test");
    expect(r.stderr).toContain("api.contoso.test");
  });

  it("when the config file has a bad field, exits 2 naming the field", async () => {
    const bad = writeConfig("bad.yaml", { ...validConfig, acme: { ...validConfig.acme, keyType: "dsa1024" } });
    const r = await cli(["plan", "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^\s*- acme\.keyType: /m);
  });

  it("when several fields are bad, exits 2 naming each of them", async () => {
    const bad = writeConfig("bad2.yaml", { ...validConfig, verify: { port: 70000 }, targets: [{ ...validConfig.targets[0], secretName: "Bad_Name" }] });
    const r = await cli(["renew", "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^\s*- verify\.port: /m);
    expect(r.stderr).toMatch(/^\s*- targets\[0\]\.secretName: /m);
  });

  it("when a bad value comes from the environment, exits 2 naming the field and the variable", async () => {
    const r = await cli(["plan"], { AMLCERT_CONFIG: configFile, AMLCERT_VERIFY_PORT: "https" });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^\s*- verify\.port \(from AMLCERT_VERIFY_PORT\): /m);
  });

  it("when the config file does not exist, exits 2 naming the file", async () => {
    const missing = join(dir, "missing.yaml");
    const r = await cli(["plan", "--config", missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`config file ${missing}: cannot read (ENOENT)`);
  });

  it("version prints the package version and exits 0", async () => {
    const r = await cli(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${VERSION}\n`);
  });

  it("--help prints the usage on stdout, naming the commands and the options, and exits 0", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    for (const word of ["renew", "plan", "version", "--config", "--target", "--force"]) expect(r.stdout).toContain(word);
    const short = await cli(["-h"]);
    expect(short.code).toBe(0);
    expect(short.stdout).toBe(r.stdout);
  });
});
