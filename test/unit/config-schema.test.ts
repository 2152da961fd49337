/**
 * The configuration schema, field by field: what each setting accepts, what it refuses with which words, and its
 * normalisation (trimming, lower-casing, defaults). Every problem is asserted as the exact line the user reads.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load.js";
import { formatDuration, parseDuration } from "../../src/config/duration.js";
import { fields } from "../../src/config/fields.js";
import { configSchema, directoryUrl, secretModeOf, type Config } from "../../src/config/schema.js";
import { cronProblem } from "../../src/schedule/cron.js";

const SUB = "11111111-2222-3333-4444-555555555555";
const zone = (name = "contoso.test") => ({ subscriptionId: SUB, resourceGroup: "dns-rg", zone: name });
const extension = (clusterName = "aks", name = "azureml") => ({ subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "managedClusters", clusterName, name });
const target = (over: Record<string, unknown> = {}) => ({
  fqdn: "ml.contoso.test",
  dnsZone: zone(),
  extension: extension(),
  kubernetes: { kubeconfig: "/tmp/kc", context: "aks" },
  secretName: "aml-tls",
  ...over,
});

/** Load `config` (given as an object; JSON is YAML) with `env`; the config or the problems. */
function load(config: Record<string, unknown>, env: Record<string, string> = {}): { config?: Config; problems: string[] } {
  try {
    return { config: loadConfig({ path: "/cfg.yaml", env, readFile: () => JSON.stringify(config) }).config, problems: [] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.problems };
  }
}
const withTarget = (over: Record<string, unknown>, rest: Record<string, unknown> = {}) => load({ ...rest, targets: [target(over)] });
const problemsOf = (config: Record<string, unknown>, env: Record<string, string> = {}) => load(config, env).problems;

const FQDN_MESSAGE = "must be a fully qualified domain name such as ml.contoso.com (a leading *. is allowed for extra SANs)";

describe("fields: the environment interface", () => {
  it("names each setting's variable and kind exactly, and marks the EAB HMAC key as the one secret", () => {
    expect(fields.map((f) => [f.path, f.env, f.kind, f.secret])).toEqual([
      ["acme.directory", "AMLCERT_ACME_DIRECTORY", "string", false],
      ["acme.email", "AMLCERT_ACME_EMAIL", "string", false],
      ["acme.eab.keyId", "AMLCERT_ACME_EAB_KEY_ID", "string", false],
      ["acme.eab.hmacKey", "AMLCERT_ACME_EAB_HMAC_KEY", "string", true],
      ["acme.keyType", "AMLCERT_ACME_KEY_TYPE", "string", false],
      ["acme.profile", "AMLCERT_ACME_PROFILE", "string", false],
      ["acme.requestTimeout", "AMLCERT_ACME_REQUEST_TIMEOUT", "duration", false],
      ["acme.maxRetries", "AMLCERT_ACME_MAX_RETRIES", "number", false],
      ["acme.maxRetryAfter", "AMLCERT_ACME_MAX_RETRY_AFTER", "duration", false],
      ["acme.accountKey.file", "AMLCERT_ACME_ACCOUNT_KEY_FILE", "string", false],
      ["acme.accountKey.secret", "AMLCERT_ACME_ACCOUNT_KEY_SECRET", "string", false],
      ["azure.cloud", "AMLCERT_AZURE_CLOUD", "string", false],
      ["azure.resourceManagerEndpoint", "AMLCERT_AZURE_RESOURCE_MANAGER_ENDPOINT", "string", false],
      ["azure.authorityHost", "AMLCERT_AZURE_AUTHORITY_HOST", "string", false],
      ["azure.tokenScope", "AMLCERT_AZURE_TOKEN_SCOPE", "string", false],
      ["azure.requestTimeout", "AMLCERT_AZURE_REQUEST_TIMEOUT", "duration", false],
      ["azure.maxRetries", "AMLCERT_AZURE_MAX_RETRIES", "number", false],
      ["azure.maxRetryAfter", "AMLCERT_AZURE_MAX_RETRY_AFTER", "duration", false],
      ["kubernetesApi.requestTimeout", "AMLCERT_KUBERNETES_API_REQUEST_TIMEOUT", "duration", false],
      ["kubernetesApi.maxRetries", "AMLCERT_KUBERNETES_API_MAX_RETRIES", "number", false],
      ["kubernetesApi.maxRetryAfter", "AMLCERT_KUBERNETES_API_MAX_RETRY_AFTER", "duration", false],
      ["dns.nameServers", "AMLCERT_DNS_NAME_SERVERS", "list", false],
      ["dns.resolvers", "AMLCERT_DNS_RESOLVERS", "list", false],
      ["dns.propagationTimeout", "AMLCERT_DNS_PROPAGATION_TIMEOUT", "duration", false],
      ["dns.propagationInterval", "AMLCERT_DNS_PROPAGATION_INTERVAL", "duration", false],
      ["dns.propagationSettle", "AMLCERT_DNS_PROPAGATION_SETTLE", "duration", false],
      ["dns.txtTtl", "AMLCERT_DNS_TXT_TTL", "number", false],
      ["dns.queryTimeout", "AMLCERT_DNS_QUERY_TIMEOUT", "duration", false],
      ["dns.queryTries", "AMLCERT_DNS_QUERY_TRIES", "number", false],
      ["renewal.renewBefore", "AMLCERT_RENEWAL_RENEW_BEFORE", "duration", false],
      ["renewal.secretMode", "AMLCERT_RENEWAL_SECRET_MODE", "string", false],
      ["renewal.keepPrevious", "AMLCERT_RENEWAL_KEEP_PREVIOUS", "number", false],
      ["renewal.concurrency", "AMLCERT_RENEWAL_CONCURRENCY", "number", false],
      ["extension.lroTimeout", "AMLCERT_EXTENSION_LRO_TIMEOUT", "duration", false],
      ["extension.pollInterval", "AMLCERT_EXTENSION_POLL_INTERVAL", "duration", false],
      ["extension.busyTimeout", "AMLCERT_EXTENSION_BUSY_TIMEOUT", "duration", false],
      ["extension.busyInterval", "AMLCERT_EXTENSION_BUSY_INTERVAL", "duration", false],
      ["verify.trustBundleFile", "AMLCERT_VERIFY_TRUST_BUNDLE_FILE", "string", false],
      ["verify.port", "AMLCERT_VERIFY_PORT", "number", false],
      ["verify.timeout", "AMLCERT_VERIFY_TIMEOUT", "duration", false],
      ["verify.interval", "AMLCERT_VERIFY_INTERVAL", "duration", false],
      ["verify.probeTimeout", "AMLCERT_VERIFY_PROBE_TIMEOUT", "duration", false],
      ["daemon.schedule", "AMLCERT_DAEMON_SCHEDULE", "string", false],
      ["daemon.jitter", "AMLCERT_DAEMON_JITTER", "duration", false],
      ["daemon.listen", "AMLCERT_DAEMON_LISTEN", "string", false],
      ["daemon.runAtStart", "AMLCERT_DAEMON_RUN_AT_START", "boolean", false],
      ["metrics.pushgateway", "AMLCERT_METRICS_PUSHGATEWAY", "string", false],
      ["metrics.job", "AMLCERT_METRICS_JOB", "string", false],
      ["history.configMap", "AMLCERT_HISTORY_CONFIG_MAP", "string", false],
      ["log.level", "AMLCERT_LOG_LEVEL", "string", false],
      ["log.format", "AMLCERT_LOG_FORMAT", "string", false],
    ]);
  });
});

describe("parseDuration and formatDuration", () => {
  it.each([
    ["90s", 90_000],
    ["10m", 600_000],
    ["1h30m", 5_400_000],
    ["30d", 2_592_000_000],
    ["250ms", 250],
    ["1.25h", 4_500_000],
    [" 90s ", 90_000],
    ["15", 15_000],
    ["1.25", 1250],
    [" 5 ", 5000],
    [5, 5000],
    [0, 0],
    [1.5, 1500],
  ])("%j is %d ms", (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(["soon", "10x", "1h 30m", "-5s", "", "x5", "5x", "1.h", "h"])("%j is not a duration", (input) => expect(parseDuration(input)).toBeUndefined());

  it.each([-5, Number.POSITIVE_INFINITY, Number.NaN])("the number %d is not a duration", (input) => expect(parseDuration(input)).toBeUndefined());

  it.each([
    [2 * 86_400_000, "2d"],
    [7_200_000, "2h"],
    [120_000, "2m"],
    [2000, "2s"],
    [1500, "1500ms"],
    [90 * 60_000, "90m"],
    [0, "0s"],
  ])("%d ms is written %s", (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe("names: fqdn and sans", () => {
  it("an FQDN is trimmed and lower-cased", () => {
    expect(withTarget({ fqdn: " ML.Contoso.Test " }).config?.targets[0]!.fqdn).toBe("ml.contoso.test");
  });

  it("an FQDN equal to the zone apex is inside the zone", () => {
    expect(withTarget({ fqdn: "contoso.test" }).problems).toEqual([]);
  });

  it("a label with a character outside [a-z0-9-] is refused wherever it sits", () => {
    expect(withTarget({ fqdn: "ml_x.contoso.test" }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
    expect(withTarget({ fqdn: "x.ml_x.contoso.test" }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
  });

  it("a label may not start or end with '-', and may hold 63 characters, not 64", () => {
    expect(withTarget({ fqdn: "-ml.contoso.test" }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
    expect(withTarget({ fqdn: "ml-.contoso.test" }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
    expect(withTarget({ fqdn: `${"a".repeat(63)}.contoso.test` }).problems).toEqual([]);
    expect(withTarget({ fqdn: `${"a".repeat(64)}.contoso.test` }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
  });

  it("a name may be 253 characters long, not 254", () => {
    const name = (last: number) => `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(last)}.contoso.test`;
    expect(name(48)).toHaveLength(253);
    expect(withTarget({ fqdn: name(48) }).problems).toEqual([]);
    expect(withTarget({ fqdn: name(49) }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`]);
  });

  it("a single label is not an FQDN", () => {
    expect(withTarget({ fqdn: "contoso" }).problems).toEqual([`targets[0].fqdn: ${FQDN_MESSAGE}`, "targets[0].fqdn: is not inside dnsZone.zone contoso.test"]);
  });

  it("the target's own FQDN must not be a wildcard; a SAN may be, as its first label only", () => {
    expect(withTarget({ fqdn: "*.contoso.test" }).problems).toEqual(["targets[0].fqdn: must not be a wildcard"]);
    expect(withTarget({ sans: ["*.contoso.test", "API.contoso.test"] }).config?.targets[0]!.sans).toEqual(["*.contoso.test", "api.contoso.test"]);
    expect(withTarget({ sans: ["a.*.contoso.test"] }).problems).toEqual([`targets[0].sans[0]: ${FQDN_MESSAGE}`]);
    expect(withTarget({ sans: ["**.contoso.test"] }).problems).toEqual([`targets[0].sans[0]: ${FQDN_MESSAGE}`]);
  });

  it("a SAN in a challengeZones zone is inside; the FQDN stays judged against dnsZone or the challenge zones", () => {
    const ok = withTarget({ sans: ["api.validation.test", "*.validation.test"], challengeZones: [zone("validation.test")] });
    expect(ok.problems).toEqual([]);
    expect(ok.config?.targets[0]!.challengeZones).toEqual([zone("validation.test")]);
    expect(withTarget({ sans: ["api.other.test"], challengeZones: [zone("validation.test")] }).problems).toEqual([
      "targets[0].sans[0]: is not inside dnsZone.zone contoso.test or a challengeZones zone",
    ]);
  });

  it("without challengeZones the list defaults to empty, and so do sans", () => {
    const t = withTarget({}).config!.targets[0]!;
    expect(t.challengeZones).toEqual([]);
    expect(t.sans).toEqual([]);
  });

  it("sans given as one string instead of a list is reported once, as not a list", () => {
    expect(withTarget({ sans: "api.contoso.test" }).problems).toEqual(["targets[0].sans: Invalid input: expected array, received string"]);
  });

  it("a '*.' inside a name does not move it into the zone", () => {
    expect(withTarget({ sans: ["con*.toso.test"] }).problems).toEqual([
      `targets[0].sans[0]: ${FQDN_MESSAGE}`,
      "targets[0].sans[0]: is not inside dnsZone.zone contoso.test or a challengeZones zone",
    ]);
  });

  it("a malformed SAN or challenge zone entry is reported, not a crash", () => {
    expect(withTarget({ sans: [5] }).problems).toEqual(["targets[0].sans[0]: Invalid input: expected string, received number"]);
    expect(withTarget({ challengeZones: [null] }).problems).toEqual(["targets[0].challengeZones[0]: Invalid input: expected object, received null"]);
    expect(withTarget({ fqdn: 5 }).problems).toEqual(["targets[0].fqdn: Invalid input: expected string, received number"]);
    expect(withTarget({ extension: undefined }).problems).toEqual(["targets[0].extension: is required"]);
  });
});

describe("Azure references", () => {
  it("a subscription ID is a GUID, trimmed; one character more on either side is refused", () => {
    expect(withTarget({ dnsZone: { ...zone(), subscriptionId: ` ${SUB} ` } }).config?.targets[0]!.dnsZone.subscriptionId).toBe(SUB);
    for (const bad of [`0${SUB}`, `${SUB}0`]) {
      expect(withTarget({ dnsZone: { ...zone(), subscriptionId: bad } }).problems).toEqual(["targets[0].dnsZone.subscriptionId: must be a subscription ID (GUID)"]);
    }
  });

  it("a resource group name is trimmed; a character outside [-\\w._()] is refused at either end", () => {
    expect(withTarget({ dnsZone: { ...zone(), resourceGroup: " dns-rg " } }).config?.targets[0]!.dnsZone.resourceGroup).toBe("dns-rg");
    expect(withTarget({ dnsZone: { ...zone(), resourceGroup: "rg(1).x_y" } }).problems).toEqual([]);
    for (const bad of ["!rg", "rg!"]) {
      expect(withTarget({ dnsZone: { ...zone(), resourceGroup: bad } }).problems).toEqual(["targets[0].dnsZone.resourceGroup: must be a resource group name"]);
    }
  });

  it("a zone name is trimmed and lower-cased", () => {
    expect(withTarget({ dnsZone: { ...zone(), zone: " Contoso.Test " } }).config?.targets[0]!.dnsZone.zone).toBe("contoso.test");
  });

  it("the extension: both cluster types are accepted; names are trimmed and must not be empty", () => {
    const arc = withTarget({ extension: { ...extension(" arc-ml ", " azureml "), clusterType: "connectedClusters" } }).config!.targets[0]!.extension;
    expect(arc).toEqual({ subscriptionId: SUB, resourceGroup: "aks-rg", clusterType: "connectedClusters", clusterName: "arc-ml", name: "azureml" });
    expect(withTarget({ extension: extension("  ", " ") }).problems).toEqual(["targets[0].extension.clusterName: must not be empty", "targets[0].extension.name: must not be empty"]);
  });

  it("two targets on different extensions are fine, even when the names would run together without a separator", () => {
    expect(load({ targets: [target(), target({ fqdn: "api.contoso.test", secretName: "api-tls", extension: extension("aks1", "zureml") })] }).problems).toEqual([]);
    expect(load({ targets: [target({ extension: extension("aks", "1azureml") }), target({ fqdn: "api.contoso.test", secretName: "api-tls", extension: extension("aks1", "azureml") })] }).problems).toEqual([]);
  });

  it("two targets on the same extension are refused, whatever the case of the names", () => {
    const upper = { subscriptionId: SUB.toUpperCase(), resourceGroup: "AKS-RG", clusterType: "managedClusters", clusterName: "AKS", name: "AzureML" };
    expect(load({ targets: [target(), target({ fqdn: "api.contoso.test", secretName: "api-tls", extension: upper })] }).problems).toEqual([
      "targets[1].extension: is the same extension as targets[0]; one extension has one sslSecret and one sslCname, so give it one target (use sans for more names)",
    ]);
  });
});

describe("per-target settings", () => {
  it("secretName is trimmed, may be one character or 61 (a slot suffix -a/-b is appended), not 62, and is a DNS-1123 label; in versioned mode at most 45", () => {
    expect(withTarget({ secretName: " aml-tls " }).config?.targets[0]!.secretName).toBe("aml-tls");
    expect(withTarget({ secretName: "a" }).problems).toEqual([]);
    expect(withTarget({ secretName: "a".repeat(61) }).problems).toEqual([]);
    expect(withTarget({ secretName: "a".repeat(62) }).problems).toEqual(["targets[0].secretName: must be at most 61 characters (a slot suffix -a/-b is appended)"]);
    expect(withTarget({ secretName: "a".repeat(45), secretMode: "versioned" }).problems).toEqual([]);
    expect(withTarget({ secretName: "a".repeat(46), secretMode: "versioned" }).problems).toEqual([
      "targets[0].secretName: must be at most 45 characters in versioned mode (a version suffix -yyyymmdd-xxxxxxxx is appended)",
    ]);
    for (const bad of ["aml-tls_", "_aml-tls", "Aml-tls", "aml-", "-aml"]) {
      expect(withTarget({ secretName: bad }).problems).toEqual(["targets[0].secretName: must be a DNS-1123 label (lower case letters, digits, '-')"]);
    }
  });

  it("secretMode may be slots, versioned or fixed per target, and secretModeOf prefers it over renewal.secretMode", () => {
    const cfg = load({ renewal: { secretMode: "fixed" }, targets: [target({ secretMode: "versioned" }), target({ fqdn: "api.contoso.test", secretName: "api-tls", extension: extension("aks2") })] }).config!;
    expect(secretModeOf(cfg, cfg.targets[0]!)).toBe("versioned");
    expect(secretModeOf(cfg, cfg.targets[1]!)).toBe("fixed");
    expect(withTarget({ secretMode: "fixed" }).config?.targets[0]!.secretMode).toBe("fixed");
    expect(withTarget({ secretMode: "slots" }).config?.targets[0]!.secretMode).toBe("slots");
    expect(withTarget({ secretMode: "sometimes" }).problems).toEqual(['targets[0].secretMode: Invalid option: expected one of "slots"|"versioned"|"fixed"']);
  });

  it("expectedAddress is trimmed; manageRecord defaults to false", () => {
    const t = withTarget({ expectedAddress: " 10.0.0.4 " }).config!.targets[0]!;
    expect(t.expectedAddress).toBe("10.0.0.4");
    expect(t.manageRecord).toBe(false);
  });

  it("kubernetes: inCluster defaults to false and cannot be combined with a kubeconfig or a context", () => {
    expect(withTarget({ kubernetes: {} }).config?.targets[0]!.kubernetes).toEqual({ inCluster: false });
    expect(withTarget({ kubernetes: { inCluster: true } }).config?.targets[0]!.kubernetes).toEqual({ inCluster: true });
    for (const k of [{ inCluster: true, kubeconfig: "/k" }, { inCluster: true, context: "aks" }]) {
      expect(withTarget({ kubernetes: k }).problems).toEqual(["targets[0].kubernetes: inCluster cannot be combined with kubeconfig/context"]);
    }
  });
});

describe("acme", () => {
  it("the directory is trimmed and a preset resolves to its URL; an https:// URL is kept", () => {
    expect(directoryUrl(withTarget({}, { acme: { directory: " letsencrypt-staging " } }).config!)).toBe("https://acme-staging-v02.api.letsencrypt.org/directory");
    expect(directoryUrl(withTarget({}, { acme: { directory: "https://127.0.0.1:14000/dir" } }).config!)).toBe("https://127.0.0.1:14000/dir");
  });

  it("a directory that is neither a preset nor an https:// URL is refused, listing the presets", () => {
    const message = "acme.directory: must be one of letsencrypt, letsencrypt-staging, zerossl, google, google-staging, buypass or an https:// URL";
    expect(withTarget({}, { acme: { directory: "ftp://x" } }).problems).toEqual([message]);
    expect(withTarget({}, { acme: { directory: "http://ca.example/https://" } }).problems).toEqual([message]);
    expect(withTarget({}, { acme: { directory: 5 } }).problems).toEqual(["acme.directory: Invalid input: expected string, received number"]);
  });

  it.each(["zerossl", "google", "google-staging"])("the %s CA requires External Account Binding", (dir) => {
    expect(withTarget({}, { acme: { directory: dir } }).problems).toEqual([`acme.eab: the ${dir} CA requires External Account Binding (eab.keyId and eab.hmacKeyFile)`]);
  });

  it("buypass and Let's Encrypt do not need EAB", () => {
    expect(withTarget({}, { acme: { directory: "buypass" } }).problems).toEqual([]);
    expect(withTarget({}, { acme: { directory: "letsencrypt" } }).problems).toEqual([]);
  });

  it("EAB needs a key ID and an HMAC key (file); both are trimmed and must not be empty", () => {
    expect(withTarget({}, { acme: { eab: { keyId: "kid-1" } } }).problems).toEqual(["acme.eab: needs hmacKeyFile (or AMLCERT_ACME_EAB_HMAC_KEY_FILE)"]);
    expect(withTarget({}, { acme: { eab: { keyId: "  ", hmacKey: " " } } }).problems).toEqual([
      "acme.eab.keyId: must not be empty",
      "acme.eab.hmacKey: must not be empty",
      "acme.eab: needs hmacKeyFile (or AMLCERT_ACME_EAB_HMAC_KEY_FILE)",
    ]);
    expect(withTarget({}, { acme: { eab: { keyId: " kid-1 ", hmacKeyFile: "/run/hmac" } } }).config?.acme.eab).toEqual({ keyId: "kid-1", hmacKeyFile: "/run/hmac" });
  });

  it("the e-mail must be an address", () => {
    expect(withTarget({}, { acme: { email: "not-mail" } }).problems).toEqual(["acme.email: must be an e-mail address"]);
  });

  it("the account key lives in the default secret unless a file or another secret is named, never both", () => {
    expect(withTarget({}).config?.acme.accountKey).toEqual({ secret: "amlcert-acme-account", kubernetes: { inCluster: false } });
    expect(withTarget({}, { acme: { accountKey: { file: "/k" } } }).config?.acme.accountKey).toEqual({ file: "/k", kubernetes: { inCluster: false } });
    expect(withTarget({}, { acme: { accountKey: { secret: "mine" } } }).config?.acme.accountKey).toEqual({ secret: "mine", kubernetes: { inCluster: false } });
    expect(withTarget({}, { acme: { accountKey: { file: "/k", secret: "mine" } } }).problems).toEqual(["acme.accountKey: set either file or secret, not both"]);
  });

  it("a null acme section is reported, not a crash", () => {
    expect(withTarget({}, { acme: null }).problems).toEqual(["acme: Invalid input: expected object, received null"]);
  });
});

describe("azure, dns, renewal, verify", () => {
  it.each(["resourceManagerEndpoint", "authorityHost"])("azure.%s must be an https:// URL", (key) => {
    expect(withTarget({}, { azure: { [key]: "https://127.0.0.1:8443" } }).problems).toEqual([]);
    for (const bad of ["http://127.0.0.1", "xhttps://a.example", "httpsx://a.example", "not a url"]) {
      expect(withTarget({}, { azure: { [key]: bad } }).problems).toEqual([`azure.${key}: must be an https:// URL`]);
    }
  });

  it("name servers and resolvers, when given, list at least one server", () => {
    expect(withTarget({}, { dns: { nameServers: [], resolvers: [] } }).problems).toEqual([
      "dns.nameServers: must list at least one server, or be left out",
      "dns.resolvers: must list at least one server, or be left out",
    ]);
    expect(withTarget({}, { dns: { nameServers: ["127.0.0.1:53", "[::1]:53"], resolvers: ["127.0.0.1", "127.0.0.2:5353"] } }).config?.dns).toMatchObject({
      nameServers: ["127.0.0.1:53", "[::1]:53"],
      resolvers: ["127.0.0.1", "127.0.0.2:5353"],
    });
  });

  it("the TXT TTL is a whole number of seconds from 1 to 3600, default 60", () => {
    expect(withTarget({}).config?.dns.txtTtl).toBe(60);
    for (const ok of [1, 120, 3600]) expect(withTarget({}, { dns: { txtTtl: ok } }).config?.dns.txtTtl).toBe(ok);
    expect(withTarget({}, { dns: { txtTtl: 0 } }).problems).toEqual(["dns.txtTtl: Too small: expected number to be >=1"]);
    expect(withTarget({}, { dns: { txtTtl: 3601 } }).problems).toEqual(["dns.txtTtl: Too big: expected number to be <=3600"]);
  });

  it("durations default as documented, and a number is seconds", () => {
    const c = withTarget({}).config!;
    expect([c.dns.propagationTimeout, c.dns.propagationInterval, c.extension.lroTimeout, c.extension.pollInterval, c.verify.timeout, c.verify.interval, c.daemon.jitter]).toEqual([
      600_000, 5000, 1_800_000, 10_000, 300_000, 5000, 1_800_000,
    ]);
    expect(withTarget({}, { dns: { propagationTimeout: 90 } }).config?.dns.propagationTimeout).toBe(90_000);
  });

  it("renewBefore is optional, a duration, and named when it is not one", () => {
    expect(withTarget({}).config?.renewal.renewBefore).toBeUndefined();
    expect(withTarget({}, { renewal: { renewBefore: "30d" } }).config?.renewal.renewBefore).toBe(2_592_000_000);
    expect(withTarget({}, { renewal: { renewBefore: 3600 } }).config?.renewal.renewBefore).toBe(3_600_000);
    expect(withTarget({}, { renewal: { renewBefore: "soon" } }).problems).toEqual(['renewal.renewBefore: "soon" is not a duration; use e.g. 30d']);
  });

  it("renewal.secretMode is versioned or fixed; keepPrevious is 1 to 10, default 1", () => {
    expect(withTarget({}, { renewal: { secretMode: "fixed" } }).config?.renewal.secretMode).toBe("fixed");
    expect(withTarget({}).config?.renewal.keepPrevious).toBe(1);
    for (const ok of [1, 5, 10]) expect(withTarget({}, { renewal: { keepPrevious: ok } }).config?.renewal.keepPrevious).toBe(ok);
    expect(withTarget({}, { renewal: { keepPrevious: 0 } }).problems).toEqual(["renewal.keepPrevious: Too small: expected number to be >=1"]);
    expect(withTarget({}, { renewal: { keepPrevious: 11 } }).problems).toEqual(["renewal.keepPrevious: Too big: expected number to be <=10"]);
  });

  it("renewal.concurrency is 1 to 32, default 8; dns.propagationSettle is a duration, default 0", () => {
    expect(withTarget({}).config?.renewal.concurrency).toBe(8);
    for (const ok of [1, 32]) expect(withTarget({}, { renewal: { concurrency: ok } }).config?.renewal.concurrency).toBe(ok);
    expect(withTarget({}, { renewal: { concurrency: 0 } }).problems).toEqual(["renewal.concurrency: Too small: expected number to be >=1"]);
    expect(withTarget({}, { renewal: { concurrency: 33 } }).problems).toEqual(["renewal.concurrency: Too big: expected number to be <=32"]);
    expect(withTarget({}).config?.dns.propagationSettle).toBe(0);
    expect(withTarget({}, { dns: { propagationSettle: "2s" } }).config?.dns.propagationSettle).toBe(2_000);
    expect(withTarget({}, { dns: { propagationSettle: "soon" } }).problems).toEqual(['dns.propagationSettle: "soon" is not a duration; use e.g. 90s, 10m, 12h, 30d']);
  });

  it("verify.port is 1 to 65535, default 443", () => {
    expect(withTarget({}).config?.verify.port).toBe(443);
    expect(withTarget({}, { verify: { port: 65535 } }).config?.verify.port).toBe(65535);
    expect(withTarget({}, { verify: { port: 65536 } }).problems).toEqual(["verify.port: Too big: expected number to be <=65535"]);
    expect(withTarget({}, { verify: { port: 0 } }).problems).toEqual(["verify.port: Too small: expected number to be >=1"]);
  });
});

describe("daemon, metrics, history, log", () => {
  it("the schedule is trimmed, defaults to every 6 hours, and an invalid one is named with node-cron's reason", () => {
    expect(withTarget({}).config?.daemon).toEqual({ schedule: "0 */6 * * *", jitter: 1_800_000, listen: "0.0.0.0:9464", runAtStart: true });
    expect(withTarget({}, { daemon: { schedule: " 30 2 * * * " } }).config?.daemon.schedule).toBe("30 2 * * *");
    const problem = cronProblem("61 * * * *");
    expect(problem).toBeDefined();
    expect(withTarget({}, { daemon: { schedule: "61 * * * *" } }).problems).toEqual([`daemon.schedule: "61 * * * *" is not a cron expression (${problem}); e.g. "0 */6 * * *"`]);
  });

  it("the daemon's listen address is host:port or [ipv6]:port, trimmed; the port is required", () => {
    for (const [given, kept] of [
      ["127.0.0.1:9464", "127.0.0.1:9464"],
      [" 0.0.0.0:8080 ", "0.0.0.0:8080"],
      ["[::1]:9464", "[::1]:9464"],
      ["localhost:1", "localhost:1"],
    ]) {
      expect(withTarget({}, { daemon: { listen: given } }).config?.daemon.listen).toBe(kept);
    }
    for (const bad of ["127.0.0.1", "[::1]", "::1", "localhost:99999", "localhost:0", ":9464", "a b:9464", "host:94x"]) {
      expect(withTarget({}, { daemon: { listen: bad } }).problems).toEqual(["daemon.listen: must be host:port or [ipv6]:port (the port is required)"]);
    }
  });

  it("name servers and resolvers are trimmed", () => {
    expect(withTarget({}, { dns: { nameServers: [" 127.0.0.1:53 "], resolvers: [" [::1]:5353 "] } }).config?.dns).toMatchObject({ nameServers: ["127.0.0.1:53"], resolvers: ["[::1]:5353"] });
  });

  it("the Pushgateway is an http:// or https:// URL", () => {
    for (const ok of ["http://127.0.0.1:9091", "https://push.example"]) expect(withTarget({}, { metrics: { pushgateway: ok } }).config?.metrics.pushgateway).toBe(ok);
    for (const bad of ["ftp://push.example", "xhttp://push.example", "httpx://push.example"]) {
      expect(withTarget({}, { metrics: { pushgateway: bad } }).problems).toEqual(["metrics.pushgateway: must be an http:// or https:// URL"]);
    }
  });

  it("the job label is trimmed, defaults to amlcert, and is a Prometheus job name", () => {
    expect(withTarget({}).config?.metrics.job).toBe("amlcert");
    expect(withTarget({}, { metrics: { job: " amlcert_prod-2 " } }).config?.metrics.job).toBe("amlcert_prod-2");
    for (const bad of ["9job", "job!", "!job", "a b"]) {
      expect(withTarget({}, { metrics: { job: bad } }).problems).toEqual(["metrics.job: must be a Prometheus job name"]);
    }
  });

  it("the history ConfigMap is trimmed, defaults to amlcert-history, and is a DNS-1123 label", () => {
    expect(withTarget({}).config?.history.configMap).toBe("amlcert-history");
    for (const ok of ["a", "ab", "abc", "abcd-efg1"]) expect(withTarget({}, { history: { configMap: ` ${ok} ` } }).config?.history.configMap).toBe(ok);
    for (const bad of ["_ab", "ab_", "-ab", "ab-", "Ab", "a_b"]) {
      expect(withTarget({}, { history: { configMap: bad } }).problems).toEqual(["history.configMap: must be a DNS-1123 label (lower case letters, digits, '-')"]);
    }
  });

  it("every log level and format is accepted; the defaults are info and auto", () => {
    expect(withTarget({}).config?.log).toEqual({ level: "info", format: "auto" });
    for (const level of ["trace", "debug", "info", "warn", "error"]) expect(withTarget({}, { log: { level } }).config?.log.level).toBe(level);
    for (const format of ["auto", "json", "pretty"]) expect(withTarget({}, { log: { format } }).config?.log.format).toBe(format);
    expect(withTarget({}, { log: { level: "verbose" } }).problems).toEqual(['log.level: Invalid option: expected one of "trace"|"debug"|"info"|"warn"|"error"']);
  });
});

describe("the whole schema", () => {
  it("the checks amlcert adds are zod custom issues, each at the path of its field", () => {
    const issues = (input: unknown) => {
      const r = configSchema.safeParse(input);
      return r.success ? [] : r.error.issues.map((i) => [i.code, i.path.join(".")]);
    };
    expect(
      issues({
        acme: { directory: "zerossl" },
        dns: { propagationTimeout: "soon" },
        renewal: { renewBefore: "later" },
        daemon: { schedule: "61 * * * *" },
        targets: [target({ sans: ["api.other.test"] }), target({ fqdn: "ml.contoso.test", secretName: "other-tls" }), target({ fqdn: "x.elsewhere.test", secretName: "x-tls", extension: extension("aks3") })],
      }),
    ).toEqual([
      ["custom", "dns.propagationTimeout"],
      ["custom", "renewal.renewBefore"],
      ["custom", "daemon.schedule"],
      ["custom", "targets.0.sans.0"],
      ["custom", "targets.1.fqdn"],
      ["custom", "targets.1.extension"],
      ["custom", "targets.2.fqdn"],
      ["custom", "acme.eab"],
    ]);
    expect(issues({ acme: { directory: "ftp://x" }, targets: [target()] })).toEqual([["custom", "acme.directory"]]);
  });


  it("parses the minimal config to these defaults", () => {
    const parsed = configSchema.parse({ targets: [target()] });
    expect({ ...parsed, targets: undefined }).toEqual({
      acme: { directory: "letsencrypt", accountKey: { secret: "amlcert-acme-account", kubernetes: { inCluster: false } }, keyType: "rsa2048", requestTimeout: 30_000, maxRetries: 3, maxRetryAfter: 120_000 },
      azure: { cloud: "AzurePublicCloud", requestTimeout: 30_000, maxRetries: 4, maxRetryAfter: 60_000 },
      kubernetesApi: { requestTimeout: 30_000, maxRetries: 4, maxRetryAfter: 30_000 },
      dns: { propagationTimeout: 600_000, propagationInterval: 5000, propagationSettle: 0, txtTtl: 60, queryTimeout: 2000, queryTries: 2 },
      renewal: { secretMode: "slots", keepPrevious: 1, concurrency: 8 },
      extension: { lroTimeout: 1_800_000, pollInterval: 10_000, busyTimeout: 600_000, busyInterval: 15_000 },
      verify: { port: 443, timeout: 300_000, interval: 5000, probeTimeout: 10_000 },
      daemon: { schedule: "0 */6 * * *", jitter: 1_800_000, listen: "0.0.0.0:9464", runAtStart: true },
      metrics: { job: "amlcert" },
      history: { configMap: "amlcert-history" },
      log: { level: "info", format: "auto" },
      targets: undefined,
    });
  });
});
