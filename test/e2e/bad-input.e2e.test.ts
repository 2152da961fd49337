/**
 * The bad-input corpus, end to end: the built CLI as a child process against Pebble (behind the ACME front) and the
 * stand-ins. Each case asserts the message (naming the field, file or object), the documented exit code, and what
 * was written, from the stand-ins' own request logs:
 *
 * - configuration, files and the command line: exit 2 and NOTHING contacted (no ARM, Entra, Kubernetes or ACME
 *   request, the DNS zone unchanged);
 * - what is already in the secret: `plan` names the reason and the secret and writes nothing; `renew` replaces a
 *   broken pair (it serves nobody well) and never a sound one with a worse one;
 * - what the CA answers: a certificate that does not match the key, is expired, is garbage, covers another name or
 *   lives shorter than the one in place is refused before any write (exit 3): no certificate secret written, no
 *   extension update, no TXT value left, the previous certificate still in place.
 */
import { X509Certificate } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { startHarness, type CliRun, type Harness, resultLine } from "../harness/harness.js";
import { inspectPair, pemBlocks } from "../../src/certs/certificate.js";
import { encryptKey, sec1Key } from "../support/certs.js";

const FQDN = "ml.contoso.test";
const SECRET = "aml-tls";
const DAY = 86_400_000;
const ECDSA_WARNING = /acme\.keyType is an ECDSA key type: ECDSA is unproven with the Azure ML extension/;

type Cfg = Record<string, unknown> & { targets: Record<string, unknown>[] };

interface Mark {
  arm: number;
  kube: number;
  entra: number;
  front: number;
  orders: number;
  zones: string;
}

function mark(h: Harness): Mark {
  return {
    arm: h.arm.requests.length,
    kube: h.clusters[0]!.kube.requests.length,
    entra: h.entra.tokenRequests.length,
    front: h.acmeFront!.log().length,
    orders: h.acmeFront!.orders().length,
    zones: zoneSnapshot(h),
  };
}

function zoneSnapshot(h: Harness): string {
  return JSON.stringify(h.zones.allZones().map((z) => ({ zone: z.name, sets: h.zones.listRecordSets(z) })));
}

/** Nothing contacted at all: the run stopped at the configuration. */
function expectNothingContacted(h: Harness, m: Mark, run: CliRun) {
  const what = `exit ${run.code}\n${run.stderr}`;
  expect(h.arm.requests.slice(m.arm), what).toEqual([]);
  expect(h.clusters[0]!.kube.requests.slice(m.kube), what).toEqual([]);
  expect(h.entra.tokenRequests.slice(m.entra), what).toEqual([]);
  expect(h.acmeFront!.log().slice(m.front), what).toEqual([]);
  expect(zoneSnapshot(h), what).toBe(m.zones);
}

/** Reads only: no write to ARM or Kubernetes, no ACME order, the DNS zone unchanged. */
function expectNoWrites(h: Harness, m: Mark, run: CliRun) {
  const what = `exit ${run.code}\n${run.stderr}`;
  expect(h.arm.requests.slice(m.arm).filter((r) => r.method !== "GET"), what).toEqual([]);
  expect(h.clusters[0]!.kube.requests.slice(m.kube).filter((r) => r.method !== "GET"), what).toEqual([]);
  expect(h.acmeFront!.orders().slice(m.orders), what).toEqual([]);
  expect(zoneSnapshot(h), what).toBe(m.zones);
}

/** Writes to the certificate secret (create or replace), from the Kubernetes stand-in's log. */
function secretWrites(h: Harness, m: Mark) {
  return h.clusters[0]!.kube.requests.slice(m.kube).filter((r) => r.resource === "secrets" && r.method !== "GET" && r.name !== "amlcert-acme-account");
}

function extensionPatches(h: Harness, m: Mark) {
  return h.arm.requests.slice(m.arm).filter((r) => r.method === "PATCH");
}

function txtLeft(h: Harness): string[] {
  return h.zones.allZones().flatMap((z) => h.zones.listRecordSets(z, "TXT").map((r) => `${r.name}.${z.name}`));
}

const result = (run: CliRun) => resultLine(run, FQDN);

/** The problem lines of a configuration error ("  - <field>: <message>"). */
const problemLines = (run: CliRun) => run.stderr.split("\n").filter((l) => l.startsWith("  - ")).map((l) => l.slice(4));

describe("bad input: configuration, files and the command line (exit 2, nothing contacted)", () => {
  let h: Harness;
  let base: Cfg;
  let n = 0;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true });
    base = parseYaml(readFileSync(h.writeConfig(), "utf8")) as Cfg;
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** The harness's config, changed by `mutate`, written to a new file. */
  const variant = (mutate: (c: Cfg) => void): string => {
    const c = structuredClone(base);
    mutate(c);
    const path = join(h.dir, `variant-${++n}.yaml`);
    writeFileSync(path, stringify(c));
    return path;
  };
  const rawFile = (text: string | Buffer): string => {
    const path = join(h.dir, `raw-${++n}.yaml`);
    writeFileSync(path, text);
    return path;
  };
  const t0 = (c: Cfg) => c.targets[0]!;
  const sub = (o: unknown, k: string) => (o as Record<string, Record<string, unknown>>)[k]!;

  /** Run `plan` (or `args`) on `config` and check exit 2, nothing contacted, and the problem lines. */
  async function refused(config: string, expected: (string | RegExp)[], opts: { env?: Record<string, string>; args?: string[] } = {}) {
    const m = mark(h);
    const run = await h.runCli([...(opts.args ?? ["plan"]), "--config", config], { env: opts.env });
    expect(run.code, run.stderr).toBe(2);
    const lines = problemLines(run);
    for (const e of expected) {
      if (typeof e === "string") expect(lines, run.stderr).toContain(e);
      else expect(lines.some((l) => e.test(l)), `${e} in\n${run.stderr}`).toBe(true);
    }
    expectNothingContacted(h, m, run);
    expect(run.stdout).toBe("");
    return run;
  }

  type Case = [name: string, mutate: (c: Cfg) => void, expected: (string | RegExp)[]];
  const cases: Case[] = [
    ["an unknown top-level setting", (c) => (c.acmee = {}), ["(top level): unknown setting(s) acmee"]],
    ["an unknown setting in a target", (c) => (t0(c).fqnd = "x"), ["targets[0]: unknown setting(s) fqnd"]],
    ["an unknown setting deep in a target", (c) => (sub(t0(c), "dnsZone").zoen = "x"), ["targets[0].dnsZone: unknown setting(s) zoen"]],
    ["a number given as text", (c) => (sub(c, "verify").port = "https"), [/^verify\.port: Invalid input: expected number, received string$/]],
    ["a boolean given as text", (c) => (t0(c).manageRecord = "yes"), [/^targets\[0\]\.manageRecord: Invalid input: expected boolean, received string$/]],
    ["targets given as a mapping, not a list", (c) => ((c as Record<string, unknown>).targets = { fqdn: FQDN }), [/^targets: Invalid input: expected array, received object$/]],
    ["a duration in words", (c) => (sub(c, "dns").propagationTimeout = "10 minutes"), ['dns.propagationTimeout: "10 minutes" is not a duration; use e.g. 90s, 10m, 12h, 30d']],
    ["a negative renewBefore", (c) => ((c as Record<string, unknown>).renewal = { renewBefore: "-5d" }), ['renewal.renewBefore: "-5d" is not a duration; use e.g. 30d']],
    ["a duration with a space inside", (c) => (sub(c, "extension").lroTimeout = "1h 30m"), ['extension.lroTimeout: "1h 30m" is not a duration; use e.g. 90s, 10m, 12h, 30d']],
    ["an FQDN with an empty label", (c) => (t0(c).fqdn = "ml..contoso.test"), [/^targets\[0\]\.fqdn: must be a fully qualified domain name/]],
    ["an FQDN with an underscore", (c) => (t0(c).fqdn = "ml_1.contoso.test"), [/^targets\[0\]\.fqdn: must be a fully qualified domain name/]],
    ["a wildcard as the endpoint FQDN", (c) => (t0(c).fqdn = "*.contoso.test"), ["targets[0].fqdn: must not be a wildcard"]],
    ["an FQDN outside the DNS zone", (c) => (t0(c).fqdn = "ml.fabrikam.test"), ["targets[0].fqdn: is not inside dnsZone.zone contoso.test"]],
    ["a single-label FQDN", (c) => (t0(c).fqdn = "ml"), [/^targets\[0\]\.fqdn: must be a fully qualified domain name/]],
    ["a SAN with a space", (c) => (t0(c).sans = ["bad name.contoso.test"]), [/^targets\[0\]\.sans\[0\]: must be a fully qualified domain name/]],
    ["a SAN outside every zone", (c) => (t0(c).sans = ["api.fabrikam.test"]), ["targets[0].sans[0]: is not inside dnsZone.zone contoso.test or a challengeZones zone"]],
    [
      "the same target twice",
      (c) => c.targets.push(structuredClone(t0(c))),
      ["targets[1].fqdn: duplicates targets[0].fqdn", /^targets\[1\]\.extension: is the same extension as targets\[0\]/],
    ],
    ["two targets on one extension", (c) => c.targets.push({ ...structuredClone(t0(c)), fqdn: "api.contoso.test" }), [/^targets\[1\]\.extension: is the same extension as targets\[0\]; one extension has one sslSecret/]],
    ["a target without its extension", (c) => delete t0(c).extension, ["targets[0].extension: is required"]],
    ["no targets", (c) => (c.targets = []), ["targets: at least one target is required"]],
    ["a secret name in upper case", (c) => (t0(c).secretName = "AML_TLS"), ["targets[0].secretName: must be a DNS-1123 label (lower case letters, digits, '-')"]],
    ["a secret name longer than a DNS label", (c) => (t0(c).secretName = "a".repeat(70)), [/^targets\[0\]\.secretName: must be at most \d+ characters/]],
    ["a subscription ID that is not a GUID", (c) => (sub(t0(c), "dnsZone").subscriptionId = "my-subscription"), ["targets[0].dnsZone.subscriptionId: must be a subscription ID (GUID)"]],
    ["an unknown cluster type", (c) => (sub(t0(c), "extension").clusterType = "eksClusters"), [/^targets\[0\]\.extension\.clusterType: Invalid option: expected one of "managedClusters"\|"connectedClusters"$/]],
    ["an unknown key type", (c) => (sub(c, "acme").keyType = "dsa1024"), [/^acme\.keyType: Invalid option: expected one of "rsa2048"/]],
    ["a plain-HTTP ACME directory", (c) => (sub(c, "acme").directory = "http://127.0.0.1:1/dir"), [/^acme\.directory: must be one of letsencrypt, .* or an https:\/\/ URL$/]],
    ["an e-mail that is not one", (c) => (sub(c, "acme").email = "platform-at-contoso"), ["acme.email: must be an e-mail address"]],
    ["a CA preset that needs EAB, without EAB", (c) => (sub(c, "acme").directory = "zerossl"), ["acme.eab: the zerossl CA requires External Account Binding (eab.keyId and eab.hmacKeyFile)"]],
    ["EAB without its HMAC key file", (c) => (sub(c, "acme").eab = { keyId: "kid-1" }), ["acme.eab: needs hmacKeyFile (or AMLCERT_ACME_EAB_HMAC_KEY_FILE)"]],
    ["inCluster together with a kubeconfig", (c) => (sub(t0(c), "kubernetes").inCluster = true), ["targets[0].kubernetes: inCluster cannot be combined with kubeconfig/context"]],
    ["the account key in a file and a secret", (c) => (sub(sub(c, "acme"), "accountKey").file = "/var/lib/amlcert/account.pem"), ["acme.accountKey: set either file or secret, not both"]],
    ["a malformed probe address", (c) => (t0(c).probeAddress = "[::1"), ["targets[0].probeAddress: must be host, host:port or [ipv6]:port"]],
    ["an empty list of name servers", (c) => (sub(c, "dns").nameServers = []), ["dns.nameServers: must list at least one server, or be left out"]],
    ["a TXT TTL of zero", (c) => (sub(c, "dns").txtTtl = 0), [/^dns\.txtTtl: Too small: expected number to be >=1$/]],
    ["a schedule that is not cron", (c) => ((c as Record<string, unknown>).daemon = { schedule: "every day" }), [/^daemon\.schedule: "every day" is not a cron expression \(.*\); e\.g\. "0 \*\/6 \* \* \*"$/]],
    ["a Pushgateway that is not a URL", (c) => ((c as Record<string, unknown>).metrics = { pushgateway: "pushgateway:9091" }), ["metrics.pushgateway: must be an http:// or https:// URL"]],
    ["an unknown log level", (c) => (sub(c, "log").level = "verbose"), [/^log\.level: Invalid option: expected one of "trace"\|"debug"\|"info"\|"warn"\|"error"$/]],
  ];

  it.each(cases)("when the config has %s, exits 2 naming the field and contacts nothing", async (_name, mutate, expected) => {
    await refused(variant(mutate), expected);
  });

  it("when several fields are wrong, every one is named in one run", async () => {
    await refused(
      variant((c) => {
        sub(c, "verify").port = 70000;
        t0(c).secretName = "Bad_Name";
        sub(c, "dns").propagationInterval = "soon";
      }),
      [/^verify\.port: Too big/, "targets[0].secretName: must be a DNS-1123 label (lower case letters, digits, '-')", 'dns.propagationInterval: "soon" is not a duration; use e.g. 90s, 10m, 12h, 30d'],
    );
  });

  it("when a variable holds a bad value, the field and the variable are named", async () => {
    await refused(h.writeConfig(), [/^verify\.port \(from AMLCERT_VERIFY_PORT\): Invalid input: expected number, received string$/], { env: { AMLCERT_VERIFY_PORT: "abc" } });
  });

  it("when a boolean variable is not exactly true or false, the field and the variable are named", async () => {
    await refused(h.writeConfig(), [/^daemon\.runAtStart \(from AMLCERT_DAEMON_RUN_AT_START\): Invalid input: expected boolean, received string$/], { env: { AMLCERT_DAEMON_RUN_AT_START: "yes" } });
  });

  it("when a variable's _FILE names a file that does not exist, the variable and the file are named", async () => {
    const missing = join(h.dir, "no-such-email");
    await refused(h.writeConfig(), [`AMLCERT_ACME_EMAIL_FILE: cannot read ${missing} (ENOENT)`], { env: { AMLCERT_ACME_EMAIL_FILE: missing } });
  });

  it("when the EAB HMAC key file does not exist, is a directory, or is empty, acme.eab.hmacKeyFile is named with the file", async () => {
    const missing = join(h.dir, "no-such-hmac");
    await refused(variant((c) => (sub(c, "acme").eab = { keyId: "kid-1", hmacKeyFile: missing })), [`acme.eab.hmacKeyFile: cannot read ${missing} (ENOENT)`]);
    const dir = join(h.dir, "hmac-dir");
    mkdirSync(dir, { recursive: true });
    await refused(variant((c) => (sub(c, "acme").eab = { keyId: "kid-1", hmacKeyFile: dir })), [`acme.eab.hmacKeyFile: cannot read ${dir} (EISDIR)`]);
    const empty = join(h.dir, "empty-hmac");
    writeFileSync(empty, "\n");
    await refused(variant((c) => (sub(c, "acme").eab = { keyId: "kid-1", hmacKeyFile: empty })), [`acme.eab.hmacKeyFile: ${empty} is empty`]);
  });

  it("when --target names an FQDN that is not configured, exits 2 naming it and the configured ones", async () => {
    const m = mark(h);
    const run = await h.runCli(["plan", "--config", h.writeConfig(), "--target", "www.contoso.test"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--target www.contoso.test: not among the configured targets (${FQDN})`);
    expectNothingContacted(h, m, run);
  });

  it("when verify.trustBundleFile holds no certificate (garbage, or a key by mistake), exits 2 naming the field and the file, before anything is contacted", async () => {
    for (const [name, text] of [
      ["garbage-bundle.pem", "not a bundle\n"],
      ["key-as-bundle.pem", (await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY) })).keyPem],
    ] as const) {
      const bundle = join(h.dir, name);
      writeFileSync(bundle, text);
      const m = mark(h);
      const run = await h.runCli(["plan", "--config", variant((c) => (sub(c, "verify").trustBundleFile = bundle))]);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toContain(`amlcert: verify.trustBundleFile: ${bundle}: holds no PEM certificate (BEGIN CERTIFICATE)`);
      expect(run.stderr).not.toContain("PRIVATE KEY");
      expectNothingContacted(h, m, run);
    }
  });

  it("when the kubeconfig file is missing, or names no such context, exits 2 naming the file and the context; nothing is written", async () => {
    const missing = join(h.dir, "no-such-kubeconfig");
    for (const [mutate, message] of [
      [(c: Cfg) => (sub(t0(c), "kubernetes").kubeconfig = missing), `cannot use kubeconfig ${missing} context "aks-ml": ENOENT: no such file or directory, open '${missing}'`],
      [(c: Cfg) => (sub(t0(c), "kubernetes").context = "no-such-context"), `cannot use kubeconfig ${h.kubeconfig} context "no-such-context": no context "no-such-context" (contexts: aks-ml)`],
    ] as const) {
      const m = mark(h);
      const run = await h.runCli(["plan", "--config", variant(mutate)]);
      expect(run.code, run.stderr).toBe(2);
      expect(result(run)).toMatchObject({ action: "error", error: { code: "CONFIG_INVALID", message } });
      expectNoWrites(h, m, run);
    }
  });

  it("when the self-hosted ACME account key file holds garbage, renew exits 3 naming the file and orders nothing", async () => {
    const file = join(h.dir, "garbage-account.pem");
    writeFileSync(file, "garbage");
    const m = mark(h);
    const run = await h.runCli(["renew", "--config", variant((c) => (sub(c, "acme").accountKey = { file }))]);
    expect(run.code, run.stderr).toBe(3);
    expect(result(run)).toMatchObject({ action: "failed", error: { code: "ACME_ACCOUNT", stage: "acme-account", message: `the ACME account key in file ${file} is not a valid private key; fix or remove it` } });
    expect(h.acmeFront!.orders().slice(m.orders)).toEqual([]);
    expect(secretWrites(h, m)).toEqual([]);
    expect(extensionPatches(h, m)).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe("garbage");
  });

  describe("files and YAML", () => {
    it("when the config file does not exist, the file is named", async () => {
      const missing = join(h.dir, "missing.yaml");
      await refused(missing, [`config file ${missing}: cannot read (ENOENT)`]);
    });

    it("when the config path is a directory, the file and the error are named", async () => {
      await refused(h.dir, [`config file ${h.dir}: cannot read (EISDIR)`]);
    });

    it("when the config file is empty, the missing targets are named", async () => {
      await refused(rawFile(""), ["targets: is required"]);
    });

    it("when the YAML is broken, the file and the parser's first line are named", async () => {
      const path = rawFile("targets: [\n  - fqdn: x\n   bad");
      await refused(path, [`config file ${path}: Block collections are not allowed within flow collections at line 2, column 3:`]);
    });

    it("when a key is given twice, the file is named", async () => {
      const path = rawFile(`${stringify(base)}acme: {}\n`);
      await refused(path, [/^config file .*: Map keys must be unique at line \d+, column 1:$/]);
    });

    it("when the top level is a list, the file is named", async () => {
      const path = rawFile("- targets\n");
      await refused(path, [`config file ${path}: must be a YAML mapping with acme, azure, dns, ... and targets`]);
    });

    it("when a private key is passed as the config file by mistake, it is refused and not echoed", async () => {
      const key = (await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY) })).keyPem;
      const path = rawFile(key);
      const run = await refused(path, [`config file ${path}: must be a YAML mapping with acme, azure, dns, ... and targets`]);
      expect(run.stderr).not.toContain(key.split("\n")[1]!);
    });

    it("when aliases of aliases expand beyond the bound (an alias bomb), it is a config error naming the file, not a crash", async () => {
      const levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
      for (let i = 1; i < 9; i++) levels.push(`${"abcdefghij"[i]}: &${"abcdefghij"[i]} [${Array(10).fill(`*${"abcdefghij"[i - 1]}`).join(", ")}]`);
      const path = rawFile(levels.join("\n"));
      await refused(path, [`config file ${path}: its aliases expand to more than 100000 values; this looks like an alias bomb, not a configuration`]);
    });

    it("when an alias names no anchor, or the value it is inside, it is a config error naming the alias", async () => {
      const noAnchor = rawFile(`${stringify(base)}extra: *nowhere\n`);
      await refused(noAnchor, [`config file ${noAnchor}: the alias *nowhere names no anchor defined before it`]);
      const cycle = rawFile("targets: &t [*t]\n");
      await refused(cycle, [`config file ${cycle}: the alias *t is inside the value anchored &t (a cycle)`]);
    });

    it("a legitimate config written with anchors, aliases and merge keys loads and plans (reads only)", async () => {
      const t = t0(base);
      const zone = t.dnsZone as Record<string, unknown>;
      const ext = t.extension as Record<string, unknown>;
      const kube = t.kubernetes as Record<string, unknown>;
      const { targets: _targets, ...rest } = base;
      const yaml = [
        stringify(rest).trimEnd(),
        "targets:",
        `  - fqdn: ${FQDN}`,
        `    dnsZone: &zone ${JSON.stringify(zone)}`,
        "    challengeZones: []",
        `    extension: &ext ${JSON.stringify({ ...ext, clusterName: "placeholder" })}`,
        `    kubernetes: ${JSON.stringify(kube)}`,
        `    secretName: ${String(t.secretName)}`,
        `    probeAddress: "${String(t.probeAddress)}"`,
        "x-unused: &unused-but-fine 1",
      ].join("\n");
      // the merge key overrides one field of the anchored extension; dnsZone is an alias
      const withMerge = yaml
        .replace(`    extension: &ext ${JSON.stringify({ ...ext, clusterName: "placeholder" })}`, `    extension:\n      <<: &ext ${JSON.stringify({ ...ext, clusterName: "placeholder" })}\n      clusterName: ${String(ext.clusterName)}`)
        .replace("    challengeZones: []", "    challengeZones: [*zone]")
        .replace("x-unused: &unused-but-fine 1", "");
      const path = rawFile(withMerge);
      const m = mark(h);
      const run = await h.runCli(["plan", "--config", path]);
      expect(run.code, run.stderr).toBe(0);
      expect(result(run)).toMatchObject({ action: "renew", reason: "SecretMissing" });
      expectNoWrites(h, m, run);
    });
  });
});

describe("bad input: what is already in the secret (plan names the reason and the secret; renew replaces a broken pair)", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true, pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    // versioned mode (explicit: it stays as an opt-in when the default changes): the certificate in place is the
    // secret the extension's sslSecret names, here one a person or another tool put there, without amlcert's labels
    config = h.writeConfig({ renewal: { secretMode: "versioned" } }, "versioned.yaml");
  });
  beforeEach(async () => {
    await h.reset();
    h.clusters[0]!.kube.deleteObject("v1", "Secret", "azureml", SECRET);
  });
  afterAll(async () => {
    await h?.stop();
  });

  const valid = () => h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });

  /** Put `data` in secret aml-tls (no amlcert labels: as a person or another tool would) and point the extension at it. */
  async function inPlace(data: Record<string, string | Buffer>) {
    h.clusters[0]!.kube.putSecret("azureml", SECRET, data);
    await h.seedExtension({ sslSecret: SECRET });
  }

  async function planOf(): Promise<{ run: CliRun; line: Record<string, unknown> }> {
    const m = mark(h);
    const run = await h.runCli(["plan", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expectNoWrites(h, m, run);
    return { run, line: result(run) };
  }

  it("garbage in cert.pem: plan says SecretUnparsable, naming the secret and the parser's words", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": "hello, this is not a certificate", "key.pem": c.keyPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "SecretUnparsable", message: `secret ${SECRET}: cert.pem: no PEM CERTIFICATE block found` });
  });

  it("DER instead of PEM in cert.pem: plan says SecretUnparsable (Azure ML reads PEM only)", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": new X509Certificate(pemBlocks(c.chainPem)[0]!.pem).raw, "key.pem": c.keyPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "SecretUnparsable", message: `secret ${SECRET}: cert.pem: no PEM CERTIFICATE block found` });
  });

  it("a passphrase-protected key: plan says KeyUnusable (the extension needs an unencrypted key)", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": c.chainPem, "key.pem": encryptKey(c.keyPem) });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "KeyUnusable", message: `secret ${SECRET}: key.pem: the key is passphrase-protected; Azure ML needs an unencrypted key` });
  });

  it("a key that belongs to another certificate: plan says KeyMismatch", async () => {
    const [a, b] = [await valid(), await valid()];
    await inPlace({ "cert.pem": a.chainPem, "key.pem": b.keyPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "KeyMismatch", message: `secret ${SECRET}: key.pem does not match the leaf certificate in cert.pem` });
  });

  it("the leaf without its intermediate: plan says ChainIncomplete, naming the missing issuer", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": pemBlocks(c.chainPem)[0]!.pem, "key.pem": c.keyPem });
    const { line } = await planOf();
    expect(line).toMatchObject({ action: "renew", reason: "ChainIncomplete" });
    expect(line.message).toMatch(new RegExp(`^secret ${SECRET}: cert\\.pem: the chain holds only the leaf; its issuer \\(CN=Pebble Intermediate CA [0-9a-f]+\\) is missing$`));
  });

  it("the intermediate before the leaf: plan says ChainIncomplete and which certificate comes first (not KeyMismatch)", async () => {
    const c = await valid();
    const [leaf, intermediate] = pemBlocks(c.chainPem);
    await inPlace({ "cert.pem": intermediate!.pem + leaf!.pem, "key.pem": c.keyPem });
    expect((await planOf()).line).toMatchObject({
      action: "renew",
      reason: "ChainIncomplete",
      message: `secret ${SECRET}: cert.pem: the certificates are out of order: the leaf (CN=${FQDN}) is certificate #2 and must come first; the right order is #2, #1 (the leaf, then each certificate's issuer)`,
    });
  });

  it("a certificate for another name: plan says NamesNotCovered, naming the name", async () => {
    const c = await h.makeCertificate({ names: ["other.contoso.test"], notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    await inPlace({ "cert.pem": c.chainPem, "key.pem": c.keyPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "NamesNotCovered", message: `secret ${SECRET}: cert.pem does not cover ${FQDN}` });
  });

  it("an expired certificate: plan says Expired, naming the secret and the time", async () => {
    const notAfter = new Date(Math.floor((Date.now() - 10 * DAY) / 1000) * 1000);
    const c = await h.makeCertificate({ notBefore: new Date(notAfter.getTime() - 90 * DAY), notAfter });
    await inPlace({ "cert.pem": c.chainPem, "key.pem": c.keyPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "Expired", message: `secret ${SECRET}: the certificate expired at ${notAfter.toISOString()}` });
  });

  it("a certificate inside its renewal window: plan says InRenewalWindow, naming the secret", async () => {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
    await inPlace({ "cert.pem": c.chainPem, "key.pem": c.keyPem });
    const { line } = await planOf();
    expect(line).toMatchObject({ action: "renew", reason: "InRenewalWindow" });
    expect(line.message).toMatch(new RegExp(`^secret ${SECRET}: renewal was due at `));
  });

  it("a secret without key.pem: plan says SecretMissingData, naming the key", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": c.chainPem });
    expect((await planOf()).line).toMatchObject({ action: "renew", reason: "SecretMissingData", message: `secret ${SECRET} has no key.pem` });
  });

  it("a sound pair with an unencrypted SEC1 key, not due: left alone (a commercial certificate's key works)", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": c.chainPem, "key.pem": sec1Key(c.keyPem) });
    expect((await planOf()).line).toMatchObject({ action: "none", reason: "UpToDate" });
  });

  /** After a renewal: the extension names a new secret holding a sound pair, and azureml-fe serves it. */
  function expectSoundReplacement(run: CliRun) {
    const line = result(run);
    const named = h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret!;
    expect(named).toBe(line.secret);
    expect(named).not.toBe(SECRET);
    const stored = h.clusters[0]!.kube.getSecret("azureml", named)!;
    expect(inspectPair(stored["cert.pem"], stored["key.pem"], [FQDN]).problems).toEqual([]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(line.serial);
    return stored;
  }

  it("garbage in place: renew replaces it with a sound pair, the extension names it and azureml-fe serves it", async () => {
    const c = await valid();
    await inPlace({ "cert.pem": "garbage", "key.pem": c.keyPem });
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", reason: "SecretUnparsable", servingOk: true });
    expectSoundReplacement(run);
  });

  it("a chain in the wrong order in place: renew replaces it, the new cert.pem has the leaf first", async () => {
    const c = await valid();
    const [leaf, intermediate] = pemBlocks(c.chainPem);
    await inPlace({ "cert.pem": intermediate!.pem + leaf!.pem, "key.pem": c.keyPem });
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", reason: "ChainIncomplete", servingOk: true });
    const stored = expectSoundReplacement(run);
    const first = new X509Certificate(pemBlocks(stored["cert.pem"]!)[0]!.pem);
    expect(first.serialNumber.toUpperCase()).toBe(result(run).serial);
    expect(first.subject).toBe(`CN=${FQDN}`);
  });

  it("a secret with keys amlcert does not own (ca.crt, a note): renewal writes a new secret and leaves that one exactly as it was", async () => {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
    await inPlace({ "cert.pem": c.chainPem, "key.pem": c.keyPem, "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "owner.txt": "platform team" });
    const before = h.clusters[0]!.kube.getSecretObject("azureml", SECRET);
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed", reason: "InRenewalWindow", servingOk: true });
    expectSoundReplacement(run);
    expect(h.clusters[0]!.kube.getSecretObject("azureml", SECRET)).toEqual(before);
  });
});

describe("bad input: a secret with keys amlcert does not own, in fixed mode (written in place)", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("the in-place write replaces cert.pem and key.pem and keeps ca.crt and the note; fixed mode's documented exit 4 (azureml-fe does not reload a secret changed in place)", async () => {
    const config = h.writeConfig({ renewal: { secretMode: "fixed" } }, "fixed.yaml");
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
    const caCrt = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    h.clusters[0]!.kube.putSecret("azureml", SECRET, { "cert.pem": c.chainPem, "key.pem": c.keyPem, "ca.crt": caCrt, "owner.txt": "platform team" });
    await h.seedExtension({ sslSecret: SECRET });
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(4);
    const line = result(run);
    expect(line).toMatchObject({ action: "failed", reason: "InRenewalWindow", storedSecret: SECRET, error: { code: "TLS_OLD_CERT_SERVED", stage: "verify-tls" } });
    const stored = h.clusters[0]!.kube.getSecret("azureml", SECRET)!;
    expect(Object.keys(stored).sort()).toEqual(["ca.crt", "cert.pem", "key.pem", "owner.txt"]);
    expect([stored["ca.crt"], stored["owner.txt"]]).toEqual([caCrt, "platform team"]);
    expect(new X509Certificate(pemBlocks(stored["cert.pem"]!)[0]!.pem).serialNumber.toUpperCase()).toBe(line.serial);
    expect(inspectPair(stored["cert.pem"], stored["key.pem"], [FQDN]).problems).toEqual([]);
  });
});

describe("bad input: what the CA answers (refused before any write, exit 3)", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true, pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    config = h.writeConfig({ renewal: { secretMode: "versioned" } }, "versioned.yaml");
    h.seedAccountKey();
  });
  beforeEach(async () => {
    await h.reset();
    h.clusters[0]!.kube.deleteObject("v1", "Secret", "azureml", SECRET);
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** A due certificate in place (so renew orders); returns its serial. */
  async function dueInPlace(): Promise<string> {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - 61 * DAY), notAfter: new Date(Date.now() + 29 * DAY) });
    h.clusters[0]!.kube.putSecret("azureml", SECRET, { "cert.pem": c.chainPem, "key.pem": c.keyPem });
    await h.seedExtension({ sslSecret: SECRET });
    return c.serial;
  }

  /** The CA's certificate download answered with `pem` instead (after Pebble issued the real one). */
  function caAnswers(pem: string) {
    return h.acmeFront!.hook((r) => (r.kind === "certificate" ? { status: 200, headers: { "content-type": "application/pem-certificate-chain" }, body: pem, when: "after" } : undefined));
  }

  async function refusedAnswer(pem: string, expected: RegExp, error = { code: "CERT_INVALID", stage: "validate" }) {
    const before = await dueInPlace();
    const stored = h.clusters[0]!.kube.getSecret("azureml", SECRET);
    caAnswers(pem);
    const m = mark(h);
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(3);
    const line = result(run);
    expect(line).toMatchObject({ action: "failed", error });
    expect((line.error as { message: string }).message).toMatch(expected);
    // the CA was asked (one order created; a newOrder Pebble refused for its nonce is repeated), and nothing it answered was written
    expect(h.acmeFront!.orders().slice(m.orders).filter((o) => o.status === 201)).toHaveLength(1);
    expect(secretWrites(h, m)).toEqual([]);
    expect(extensionPatches(h, m)).toEqual([]);
    expect(txtLeft(h)).toEqual([]);
    expect(h.clusters[0]!.kube.getSecret("azureml", SECRET)).toEqual(stored);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(before);
  }

  it("a chain that does not match the key amlcert made: refused, naming the mismatch", async () => {
    const other = await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    await refusedAnswer(other.chainPem, /^the issued certificate was not written: key\.pem does not match the leaf certificate in cert\.pem$/);
  });

  it("an expired certificate: refused, naming the expiry (and the mismatch it also has)", async () => {
    const notAfter = new Date(Math.floor((Date.now() - DAY) / 1000) * 1000);
    const expired = await h.makeCertificate({ notBefore: new Date(notAfter.getTime() - 90 * DAY), notAfter });
    await refusedAnswer(expired.chainPem, new RegExp(`^the issued certificate was not written: .*the certificate expired at ${notAfter.toISOString().replace(/\./g, "\\.")}`));
  });

  it("garbage instead of a certificate: refused where it is downloaded, saying it does not parse", async () => {
    await refusedAnswer("this is not a certificate\n", /^the CA returned a certificate that does not parse$/, { code: "ACME_ERROR", stage: "acme-order" });
  });

  it("a certificate for another name: refused, naming the name it lacks", async () => {
    const other = await h.makeCertificate({ names: ["other.contoso.test"], notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    await refusedAnswer(other.chainPem, new RegExp(`cert\\.pem does not cover ${FQDN.replace(/\./g, "\\.")}`));
  });

  it("the chain in the wrong order: refused, saying which certificate comes first", async () => {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    const [leaf, intermediate] = pemBlocks(c.chainPem);
    await refusedAnswer(intermediate!.pem + leaf!.pem, /the certificates are out of order: the leaf \(CN=ml\.contoso\.test\) is certificate #2 and must come first/);
  });
});

describe("bad input: a CA that issues shorter lifetimes than the certificate in place", () => {
  let h: Harness;

  beforeAll(async () => {
    // Pebble issues 7-day certificates; the one in place has 60 days left
    h = await startHarness({ acmeFront: true, certificateValidityPeriodSeconds: 7 * 86_400 });
    h.seedAccountKey();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("a forced renewal is refused as not newer (exit 3): the longer-lived certificate stays in place and served", async () => {
    const config = h.writeConfig({ renewal: { secretMode: "versioned" } }, "versioned.yaml");
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() + 60 * DAY) });
    h.clusters[0]!.kube.putSecret("azureml", SECRET, { "cert.pem": c.chainPem, "key.pem": c.keyPem });
    await h.seedExtension({ sslSecret: SECRET });
    const stored = h.clusters[0]!.kube.getSecret("azureml", SECRET);
    const m = mark(h);
    const run = await h.runCli(["renew", "--config", config, "--force"]);
    expect(run.code, run.stderr).toBe(3);
    const line = result(run);
    expect(line).toMatchObject({ action: "failed", error: { code: "CERT_NOT_NEWER", stage: "validate" } });
    expect((line.error as { message: string }).message).toMatch(/^the issued certificate was not written: the new certificate expires .*, not later than the one in place \(.*\)$/);
    expect(secretWrites(h, m)).toEqual([]);
    expect(extensionPatches(h, m)).toEqual([]);
    expect(h.clusters[0]!.kube.getSecret("azureml", SECRET)).toEqual(stored);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(c.serial);
  });
});

describe("warnings and self-hosted files", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("an ECDSA key type logs the warning that ECDSA is unproven with the extension; RSA (the default) does not", async () => {
    const ec = await h.runCli(["plan", "--config", h.writeConfig({ acme: { keyType: "ecdsa-p256" } }, "ec.yaml")]);
    expect(ec.code, ec.stderr).toBe(0);
    const warning = ec.stderr.split("\n").find((l) => ECDSA_WARNING.test(l));
    expect(warning, ec.stderr).toBeDefined();
    expect(JSON.parse(warning!)).toMatchObject({ level: 40, stage: "config", setting: "acme.keyType", keyType: "ecdsa-p256" });
    const rsa = await h.runCli(["plan", "--config", h.writeConfig({ acme: { keyType: undefined } }, "rsa.yaml")]);
    expect(rsa.code, rsa.stderr).toBe(0);
    expect(rsa.stderr).not.toMatch(ECDSA_WARNING);
  });

  it("self-hosted: the ACME account key file amlcert writes is mode 0600, in a directory it creates 0700", async () => {
    const keyFile = join(h.dir, "state", "amlcert", "account.pem");
    const config = h.writeConfig({ acme: { keyType: "rsa2048", accountKey: { file: keyFile, secret: undefined } } }, "self-hosted.yaml");
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renewed" });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.dir, "state", "amlcert")).mode & 0o777).toBe(0o700);
    // the key was written atomically: no temp file is left beside it
    expect(readdirSync(join(h.dir, "state", "amlcert"))).toEqual(["account.pem"]);
  });
});

describe("bad input: a CA that demands External Account Binding", () => {
  let h: Harness;
  const hmac = Buffer.from("amlcert-bad-input-eab-hmac-0123456789abcdef").toString("base64url");

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true, eab: { "kid-7": hmac } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("without acme.eab: exit 3 at acme-account, the message names acme.eab and its settings; nothing is ordered or written", async () => {
    const m = mark(h);
    const run = await h.runCli(["renew", "--config", h.writeConfig()]);
    expect(run.code, run.stderr).toBe(3);
    const line = result(run);
    expect(line).toMatchObject({ action: "failed", error: { code: "ACME_ACCOUNT", stage: "acme-account" } });
    expect((line.error as { message: string }).message).toMatch(
      /externalAccountRequired: .*; this CA requires External Account Binding: set acme\.eab\.keyId and acme\.eab\.hmacKeyFile \(or AMLCERT_ACME_EAB_KEY_ID and AMLCERT_ACME_EAB_HMAC_KEY_FILE\) to the credentials the CA issued$/,
    );
    expect(h.acmeFront!.orders().slice(m.orders)).toEqual([]);
    expect(secretWrites(h, m)).toEqual([]);
    expect(extensionPatches(h, m)).toEqual([]);
    expect(txtLeft(h)).toEqual([]);
  });

  it("with a wrong HMAC key: exit 3 at acme-account, saying to check acme.eab's settings; the key itself is in no output", async () => {
    const wrong = join(h.dir, "wrong-hmac");
    const wrongKey = Buffer.from("not-the-key-the-ca-issued-0123456789abcd").toString("base64url");
    writeFileSync(wrong, wrongKey);
    const run = await h.runCli(["renew", "--config", h.writeConfig({ acme: { eab: { keyId: "kid-7", hmacKeyFile: wrong } } }, "wrong-eab.yaml")]);
    expect(run.code, run.stderr).toBe(3);
    const line = result(run);
    expect(line).toMatchObject({ action: "failed", error: { code: "ACME_ACCOUNT", stage: "acme-account" } });
    expect((line.error as { message: string }).message).toMatch(/; acme\.eab is set, but the CA did not accept the binding: check acme\.eab\.keyId and the key in acme\.eab\.hmacKeyFile$/);
    expect(run.stderr + run.stdout).not.toContain(wrongKey);
    expect(run.stderr + run.stdout).not.toContain(hmac);
  });
});

describe("bad input: a broken pair in the served slot (slots mode, the default)", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness({ acmeFront: true, pebbleEnv: { PEBBLE_AUTHZREUSE: "0" } });
    config = h.writeConfig({ acme: { accountKey: { secret: "amlcert-acme-account" } } }, "slots.yaml");
  });
  beforeEach(async () => {
    await h.reset();
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** Slot a holds `data` and is served (the extension names it), as after an earlier renewal someone edited it. */
  async function servedSlotA(data: Record<string, string | Buffer>) {
    const slot = h.clusters[0]!.kube.getSecretObject("azureml", `${SECRET}-a`);
    h.clusters[0]!.kube.putSecret("azureml", `${SECRET}-a`, data, { labels: slot?.metadata.labels, annotations: slot?.metadata.annotations });
    await h.seedExtension({ sslSecret: `${SECRET}-a` });
  }

  it("plan names the slot and the reason, and writes nothing", async () => {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    const [leaf, intermediate] = pemBlocks(c.chainPem);
    await servedSlotA({ "cert.pem": intermediate!.pem + leaf!.pem, "key.pem": c.keyPem });
    const m = mark(h);
    const run = await h.runCli(["plan", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    expect(result(run)).toMatchObject({ action: "renew", reason: "ChainIncomplete" });
    expect(String(result(run).message)).toMatch(new RegExp(`^secret ${SECRET}-a: cert\\.pem: the certificates are out of order: the leaf \\(CN=${FQDN.replace(/\./g, "\\.")}\\) is certificate #2`));
    expectNoWrites(h, m, run);
  });

  it("renew writes a sound pair to the other slot, points the extension at it and azureml-fe serves it; the broken slot is not written", async () => {
    const c = await h.makeCertificate({ notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 89 * DAY) });
    await servedSlotA({ "cert.pem": "garbage", "key.pem": c.keyPem });
    const before = h.clusters[0]!.kube.getSecret("azureml", `${SECRET}-a`);
    const run = await h.runCli(["renew", "--config", config]);
    expect(run.code, run.stderr).toBe(0);
    const line = result(run);
    expect(line).toMatchObject({ action: "renewed", reason: "SecretUnparsable", secret: `${SECRET}-b`, servingOk: true });
    expect(h.arm.getExtension(h.clusters[0]!.extension)!.configurationSettings.sslSecret).toBe(`${SECRET}-b`);
    const stored = h.clusters[0]!.kube.getSecret("azureml", `${SECRET}-b`)!;
    expect(inspectPair(stored["cert.pem"], stored["key.pem"], [FQDN]).problems).toEqual([]);
    expect(h.clusters[0]!.fe.servedSerial()).toBe(line.serial);
    expect(h.clusters[0]!.kube.getSecret("azureml", `${SECRET}-a`)).toEqual(before);
  });
});
