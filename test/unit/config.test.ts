import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import { parseDuration } from "../../src/config/duration.js";
import { fields } from "../../src/config/fields.js";
import { configSchema, directoryUrl } from "../../src/config/schema.js";
import { ExitCode } from "../../src/errors.js";

const SUB = "11111111-2222-3333-4444-555555555555";
const target = (over: Record<string, unknown> = {}) => ({
  fqdn: "ml.contoso.test",
  dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
  extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName: "aks", name: "azureml" },
  kubernetes: { kubeconfig: "/tmp/kc", context: "aks" },
  secretName: "aml-tls",
  ...over,
});

function load(yaml: string, env: Record<string, string> = {}, files: Record<string, string> = {}) {
  const all: Record<string, string> = { "/cfg.yaml": yaml, ...files };
  return loadConfig({
    path: "/cfg.yaml",
    env,
    readFile: (p) => {
      if (!(p in all)) throw Object.assign(new Error("nope"), { code: "ENOENT" });
      return all[p]!;
    },
  });
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(ExitCode.Config);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

const yamlOf = (o: unknown) => JSON.stringify(o); // JSON is YAML

describe("loadConfig", () => {
  it("when the file is minimal, fills every default", () => {
    const { config } = load(yamlOf({ acme: { accountKey: { file: "/k" } }, targets: [target()] }));
    expect(config.acme.keyType).toBe("rsa2048");
    expect(config.renewal.secretMode).toBe("versioned");
    expect(config.dns.propagationTimeout).toBe(600_000);
    expect(config.azure.cloud).toBe("AzurePublicCloud");
    expect(directoryUrl(config)).toBe("https://acme-v02.api.letsencrypt.org/directory");
    expect(config.targets[0]!.sans).toEqual([]);
  });

  it("when many fields are wrong, reports every problem at once, each naming its field", () => {
    const problems = problemsOf(() =>
      load(
        yamlOf({
          acme: { keyType: "dsa1024", email: "not-mail", directory: "ftp://x" },
          dns: { propagationTimeout: "soon" },
          targets: [
            target({ fqdn: "ml.elsewhere.test", secretName: "Bad_Name", extension: { subscriptionId: "x", resourceGroup: "rg", clusterType: "eks", clusterName: "c", name: "e" } }),
            target({ fqdn: "ml.elsewhere.test" }),
          ],
        }),
      ),
    );
    const text = problems.join("\n");
    expect(text).toMatch(/^acme\.keyType: /m);
    expect(text).toMatch(/^acme\.email: /m);
    expect(text).toMatch(/^acme\.directory: must be one of letsencrypt/m);
    expect(text).toMatch(/^dns\.propagationTimeout: "soon" is not a duration/m);
    expect(text).toMatch(/^targets\[0\]\.secretName: /m);
    expect(text).toMatch(/^targets\[0\]\.extension\.subscriptionId: must be a subscription ID/m);
    expect(text).toMatch(/^targets\[0\]\.extension\.clusterType: /m);
    expect(text).toMatch(/^targets\[0\]\.fqdn: is not inside dnsZone\.zone contoso\.test/m);
    expect(text).toMatch(/^targets\[1\]\.fqdn: duplicates targets\[0\]\.fqdn/m);
  });

  it("when a required field is missing, says it is required", () => {
    const problems = problemsOf(() => load(yamlOf({ targets: [{ ...target(), dnsZone: undefined }] })));
    expect(problems).toContain("targets[0].dnsZone: is required");
  });

  it("when there are no targets, says so", () => {
    expect(problemsOf(() => load(yamlOf({ targets: [] })))).toEqual(["targets: at least one target is required"]);
  });

  it("when a setting is misspelt, names the unknown key", () => {
    expect(problemsOf(() => load(yamlOf({ acme: { emial: "a@b.c" }, targets: [target()] })))).toEqual(["acme: unknown setting(s) emial"]);
  });

  it("when the YAML is broken, names the file", () => {
    expect(problemsOf(() => load("targets: [\n  - fqdn: x\n   bad"))[0]).toMatch(/^config file \/cfg\.yaml: /);
  });

  it("when the config file is missing, names the file", () => {
    expect(problemsOf(() => loadConfig({ path: "/nope.yaml", env: {}, readFile: () => { throw Object.assign(new Error(), { code: "ENOENT" }); } }))).toEqual([
      "config file /nope.yaml: cannot read (ENOENT)",
      "targets: is required",
    ]);
  });

  it("environment variables override the file, and a bad one is named with its variable", () => {
    const { config } = load(yamlOf({ targets: [target()] }), { AMLCERT_ACME_EMAIL: "ops@contoso.test", AMLCERT_DNS_NAME_SERVERS: "127.0.0.1:5353, 127.0.0.2", AMLCERT_VERIFY_PORT: "8443" });
    expect(config.acme.email).toBe("ops@contoso.test");
    expect(config.dns.nameServers).toEqual(["127.0.0.1:5353", "127.0.0.2"]);
    expect(config.verify.port).toBe(8443);
    expect(problemsOf(() => load(yamlOf({ targets: [target()] }), { AMLCERT_VERIFY_PORT: "https" }))[0]).toMatch(/^verify\.port \(from AMLCERT_VERIFY_PORT\): /);
  });

  it("X_FILE reads a value from a mounted file, and a missing file is named", () => {
    const { config } = load(yamlOf({ targets: [target()] }), { AMLCERT_ACME_EMAIL_FILE: "/run/email" }, { "/run/email": "ops@contoso.test\n" });
    expect(config.acme.email).toBe("ops@contoso.test");
    expect(problemsOf(() => load(yamlOf({ targets: [target()] }), { AMLCERT_ACME_EMAIL_FILE: "/run/nope" }))[0]).toBe("AMLCERT_ACME_EMAIL_FILE: cannot read /run/nope (ENOENT)");
  });

  it("reads the EAB HMAC key from its file and keeps it out of the printable config", () => {
    const loaded = load(yamlOf({ acme: { eab: { keyId: "kid-1", hmacKeyFile: "/run/hmac" } }, targets: [target()] }), {}, { "/run/hmac": "c2VjcmV0\n" });
    expect(loaded.eabHmacKey).toBe("c2VjcmV0");
    expect(JSON.stringify(loaded.config)).not.toContain("c2VjcmV0");
    const viaEnv = load(yamlOf({ acme: { eab: { keyId: "kid-1" } }, targets: [target()] }), { AMLCERT_ACME_EAB_HMAC_KEY_FILE: "/run/hmac" }, { "/run/hmac": "c2VjcmV0" });
    expect(viaEnv.eabHmacKey).toBe("c2VjcmV0");
    expect(JSON.stringify(viaEnv.config)).not.toContain("c2VjcmV0");
  });

  it("when a CA needs EAB and none is configured, names acme.eab", () => {
    expect(problemsOf(() => load(yamlOf({ acme: { directory: "zerossl" }, targets: [target()] })))).toEqual([expect.stringMatching(/^acme\.eab: the zerossl CA requires External Account Binding/)]);
  });

  it("when a SAN lies outside every configured zone, names the SAN", () => {
    expect(problemsOf(() => load(yamlOf({ targets: [target({ sans: ["api.other.test"] })] })))).toEqual([expect.stringMatching(/^targets\[0\]\.sans\[0\]: is not inside/)]);
  });

  it("when two targets name the same extension, names the second (one extension has one sslSecret)", () => {
    const problems = problemsOf(() => load(yamlOf({ targets: [target(), target({ fqdn: "api.contoso.test", secretName: "api-tls" })] })));
    expect(problems).toEqual([expect.stringMatching(/^targets\[1\]\.extension: is the same extension as targets\[0\]/)]);
  });

  it("when a name server, resolver or probe address is malformed, names the entry", () => {
    const problems = problemsOf(() => load(yamlOf({ dns: { nameServers: ["127.0.0.1:99999"], resolvers: ["a b"] }, targets: [target({ probeAddress: "[::1" })] })));
    expect(problems).toEqual([
      "dns.nameServers[0]: must be host, host:port or [ipv6]:port",
      "dns.resolvers[0]: must be host, host:port or [ipv6]:port",
      "targets[0].probeAddress: must be host, host:port or [ipv6]:port",
    ]);
  });

  it("the shipped example config is valid", () => {
    const text = readFileSync(new URL("../../config/amlcert.example.yaml", import.meta.url), "utf8");
    expect(load(text).config.targets[0]!.fqdn).toBe("ml.contoso.com");
  });

  it("every documented environment field exists in the schema", () => {
    const shape = (configSchema as unknown as { _zod: { def: { in?: { _zod: { def: { shape: Record<string, unknown> } } }; shape?: Record<string, unknown> } } })._zod.def;
    const top = (shape.in?._zod.def.shape ?? shape.shape)!;
    for (const f of fields) expect(Object.keys(top)).toContain(f.path.split(".")[0]);
    expect(new Set(fields.map((f) => f.env)).size).toBe(fields.length);
  });
});

describe("parseDuration", () => {
  it.each([
    ["90s", 90_000],
    ["10m", 600_000],
    ["1h30m", 5_400_000],
    ["30d", 2_592_000_000],
    ["250ms", 250],
    [5, 5000],
    ["5", 5000],
  ])("%s is %d ms", (input, ms) => expect(parseDuration(input)).toBe(ms));
  it.each(["soon", "10x", "1h 30m", "-5s", ""])("%s is not a duration", (input) => expect(parseDuration(input)).toBeUndefined());
});
