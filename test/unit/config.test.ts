import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, MAX_EXPANDED_VALUES } from "../../src/config/load.js";
import { parseDuration } from "../../src/config/duration.js";
import { fields } from "../../src/config/fields.js";
import { configSchema, directoryUrl } from "../../src/config/schema.js";
import { AmlcertError, ExitCode } from "../../src/errors.js";
import { eabHint } from "../../src/config/hints.js";

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
    expect(config.renewal.secretMode).toBe("slots");
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
    expect(problems).toEqual([
      "acme.email: must be an e-mail address",
      'acme.keyType: Invalid option: expected one of "rsa2048"|"rsa3072"|"rsa4096"|"ecdsa-p256"|"ecdsa-p384"',
      'dns.propagationTimeout: "soon" is not a duration; use e.g. 90s, 10m, 12h, 30d',
      "targets[0].extension.subscriptionId: must be a subscription ID (GUID)",
      'targets[0].extension.clusterType: Invalid option: expected one of "managedClusters"|"connectedClusters"',
      "targets[0].secretName: must be a DNS-1123 label (lower case letters, digits, '-')",
      "targets[0].fqdn: is not inside dnsZone.zone contoso.test",
      "targets[1].fqdn: duplicates targets[0].fqdn",
      "targets[1].fqdn: is not inside dnsZone.zone contoso.test",
      "acme.directory: must be one of letsencrypt, letsencrypt-staging, zerossl, google, google-staging, buypass or an https:// URL",
    ]);
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

  it("when the YAML is broken, names the file and gives the first line of each parser error", () => {
    expect(problemsOf(() => load("targets: [\n  - fqdn: x\n   bad"))).toEqual([
      "config file /cfg.yaml: Block collections are not allowed within flow collections at line 2, column 3:",
      "config file /cfg.yaml: Flow sequence in block collection must be sufficiently indented and end with a ] at line 3, column 7:",
      "targets: is required",
    ]);
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
    expect(problemsOf(() => load(yamlOf({ targets: [target()] }), { AMLCERT_VERIFY_PORT: "https" }))).toEqual([
      "verify.port (from AMLCERT_VERIFY_PORT): Invalid input: expected number, received string",
    ]);
  });

  it("X_FILE reads a value from a mounted file, and a missing file is named", () => {
    const { config } = load(yamlOf({ targets: [target()] }), { AMLCERT_ACME_EMAIL_FILE: "/run/email" }, { "/run/email": "ops@contoso.test\n" });
    expect(config.acme.email).toBe("ops@contoso.test");
    expect(problemsOf(() => load(yamlOf({ targets: [target()] }), { AMLCERT_ACME_EMAIL_FILE: "/run/nope" }))[0]).toBe("AMLCERT_ACME_EMAIL_FILE: cannot read /run/nope (ENOENT)");
  });

  it("reads the EAB HMAC key from its file and keeps it out of the printable config", () => {
    const loaded = load(yamlOf({ acme: { eab: { keyId: "kid-1", hmacKeyFile: "/run/hmac" } }, targets: [target()] }), {}, { "/run/hmac": "c2VjcmV0\n" });
    expect(loaded.eabHmacKey).toBe("c2VjcmV0");
    expect(loaded.config.acme.eab).toEqual({ keyId: "kid-1", hmacKeyFile: "/run/hmac" });
    expect(JSON.stringify(loaded.config)).not.toContain("c2VjcmV0");
    const viaEnv = load(yamlOf({ acme: { eab: { keyId: "kid-1" } }, targets: [target()] }), { AMLCERT_ACME_EAB_HMAC_KEY_FILE: "/run/hmac" }, { "/run/hmac": "c2VjcmV0" });
    expect(viaEnv.eabHmacKey).toBe("c2VjcmV0");
    expect(JSON.stringify(viaEnv.config)).not.toContain("c2VjcmV0");
  });

  it("when a CA needs EAB and none is configured, names acme.eab", () => {
    expect(problemsOf(() => load(yamlOf({ acme: { directory: "zerossl" }, targets: [target()] })))).toEqual([
      "acme.eab: the zerossl CA requires External Account Binding (eab.keyId and eab.hmacKeyFile)",
    ]);
  });

  it("when a SAN lies outside every configured zone, names the SAN", () => {
    expect(problemsOf(() => load(yamlOf({ targets: [target({ sans: ["api.other.test"] })] })))).toEqual([
      "targets[0].sans[0]: is not inside dnsZone.zone contoso.test or a challengeZones zone",
    ]);
  });

  it("when two targets name the same extension, names the second (one extension has one sslSecret)", () => {
    const problems = problemsOf(() => load(yamlOf({ targets: [target(), target({ fqdn: "api.contoso.test", secretName: "api-tls" })] })));
    expect(problems).toEqual([
      "targets[1].extension: is the same extension as targets[0]; one extension has one sslSecret and one sslCname, so give it one target (use sans for more names)",
    ]);
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

describe("loadConfig: sources and their problems", () => {
  const base = () => yamlOf({ targets: [target()] });

  it("ConfigError is CONFIG_INVALID at stage config, exit 2, and lists every problem on its own line", () => {
    const err = new ConfigError(["a: one", "b: two"]);
    expect(err.code).toBe("CONFIG_INVALID");
    expect(err.stage).toBe("config");
    expect(err.exitCode).toBe(ExitCode.Config);
    expect(err.message).toBe("invalid configuration:\n  - a: one\n  - b: two");
    expect(err.problems).toEqual(["a: one", "b: two"]);
  });

  it("reads the file from disk when no readFile is given", () => {
    const dir = mkdtempSync(join(tmpdir(), "amlcert-config-"));
    try {
      const file = join(dir, "amlcert.yaml");
      writeFileSync(file, base());
      expect(loadConfig({ path: file, env: {} }).config.targets[0]!.fqdn).toBe("ml.contoso.test");
      expect(loadConfig({ env: { AMLCERT_CONFIG: file } }).config.targets[0]!.fqdn).toBe("ml.contoso.test");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("without a file, the configuration comes from the environment alone (and then lacks targets)", () => {
    expect(problemsOf(() => loadConfig({ env: { AMLCERT_ACME_EMAIL: "ops@contoso.test" }, readFile: () => { throw new Error("no file was named"); } }))).toEqual([
      "targets: is required",
    ]);
  });

  it("an empty file is an empty mapping; a scalar or a list at the top is refused", () => {
    expect(problemsOf(() => load(""))).toEqual(["targets: is required"]);
    const mapping = "config file /cfg.yaml: must be a YAML mapping with acme, azure, dns, ... and targets";
    expect(problemsOf(() => load("hello"))).toEqual([mapping, "targets: is required"]);
    expect(problemsOf(() => load("- a\n- b\n"))).toEqual([mapping, "targets: is required"]);
    expect(problemsOf(() => load("42"))).toEqual([mapping, "targets: is required"]);
  });

  it("a key given twice in the YAML is refused", () => {
    expect(problemsOf(() => load("targets: []\ntargets: []\n"))).toEqual([
      "config file /cfg.yaml: Map keys must be unique at line 2, column 1:",
      "targets: is required",
    ]);
  });

  it("an unknown top-level setting is named", () => {
    expect(problemsOf(() => load(yamlOf({ extra: 1, targets: [target()] })))).toEqual(["(top level): unknown setting(s) extra"]);
  });

  it("several unknown settings in one section are listed together", () => {
    expect(problemsOf(() => load(yamlOf({ acme: { emial: "a@b.c", mail: "a@b.c" }, targets: [target()] })))).toEqual(["acme: unknown setting(s) emial, mail"]);
  });

  it("a value of the wrong type is named with zod's words, not as missing", () => {
    expect(problemsOf(() => load(yamlOf({ verify: { port: "https" }, targets: [target()] })))).toEqual(["verify.port: Invalid input: expected number, received string"]);
  });

  it("a variable overrides a section the file left empty (null)", () => {
    expect(load("dns:\n" + "targets: " + yamlOf([target()]), { AMLCERT_DNS_TXT_TTL: "120" }).config.dns.txtTtl).toBe(120);
  });

  it("a null section with nothing from the environment is reported, not a crash", () => {
    expect(problemsOf(() => load("acme:\ntargets: " + yamlOf([target()])))).toEqual(["acme: Invalid input: expected object, received null"]);
  });

  it("numbers from the environment are trimmed; anything but a plain decimal number stays text and is named", () => {
    expect(load(base(), { AMLCERT_VERIFY_PORT: " 8443 " }).config.verify.port).toBe(8443);
    for (const bad of ["x8443", "8443x", "0x1F"]) {
      expect(problemsOf(() => load(base(), { AMLCERT_VERIFY_PORT: bad }))).toEqual(["verify.port (from AMLCERT_VERIFY_PORT): Invalid input: expected number, received string"]);
    }
    expect(problemsOf(() => load(base(), { AMLCERT_DNS_TXT_TTL: "60.55" }))).toEqual(["dns.txtTtl (from AMLCERT_DNS_TXT_TTL): Invalid input: expected int, received number"]);
    expect(problemsOf(() => load(base(), { AMLCERT_DNS_TXT_TTL: "-5" }))).toEqual(["dns.txtTtl (from AMLCERT_DNS_TXT_TTL): Too small: expected number to be >=1"]);
  });

  it("booleans from the environment are exactly true or false", () => {
    expect(load(base(), { AMLCERT_DAEMON_RUN_AT_START: "false" }).config.daemon.runAtStart).toBe(false);
    expect(load(yamlOf({ daemon: { runAtStart: false }, targets: [target()] }), { AMLCERT_DAEMON_RUN_AT_START: "true" }).config.daemon.runAtStart).toBe(true);
    expect(problemsOf(() => load(base(), { AMLCERT_DAEMON_RUN_AT_START: "yes" }))).toEqual([
      "daemon.runAtStart (from AMLCERT_DAEMON_RUN_AT_START): Invalid input: expected boolean, received string",
    ]);
  });

  it("a boolean read from a mounted file loses its trailing newline", () => {
    expect(load(base(), { AMLCERT_DAEMON_RUN_AT_START_FILE: "/run/flag" }, { "/run/flag": "false\n" }).config.daemon.runAtStart).toBe(false);
  });

  it("lists from the environment skip empty entries", () => {
    expect(load(base(), { AMLCERT_DNS_RESOLVERS: "127.0.0.1,, 127.0.0.2:5353," }).config.dns.resolvers).toEqual(["127.0.0.1", "127.0.0.2:5353"]);
  });

  it("text from the environment is trimmed", () => {
    expect(load(base(), { AMLCERT_ACME_EMAIL: "  ops@contoso.test " }).config.acme.email).toBe("ops@contoso.test");
  });

  it("an empty variable, or an empty X_FILE, counts as unset", () => {
    const fromFile = yamlOf({ acme: { email: "file@contoso.test" }, targets: [target()] });
    expect(load(fromFile, { AMLCERT_ACME_EMAIL: "" }).config.acme.email).toBe("file@contoso.test");
    expect(load(fromFile, { AMLCERT_ACME_EMAIL_FILE: "", AMLCERT_ACME_EMAIL: "env@contoso.test" }).config.acme.email).toBe("env@contoso.test");
    expect(load(fromFile, { AMLCERT_ACME_EMAIL_FILE: "" }).sources).toEqual({});
  });

  it("records which variable each overridden field came from", () => {
    expect(load(base(), { AMLCERT_VERIFY_PORT: "8443", AMLCERT_ACME_EMAIL_FILE: "/run/email" }, { "/run/email": "ops@contoso.test" }).sources).toEqual({
      "verify.port": "AMLCERT_VERIFY_PORT",
      "acme.email": "AMLCERT_ACME_EMAIL",
    });
  });

  it("a mounted file that cannot be read is named with the error's code, or its message when it has none", () => {
    expect(
      problemsOf(() =>
        loadConfig({
          path: "/cfg.yaml",
          env: { AMLCERT_ACME_EMAIL_FILE: "/run/broken" },
          readFile: (p) => {
            if (p === "/cfg.yaml") return base();
            throw new Error("device not ready");
          },
        }),
      ),
    ).toEqual(["AMLCERT_ACME_EMAIL_FILE: cannot read /run/broken (device not ready)"]);
  });

  it("the EAB HMAC key can be inline (then it is kept out of the config) or in a file; an empty or missing file is named", () => {
    const inline = load(yamlOf({ acme: { eab: { keyId: "kid-1", hmacKey: "aW5saW5l" } }, targets: [target()] }));
    expect(inline.eabHmacKey).toBe("aW5saW5l");
    expect(inline.config.acme.eab).toEqual({ keyId: "kid-1" });
    expect(load(base()).eabHmacKey).toBeUndefined();
    const eab = yamlOf({ acme: { eab: { keyId: "kid-1", hmacKeyFile: "/run/hmac" } }, targets: [target()] });
    expect(problemsOf(() => load(eab, {}, { "/run/hmac": " \n" }))).toEqual(["acme.eab.hmacKeyFile: /run/hmac is empty"]);
    expect(problemsOf(() => load(eab))).toEqual(["acme.eab.hmacKeyFile: cannot read /run/hmac (ENOENT)"]);
    expect(
      problemsOf(() =>
        loadConfig({
          path: "/cfg.yaml",
          env: {},
          readFile: (p) => {
            if (p === "/cfg.yaml") return eab;
            throw new Error("permission check failed");
          },
        }),
      ),
    ).toEqual(["acme.eab.hmacKeyFile: cannot read /run/hmac (permission check failed)"]);
  });
});

describe("loadConfig: YAML anchors and aliases", () => {
  const targetYaml = (i: number) =>
    `  - {fqdn: ml${i}.contoso.test, dnsZone: *zone, challengeZones: [*zone], extension: {<<: *ext, clusterName: aks${i}}, kubernetes: {kubeconfig: /tmp/kc, context: aks${i}}, secretName: tls-${i}}`;

  it("when a legitimate config uses one anchor in 150 targets (300 aliases) and merge keys, it loads, each target with its own copy", () => {
    const inTargets = [
      "acme: {accountKey: {file: /k}}",
      "targets:",
      `  - {fqdn: ml0.contoso.test, dnsZone: &zone {subscriptionId: "${SUB}", resourceGroup: dns-rg, zone: contoso.test}, extension: &ext {subscriptionId: "${SUB}", resourceGroup: aks-rg, clusterType: managedClusters, name: azureml, clusterName: aks0}, kubernetes: {kubeconfig: /tmp/kc, context: aks0}, secretName: tls-0}`,
      ...Array.from({ length: 149 }, (_, i) => targetYaml(i + 1)),
    ].join("\n");
    const { config } = load(inTargets);
    expect(config.targets).toHaveLength(150);
    expect(config.targets[149]).toMatchObject({
      fqdn: "ml149.contoso.test",
      dnsZone: { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" },
      challengeZones: [{ subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" }],
      extension: { subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", name: "azureml", clusterName: "aks149" },
    });
    expect(config.targets[0]!.extension.clusterName).toBe("aks0");
    expect(config.targets[1]!.dnsZone).not.toBe(config.targets[2]!.dnsZone);
  });

  it("when a variable overrides a section that an alias shares with another section, only the named section changes", () => {
    const yaml = [`acme: {accountKey: {file: /k}}`, "verify: &timing {timeout: 1m, interval: 2s}", "dns: {propagationTimeout: 1m, propagationInterval: 2s}", `targets: [${JSON.stringify(target())}]`].join("\n");
    const { config } = load(yaml, { AMLCERT_VERIFY_TIMEOUT: "3m" });
    expect(config.verify.timeout).toBe(180_000);
    expect(config.dns.propagationTimeout).toBe(60_000);
  });

  it("when aliases of aliases would expand beyond the bound (an alias bomb), it is a config error naming the file, found without expanding it", () => {
    const levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
    for (let i = 1; i < 9; i++) levels.push(`${"abcdefghij"[i]}: &${"abcdefghij"[i]} [${Array(10).fill(`*${"abcdefghij"[i - 1]}`).join(", ")}]`);
    const problems = problemsOf(() => load(levels.join("\n")));
    expect(problems).toEqual([
      `config file /cfg.yaml: its aliases expand to more than ${MAX_EXPANDED_VALUES} values; this looks like an alias bomb, not a configuration`,
      "targets: is required",
    ]);
  });

  it("just under the bound, a large expansion still loads as data (the bound is on values, not on alias uses)", () => {
    const yaml = `a: &a [${Array(99).fill("x").join(", ")}]\nb: [${Array(900).fill("*a").join(", ")}]`;
    // 900 aliases of a 100-value list: 90,002 values, under the bound; refused only as unknown settings
    expect(problemsOf(() => load(yaml))).toEqual(["targets: is required", "(top level): unknown setting(s) a, b"]);
  });

  it("when an alias names an anchor that is not defined before it, it is a config error naming the alias, not a crash", () => {
    expect(problemsOf(() => load(`targets: [*nowhere]`))).toEqual(["config file /cfg.yaml: the alias *nowhere names no anchor defined before it", "targets: is required"]);
    expect(problemsOf(() => load(`a: *later\nb: &later 1`))).toEqual(["config file /cfg.yaml: the alias *later names no anchor defined before it", "targets: is required"]);
  });

  it("when an alias is inside the value it names (a cycle), it is a config error", () => {
    expect(problemsOf(() => load(`targets: &t [*t]`))).toEqual(["config file /cfg.yaml: the alias *t is inside the value anchored &t (a cycle)", "targets: is required"]);
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

describe("eabHint", () => {
  const refused = () =>
    new AmlcertError("ACME_ACCOUNT", "acme-account", "ACME account registration failed: externalAccountRequired: no external account binding provided", {
      cause: new Error("403"),
      details: { problemType: "externalAccountRequired", problemDetail: "no external account binding provided" },
    });

  it("when the CA demands External Account Binding and none is configured, the message names acme.eab and its settings, keeping code, stage, cause and details", () => {
    const err = refused();
    const hinted = eabHint(err, false) as AmlcertError;
    expect(hinted.message).toBe(
      "ACME account registration failed: externalAccountRequired: no external account binding provided; this CA requires External Account Binding: set acme.eab.keyId and acme.eab.hmacKeyFile (or AMLCERT_ACME_EAB_KEY_ID and AMLCERT_ACME_EAB_HMAC_KEY_FILE) to the credentials the CA issued",
    );
    expect([hinted.code, hinted.stage, hinted.exitCode, hinted.cause]).toEqual(["ACME_ACCOUNT", "acme-account", ExitCode.RenewalFailed, err.cause]);
    expect(hinted.details).toEqual({ ...err.details, setting: "acme.eab" });
  });

  it("when EAB is configured and the CA still demands it, says the binding given was not accepted", () => {
    expect((eabHint(refused(), true) as AmlcertError).message).toMatch(/; acme\.eab is set, but the CA did not accept the binding: check acme\.eab\.keyId and the key in acme\.eab\.hmacKeyFile$/);
  });

  it("when EAB is configured and the CA refuses the binding (a wrong key ID or HMAC key), names acme.eab's settings", () => {
    const wrongKey = new AmlcertError("ACME_ACCOUNT", "acme-account", "ACME account registration failed: unauthorized: external account binding JWS verification error", {
      details: { problemType: "unauthorized", problemDetail: "external account binding JWS verification error: square/go-jose: error in cryptographic primitive" },
    });
    expect((eabHint(wrongKey, true) as AmlcertError).message).toBe(
      "ACME account registration failed: unauthorized: external account binding JWS verification error; acme.eab is set, but the CA did not accept the binding: check acme.eab.keyId and the key in acme.eab.hmacKeyFile",
    );
    // without EAB configured, an unauthorized answer is about something else
    expect(eabHint(wrongKey, false)).toBe(wrongKey);
    // only account errors are hinted
    const order = new AmlcertError("ACME_REJECTED", "acme-order", "x", { details: { problemType: "externalAccountRequired" } });
    expect(eabHint(order, false)).toBe(order);
  });

  it("any other error passes through unchanged", () => {
    const other = new AmlcertError("ACME_ACCOUNT", "acme-account", "x", { details: { problemType: "invalidContact" } });
    expect(eabHint(other, false)).toBe(other);
    const plain = new Error("y");
    expect(eabHint(plain, false)).toBe(plain);
  });
});

describe("loadConfig: zone references", () => {
  it("when a dnsZone or challengeZones entry has a misspelt key, it is named (not silently dropped)", () => {
    const zone = { subscriptionId: SUB, resourceGroup: "dns-rg", zone: "contoso.test" };
    const problems = problemsOf(() => load(yamlOf({ acme: { accountKey: { file: "/k" } }, targets: [target({ dnsZone: { ...zone, zoen: "x" }, challengeZones: [{ ...zone, resourcegroup: "y" }] })] })));
    expect(problems).toEqual(["targets[0].dnsZone: unknown setting(s) zoen", "targets[0].challengeZones[0]: unknown setting(s) resourcegroup"]);
  });
});
