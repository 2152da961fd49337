/**
 * The one configuration schema. Every setting has its default here; `fields` (config/fields.ts) gives each scalar
 * its environment variable and documentation, and README's configuration table is generated from both.
 */
import { z } from "zod";
import { parseDuration } from "./duration.js";
import { parseServer } from "../dns-check/name-servers.js";
import { CertificateKeyTypes } from "../acme/keys.js";
import { describeLifetime, KNOWN_PROFILE_LIFETIMES_MS, PROFILE_NAME } from "../acme/profiles.js";
import { CloudNames } from "../azure/cloud.js";
import { cronProblem } from "../schedule/cron.js";
import { vaultDnsSuffix, vaultUrlProblem } from "../keyvault/vault-url.js";

export const DIRECTORY_PRESETS = {
  letsencrypt: "https://acme-v02.api.letsencrypt.org/directory",
  "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
  zerossl: "https://acme.zerossl.com/v2/DV90",
  google: "https://dv.acme-v02.api.pki.goog/directory",
  "google-staging": "https://dv.acme-v02.test-api.pki.goog/directory",
  buypass: "https://api.buypass.com/acme/directory",
} as const;


const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const fqdnSchema = z
  .string()
  .trim()
  .toLowerCase()
  .refine((s) => s.length <= 253 && s.split(".").length >= 2 && s.split(".").every((l, i) => LABEL.test(l) || (i === 0 && l === "*")), {
    message: "must be a fully qualified domain name such as ml.contoso.com (a leading *. is allowed for extra SANs)",
  });
const hostnameSchema = fqdnSchema.refine((s) => !s.startsWith("*."), { message: "must not be a wildcard" });

const duration = (def: string) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `"${v}" is not a duration; use e.g. 90s, 10m, 12h, 30d` });
        return z.NEVER;
      }
      return ms;
    })
    .prefault(def);

const guid = z.string().trim().regex(/^[0-9a-fA-F-]{36}$/, "must be a subscription ID (GUID)");
const resourceGroup = z.string().trim().regex(/^[-\w._()]{1,90}$/, "must be a resource group name");

/** `host`, `host:port`, `[v6]` or `[v6]:port` */
const hostPort = z.string().trim().refine((v) => parseServer(v) !== undefined, { message: "must be host, host:port or [ipv6]:port" });

const zoneRef = z
  .object({
    subscriptionId: guid,
    resourceGroup,
    zone: hostnameSchema,
  })
  // a misspelt key here (zoen) is named like everywhere else, not dropped
  .strict();

const kubernetesSource = z
  .object({
    inCluster: z.boolean().default(false),
    kubeconfig: z.string().optional(),
    context: z.string().optional(),
  })
  .strict()
  .refine((k) => !(k.inCluster && (k.kubeconfig || k.context)), { message: "inCluster cannot be combined with kubeconfig/context" });

/** Slots mode appends `-a`/`-b` (61 + 2 = 63, a DNS-1123 label); versioned mode `-yyyymmdd-xxxxxxxx` (checked below: 45). */
const SECRET_NAME_MAX = 61;
export const VERSIONED_SECRET_NAME_MAX = 45;
const secretName = z
  .string()
  .trim()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label (lower case letters, digits, '-')")
  .max(SECRET_NAME_MAX, `must be at most ${SECRET_NAME_MAX} characters (a slot suffix -a/-b is appended)`);
const secretModes = ["slots", "versioned", "fixed"] as const;

/** Where a target's certificate comes from (C4): ACME (default), a Key Vault certificate, or a Kubernetes TLS secret. */
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const sourceSchema = z
  .object({
    acme: z.object({}).strict().optional(),
    keyVault: z
      .object({
        vaultUrl: z.string().trim().optional(),
        vaultName: z.string().trim().regex(/^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/, "must be a key vault name (3-24 letters, digits and '-')").optional(),
        certificateName: z.string().trim().regex(/^[0-9a-zA-Z-]{1,127}$/, "must be a Key Vault certificate name (letters, digits and '-')"),
        version: z.string().trim().regex(/^[0-9a-fA-F]{32}$/, "must be a certificate version (32 hex digits)").optional(),
        fetchIntermediates: z.boolean().default(false),
      })
      .strict()
      .refine((k) => Boolean(k.vaultUrl) !== Boolean(k.vaultName), { message: "set either vaultUrl or vaultName" })
      .optional(),
    kubernetesTls: z
      .object({
        namespace: z.string().trim().regex(dns1123Label, "must be a namespace name (DNS-1123 label)"),
        secretName: z.string().trim().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a secret name (DNS-1123 subdomain)").max(253),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((src) => [src.acme, src.keyVault, src.kubernetesTls].filter((x) => x !== undefined).length === 1, { message: "set exactly one of acme, keyVault, kubernetesTls" });

const targetSchema = z
  .object({
    fqdn: hostnameSchema,
    sans: z.array(fqdnSchema).default([]),
    dnsZone: zoneRef,
    challengeZones: z.array(zoneRef).default([]),
    extension: z
      .object({
        subscriptionId: guid,
        resourceGroup,
        clusterType: z.enum(["managedClusters", "connectedClusters"]),
        clusterName: z.string().trim().min(1, "must not be empty"),
        name: z.string().trim().min(1, "must not be empty"),
      })
      .strict(),
    kubernetes: kubernetesSource.prefault({}),
    secretName,
    secretMode: z.enum(secretModes).optional(),
    expectedAddress: z.string().trim().optional(),
    probeAddress: hostPort.optional(),
    manageRecord: z.boolean().default(false),
    source: sourceSchema.optional(),
    /** the ACME profile for this target's orders (over acme.profile) */
    profile: z.string().trim().regex(PROFILE_NAME, "must be a profile name such as classic, tlsserver or shortlived").optional(),
  })
  .strict();

export const configSchema = z
  .object({
    acme: z
      .object({
        directory: z.string().trim().default("letsencrypt"),
        email: z.email("must be an e-mail address").optional(),
        eab: z
          .object({
            keyId: z.string().trim().min(1, "must not be empty"),
            hmacKey: z.string().trim().min(1, "must not be empty").optional(),
            hmacKeyFile: z.string().optional(),
          })
          .strict()
          .refine((e) => e.hmacKey || e.hmacKeyFile, { message: "needs hmacKeyFile (or AMLCERT_ACME_EAB_HMAC_KEY_FILE)" })
          .optional(),
        accountKey: z
          .object({
            file: z.string().optional(),
            secret: secretName.optional(),
            kubernetes: kubernetesSource.prefault({}),
          })
          .strict()
          .refine((a) => !(a.file && a.secret), { message: "set either file or secret, not both" })
          .transform((a) => (a.file || a.secret ? a : { ...a, secret: "amlcert-acme-account" }))
          .prefault({}),
        keyType: z.enum(CertificateKeyTypes).default("rsa2048"),
        /** the CA's certificate profile to order (one of its directory's meta.profiles), e.g. tlsserver */
        profile: z.string().trim().regex(PROFILE_NAME, "must be a profile name such as classic, tlsserver or shortlived").optional(),
        requestTimeout: duration("30s"),
        maxRetries: z.number().int().min(0).max(10).default(3),
        maxRetryAfter: duration("2m"),
      })
      .strict()
      .prefault({}),
    azure: z
      .object({
        cloud: z.enum(CloudNames).default("AzurePublicCloud"),
        resourceManagerEndpoint: z.url({ protocol: /^https$/, error: "must be an https:// URL" }).optional(),
        authorityHost: z.url({ protocol: /^https$/, error: "must be an https:// URL" }).optional(),
        tokenScope: z.string().optional(),
        /** Key Vault's DNS suffix when azure.cloud's is not it (a private cloud; the test stand-in) */
        keyVaultDnsSuffix: z.string().trim().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a DNS suffix such as vault.azure.net").optional(),
        requestTimeout: duration("30s"),
        maxRetries: z.number().int().min(0).max(10).default(4),
        maxRetryAfter: duration("60s"),
      })
      .strict()
      .prefault({}),
    kubernetesApi: z
      .object({
        requestTimeout: duration("30s"),
        maxRetries: z.number().int().min(0).max(10).default(4),
        maxRetryAfter: duration("30s"),
      })
      .strict()
      .prefault({}),
    dns: z
      .object({
        nameServers: z.array(hostPort).min(1, "must list at least one server, or be left out").optional(),
        resolvers: z.array(hostPort).min(1, "must list at least one server, or be left out").optional(),
        propagationTimeout: duration("10m"),
        propagationInterval: duration("5s"),
        propagationSettle: duration("0s"),
        txtTtl: z.number().int().min(1).max(3600).default(60),
        queryTimeout: duration("2s"),
        queryTries: z.number().int().min(1).max(5).default(2),
      })
      .strict()
      .prefault({}),
    renewal: z
      .object({
        renewBefore: z.union([z.string(), z.number()]).optional().transform((v, ctx) => {
          if (v === undefined) return undefined;
          const ms = parseDuration(v);
          if (ms === undefined) {
            ctx.addIssue({ code: "custom", message: `"${v}" is not a duration; use e.g. 30d` });
            return z.NEVER;
          }
          return ms;
        }),
        secretMode: z.enum(secretModes).default("slots"),
        keepPrevious: z.number().int().min(1).max(10).default(1),
        concurrency: z.number().int().min(1).max(32).default(8),
      })
      .strict()
      .prefault({}),
    extension: z
      .object({
        lroTimeout: duration("30m"),
        pollInterval: duration("10s"),
        busyTimeout: duration("10m"),
        busyInterval: duration("15s"),
      })
      .strict()
      .prefault({}),
    verify: z
      .object({
        trustBundleFile: z.string().optional(),
        port: z.number().int().min(1).max(65535).default(443),
        timeout: duration("5m"),
        interval: duration("5s"),
        probeTimeout: duration("10s"),
      })
      .strict()
      .prefault({}),
    daemon: z
      .object({
        schedule: z
          .string()
          .trim()
          .default("0 */6 * * *")
          .superRefine((v, ctx) => {
            const problem = cronProblem(v);
            if (problem) ctx.addIssue({ code: "custom", message: `"${v}" is not a cron expression (${problem}); e.g. "0 */6 * * *"` });
          }),
        jitter: duration("30m"),
        // the port is required: parseServer's default is DNS's 53
        listen: z
          .string()
          .trim()
          .refine((v) => /^\[[^\]]+\]:\d+$|^[^:\[\]]+:\d+$/.test(v) && parseServer(v) !== undefined, { message: "must be host:port or [ipv6]:port (the port is required)" })
          .default("0.0.0.0:9464"),
        runAtStart: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        pushgateway: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
        job: z.string().trim().regex(/^[a-zA-Z_][a-zA-Z0-9_-]*$/, "must be a Prometheus job name").default("amlcert"),
      })
      .strict()
      .prefault({}),
    history: z
      .object({
        configMap: z
          .string()
          .trim()
          .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label (lower case letters, digits, '-')")
          .default("amlcert-history"),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
        format: z.enum(["auto", "json", "pretty"]).default("auto"),
      })
      .strict()
      .prefault({}),
    targets: z.array(targetSchema).min(1, "at least one target is required"),
  })
  .strict()
  // Cross-field checks run even when other fields are invalid, so every problem is reported at once.
  .superRefine((cfg, ctx) => {
    if (!Array.isArray(cfg.targets)) return;
    const seen = new Map<string, number>();
    const extensions = new Map<string, number>();
    cfg.targets.forEach((t, i) => {
      if (!t || typeof t.fqdn !== "string" || typeof t.dnsZone?.zone !== "string") return;
      if (seen.has(t.fqdn)) ctx.addIssue({ code: "custom", path: ["targets", i, "fqdn"], message: `duplicates targets[${seen.get(t.fqdn)}].fqdn` });
      const vaultUrl = t.source?.keyVault?.vaultUrl;
      if (typeof vaultUrl === "string") {
        const problem = vaultUrlProblem(vaultUrl, vaultDnsSuffix(cfg.azure?.cloud ?? "AzurePublicCloud", cfg.azure?.keyVaultDnsSuffix));
        if (problem) ctx.addIssue({ code: "custom", path: ["targets", i, "source", "keyVault", "vaultUrl"], message: problem });
      }
      if ((t.secretMode ?? cfg.renewal?.secretMode) === "versioned" && typeof t.secretName === "string" && t.secretName.length > VERSIONED_SECRET_NAME_MAX) {
        ctx.addIssue({ code: "custom", path: ["targets", i, "secretName"], message: `must be at most ${VERSIONED_SECRET_NAME_MAX} characters in versioned mode (a version suffix -yyyymmdd-xxxxxxxx is appended)` });
      }
      seen.set(t.fqdn, i);
      const e = t.extension;
      if (e) {
        const key = [e.subscriptionId, e.resourceGroup, e.clusterType, e.clusterName, e.name].join("/").toLowerCase();
        if (extensions.has(key)) {
          ctx.addIssue({
            code: "custom",
            path: ["targets", i, "extension"],
            message: `is the same extension as targets[${extensions.get(key)}]; one extension has one sslSecret and one sslCname, so give it one target (use sans for more names)`,
          });
        }
        extensions.set(key, i);
      }
      const zones = [t.dnsZone.zone, ...(Array.isArray(t.challengeZones) ? t.challengeZones.map((z) => z?.zone) : [])].filter((z): z is string => typeof z === "string");
      const inZone = (n: string) => zones.some((z) => n.replace(/^\*\./, "") === z || n.replace(/^\*\./, "").endsWith(`.${z}`));
      if (!inZone(t.fqdn)) ctx.addIssue({ code: "custom", path: ["targets", i, "fqdn"], message: `is not inside dnsZone.zone ${t.dnsZone.zone}` });
      (Array.isArray(t.sans) ? t.sans : []).forEach((s, j) => {
        if (typeof s === "string" && !inZone(s)) ctx.addIssue({ code: "custom", path: ["targets", i, "sans", j], message: `is not inside dnsZone.zone ${t.dnsZone.zone} or a challengeZones zone` });
      });
    });
    // a renewBefore as long as the profile's certificates live would renew at issuance, every run
    const renewBefore = cfg.renewal?.renewBefore;
    if (typeof renewBefore === "number" && Array.isArray(cfg.targets)) {
      const told = new Set<string>();
      cfg.targets.forEach((t, i) => {
        const profile = t?.profile ?? cfg.acme?.profile;
        const lifetime = typeof profile === "string" ? KNOWN_PROFILE_LIFETIMES_MS[profile] : undefined;
        if (lifetime !== undefined && renewBefore >= lifetime && !told.has(profile!)) {
          told.add(profile!);
          ctx.addIssue({
            code: "custom",
            path: ["renewal", "renewBefore"],
            message: `must be shorter than the ${describeLifetime(lifetime)} that ${profile} certificates live (${t?.profile ? `targets[${i}].profile` : "acme.profile"}); e.g. ${describeLifetime(Math.floor(lifetime / 3))}, or leave it out to renew at 2/3 of the lifetime`,
          });
        }
      });
    }
    const dir = cfg.acme?.directory;
    if (typeof dir !== "string") return;
    if (!(dir in DIRECTORY_PRESETS) && !/^https:\/\//.test(dir)) {
      ctx.addIssue({ code: "custom", path: ["acme", "directory"], message: `must be one of ${Object.keys(DIRECTORY_PRESETS).join(", ")} or an https:// URL` });
    }
    if (["zerossl", "google", "google-staging"].includes(dir) && !cfg.acme?.eab) {
      ctx.addIssue({ code: "custom", path: ["acme", "eab"], message: `the ${dir} CA requires External Account Binding (eab.keyId and eab.hmacKeyFile)` });
    }
  }, { when: () => true });

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type TargetConfig = Config["targets"][number];
export type KubernetesSourceConfig = TargetConfig["kubernetes"];
export type ZoneRefConfig = TargetConfig["dnsZone"];

export type SourceConfig = NonNullable<TargetConfig["source"]>;

export function directoryUrl(cfg: Config): string {
  return (DIRECTORY_PRESETS as Record<string, string>)[cfg.acme.directory] ?? cfg.acme.directory;
}

export function secretModeOf(cfg: Config, t: TargetConfig): (typeof secretModes)[number] {
  return t.secretMode ?? cfg.renewal.secretMode;
}
