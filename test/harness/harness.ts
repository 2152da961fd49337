/**
 * The one harness: Pebble (the real ACME CA), the authoritative DNS stand-in, Entra ID, ARM (Azure DNS + the
 * extension), one Kubernetes API server and one azureml-fe per cluster, all on loopback. Used by the e2e suite,
 * the sandbox demo and the benchmarks. It writes a kubeconfig, a workload-identity token file, Pebble's roots and
 * an amlcert config, and runs the built CLI as a child process exactly as a user would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as x509 from "@peculiar/x509";
import { stringify } from "yaml";
import { inspectPair } from "../../src/certs/certificate.js";
import { ACCOUNT_KEY_DATA_KEY } from "../../src/acme/account-key-store.js";
import { LABEL_MANAGED_BY, LABEL_SECRET_BASE, MANAGED_BY, secretFor, versionedSecretName } from "../../src/renewal/certificate-version.js";
import { pkcs8Pem } from "../support/certs.js";
import { ZoneStore } from "../servers/zone-store.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { startEntraServer, type EntraServer } from "../servers/entra-server.js";
import { startArmServer, type ArmServer, type ClusterType, type ExtensionRef } from "../servers/arm-server.js";
import type { ExtensionSeed, HealthProblem } from "../servers/arm-extensions.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { deployManifestsFor, toYamlDocuments, type ManifestNames } from "../servers/kube-rbac.js";
import type { KObj as RbacObject } from "../servers/kube-resources.js";
import { startAzuremlFe, type AzuremlFe } from "../servers/azureml-fe.js";
import { startPebble, type Pebble } from "../servers/pebble.js";
import { startAcmeFront, type AcmeFront, type AcmeFrontOptions } from "../servers/acme-front.js";
import { readTestPki } from "../servers/trusted-pki.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { recordKnownSecrets, teeCliOutput } from "../support/secret-scan.js";

/** The project root: the nearest directory above this file with a package.json (works from test/ and dist/test/). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6 && !existsSync(join(dir, "package.json")); i++) dir = dirname(dir);
  return dir;
})();
/** dist/src/cli.js when running compiled, src is never run through a loader */
/** AMLCERT_TEST_CLI runs the suite on another build of the CLI, e.g. the bundle (dist/bin/amlcert.js, bench/README.md) */
export const CLI = process.env.AMLCERT_TEST_CLI ? join(ROOT, process.env.AMLCERT_TEST_CLI) : join(ROOT, "dist/src/cli.js");
export const SUBSCRIPTION = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
export const DNS_RG = "dns-rg";
export const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const CLIENT_ID = "5b1d8a8e-3c0e-4c6f-9a3b-0f5e1c2d3a4b";
export const OBJECT_ID = "0c8d6e4f-1a2b-4c3d-8e9f-a0b1c2d3e4f5";

export interface ClusterSpec {
  /** kubeconfig context and ARM cluster name */
  name: string;
  clusterType?: ClusterType;
  fqdn: string;
  sans?: string[];
  /** seed the extension's sslSecret (and the secret) with a certificate already in place */
  initialSecret?: { name: string; certPem: string; keyPem: string };
  /** extra settings on the extension */
  settings?: Record<string, string>;
  protectedSettings?: Record<string, string>;
  /** create the FQDN's A record to azureml-fe's address (default true) */
  aRecord?: boolean;
}

/**
 * The RBAC the Kubernetes stand-ins enforce. "default": deploy/overlays/cronjob as `kubectl kustomize` renders it, the
 * default Role and the objects it may not create (both slots of secretName aml-tls, the ACME account secret, the
 * Lease, the history ConfigMap), created at start and again by reset() when missing. "versioned":
 * deploy/overlays/versioned (the same plus its Secret rule). `{ file }`: that RBAC file alone, nothing created (e.g.
 * test/fixtures/rbac-adapters.yaml, the adapters' whole surface).
 */
export type HarnessRbac = "default" | "versioned" | { file: string };

export interface HarnessOptions {
  /**
   * default "default". With "default" or "versioned", writeConfig adjusts the Role and the objects to the names of the
   * config it writes (each target's secretName slots, acme.accountKey.secret, history.configMap; added to those of
   * earlier configs), as README tells a user to edit rbac.yaml and state.yaml; and a config in secret mode versioned
   * or fixed (renewal.secretMode or a target's) puts the versioned overlay's Role in place, for the rest of the
   * harness's life, as a user of that mode applies it.
   */
  rbac?: HarnessRbac;
  clusters?: ClusterSpec[];
  /** extra zones (e.g. a delegated validation zone) */
  extraZones?: string[];
  zone?: string;
  eab?: Record<string, string>;
  pebbleEnv?: Record<string, string>;
  certificateValidityPeriodSeconds?: number;
  domainBlocklist?: string[];
  propagationDelayMs?: number;
  /** use the PKI this process trusts (NODE_EXTRA_CA_CERTS); the demo makes its own */
  pki?: TestPki;
  /** put the ACME front (ARI, profiles, faults; test/servers/acme-front.ts) between the CLI and Pebble */
  acmeFront?: boolean | Pick<AcmeFrontOptions, "ari" | "profiles">;
}

export interface Cluster {
  spec: ClusterSpec;
  kube: KubeServer;
  fe: AzuremlFe;
  extension: ExtensionRef;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON lines */
  lines: Record<string, unknown>[];
}

export interface CliOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  /** stream the child's stderr (logs) as it comes; the child is given so a test can signal it */
  onStderr?: (chunk: string, child: ChildProcess) => void;
}

/** A CLI child that keeps running (the daemon): its output so far, bounded waits on it, and a signal to stop it. */
export interface SpawnedCli {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** resolves with the exit code (a signal's death is 128 + its number) once the child has exited */
  exited: Promise<number>;
  /** the first complete stderr line matching `pattern`, from the start of the output; rejects after `timeoutMs` or when the child exits first */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** send `signal` and resolve with the exit code; after `timeoutMs` the child is killed (SIGKILL) and this rejects */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number>;
}

/** A certificate made for a test (see Harness.makeCertificate). */
export interface MadeCertificate {
  /** the leaf, then Pebble's intermediate that signed it */
  chainPem: string;
  /** unencrypted PKCS#8, as amlcert writes keys */
  keyPem: string;
  /** upper-case hex, as amlcert reports serials */
  serial: string;
  names: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface MakeCertificateOptions {
  /** default: the cluster's FQDN, then its SANs */
  names?: string[];
  notBefore: Date;
  notAfter: Date;
  /** whose names are the default (index into clusters; default 0) */
  cluster?: number;
}

export interface SeedSecretOptions {
  cluster?: number;
  /** the config's `secretName` (default "aml-tls"): the base of the version's name and its label */
  base?: string;
  /**
   * default: slot `<base>-a` while the harness runs slots mode (the default: no config in versioned or fixed mode
   * written yet, rbac not "versioned"), so the default Role may read it; else `<base>-<yyyymmdd of notBefore>-<last
   * 8 hex of the serial>`, the name amlcert gives a version
   */
  name?: string;
  /** the rollout bookkeeping: "done" for a version the extension was pointed at (default), "pending" for one it never was */
  rollout?: "pending" | "done";
  rolloutFailures?: number;
}

export interface Harness {
  dir: string;
  pki: TestPki;
  zones: ZoneStore;
  zone: string;
  dns: DnsServer;
  entra: EntraServer;
  arm: ArmServer;
  pebble: Pebble;
  /** the ACME front when `acmeFront` was asked for: writeConfig's acme.directory is then the front's */
  acmeFront?: AcmeFront;
  clusters: Cluster[];
  kubeconfig: string;
  pebbleRootsFile: string;
  /** write an amlcert config (YAML) with every address pointing at the harness; returns its path */
  writeConfig(overrides?: Record<string, unknown>, name?: string): string;
  /** the environment a CLI child gets: trust, workload identity, nothing else from this process but PATH */
  cliEnv(extra?: Record<string, string>): Record<string, string>;
  runCli(args: string[], opts?: CliOptions): Promise<CliRun>;
  /** start the built CLI and return at once (for `amlcert daemon`); the harness's stop() kills it if still running */
  spawnCli(args: string[], opts?: { env?: Record<string, string> }): SpawnedCli;
  /**
   * A certificate for `names`, valid from notBefore to notAfter (in the past or the future, as the case needs), with an
   * ECDSA P-256 key, signed by this Pebble's own intermediate: it chains to the roots the TLS check trusts, exactly as
   * a certificate an earlier run obtained from this CA would, so a test can put one in place (already due, nearly
   * expired, not due) without issuing it or waiting for time to pass.
   */
  makeCertificate(opts: MakeCertificateOptions): Promise<MadeCertificate>;
  /** Store `cert` in the cluster's `azureml` namespace as amlcert stores a version (name, labels, annotations); returns the secret's name. */
  seedSecret(cert: MadeCertificate, opts?: SeedSecretOptions): string;
  /**
   * The cluster's extension as the harness installed it, but naming `sslSecret` (sslSecret, scoringFe.sslSecret and
   * sslCname, as amlcert sets them) when given, in `provisioningState` (default Succeeded); azureml-fe then reloads.
   */
  seedExtension(opts?: { cluster?: number; sslSecret?: string; provisioningState?: string }): Promise<void>;
  /**
   * A certificate in place: made (makeCertificate), stored as a rolled-out version (seedSecret), named by the
   * extension and served by azureml-fe (checked). Returns the secret's name and the certificate's serial.
   */
  seedCertificateInPlace(opts: MakeCertificateOptions & Omit<SeedSecretOptions, "cluster" | "rollout">): Promise<{ secret: string; serial: string; cert: MadeCertificate }>;
  /**
   * A new ACME account key (ECDSA P-256) in secret `secretName` of cluster 0 (where writeConfig keeps it), as a first
   * run saves it: the next run finds a stored key, which the CA does not know yet, and registers it. A test whose
   * faults hit secret writes uses this, so that the run gets past the account to the stage under test.
   */
  seedAccountKey(secretName?: string): void;
  /**
   * Put the stand-ins back as the harness started them, so a test does not depend on what earlier tests left. In each
   * cluster: no certificate versions (secrets labelled amlcert.io/secret-base; the initialSecret is put back), no
   * history ConfigMap, Lease or Events in `azureml`, no faults; the extension as installed; azureml-fe unfrozen and
   * reloaded (like the real one, it keeps serving its last certificate when the extension names none). At ARM: no
   * faults, deny rules, role assignments or latency, extension operations settled and their outcome as at start. In
   * DNS: the record sets as at start (the FQDNs' A records; a TXT value or CNAME a test wrote is gone), the start's
   * propagation delay, no dropped or failed queries. At the ACME front (when started): no hooks or windows, ARI and
   * profiles as started. Kept: the ACME account key secrets, Pebble's state (accounts,
   * authorizations) and every request log (tests compare against a mark they take).
   */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

function workloadToken(): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: "RS256", kid: "sa" })}.${b64({ iss: "https://oidc.aks.test/", sub: "system:serviceaccount:azureml:amlcert", aud: ["api://AzureADTokenExchange"], iat: now, exp: now + 3600 })}.c2ln`;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "amlcert-harness-"));
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pki = opts.pki ?? readTestPki(join(ROOT, ".cache/test-pki"));
    const zone = opts.zone ?? "contoso.test";
    const zones = new ZoneStore();
    zones.propagationDelayMs = opts.propagationDelayMs ?? 0;
    zones.addZone(SUBSCRIPTION, DNS_RG, zone, ["ns1-01.azure-dns.test", "ns2-01.azure-dns.test"]);
    for (const z of opts.extraZones ?? []) zones.addZone(SUBSCRIPTION, DNS_RG, z, ["ns1-02.azure-dns.test"]);

    const dns = await startDnsServer({ zones });
    stops.push(() => dns.close());
    const entra = await startEntraServer({ pki, tenantId: TENANT });
    stops.push(() => entra.close());
    const token = workloadToken();
    const tokenFile = join(dir, "azure-identity-token");
    writeFileSync(tokenFile, token);
    entra.registerClient({ clientId: CLIENT_ID, objectId: OBJECT_ID, federatedAssertion: token });
    const arm = await startArmServer({ pki, entra, zones });
    stops.push(() => arm.close());
    const pebble = await startPebble({
      pki,
      dnsServer: dns.address,
      eab: opts.eab,
      env: opts.pebbleEnv,
      certificateValidityPeriodSeconds: opts.certificateValidityPeriodSeconds,
      domainBlocklist: opts.domainBlocklist,
    });
    stops.push(() => pebble.close());
    const acmeFront = opts.acmeFront
      ? await startAcmeFront({ upstreamDirectoryUrl: pebble.directoryUrl, pki, ...(opts.acmeFront === true ? {} : opts.acmeFront) })
      : undefined;
    if (acmeFront) stops.push(() => acmeFront.close());
    const pebbleRootsFile = join(dir, "pebble-roots.pem");
    writeFileSync(pebbleRootsFile, await pebble.rootsPem());

    const specs = opts.clusters ?? [{ name: "aks-ml", fqdn: `ml.${zone}` }];
    // the shipped manifests, for the secretName writeConfig gives every target
    const rbacChoice = opts.rbac ?? "default";
    let overlay: "cronjob" | "versioned" = rbacChoice === "versioned" ? "versioned" : "cronjob";
    // seedSecret's default name: slot -a in slots mode, a version once a config in versioned or fixed mode was written
    let seedsVersions = rbacChoice === "versioned";
    const names: ManifestNames = { secretNames: ["aml-tls"], accountSecrets: ["amlcert-acme-account"], historyConfigMaps: ["amlcert-history"] };
    let manifests = typeof rbacChoice === "string" ? deployManifestsFor(ROOT, overlay, names) : undefined;
    const rbacFile = manifests ? join(dir, "rbac.yaml") : (rbacChoice as { file: string }).file;
    if (manifests) writeFileSync(rbacFile, toYamlDocuments(manifests.rbac));
    const applyState = (kube: KubeServer) => {
      for (const o of manifests?.state ?? []) {
        if (!kube.store.peek(`${o.kind!.toLowerCase()}s`, o.metadata.namespace ?? "", o.metadata.name ?? "")) kube.putObject(structuredClone(o) as RbacObject & { apiVersion: string; kind: string });
      }
    };
    const clusters: Cluster[] = [];
    const extensionSeeds: ExtensionSeed[] = [];
    for (const spec of specs) {
      const kube = await startKubeServer({ pki, rbacFile });
      stops.push(() => kube.close());
      applyState(kube);
      const extension: ExtensionRef = {
        subscriptionId: SUBSCRIPTION,
        resourceGroup: "aks-rg",
        clusterType: spec.clusterType ?? "managedClusters",
        clusterName: spec.name,
        name: "azureml",
      };
      const settings: Record<string, string> = {
        enableInference: "True",
        inferenceRouterServiceType: "LoadBalancer",
        allowInsecureConnections: "False",
        ...(spec.initialSecret ? { sslSecret: spec.initialSecret.name, "scoringFe.sslSecret": spec.initialSecret.name, sslCname: spec.fqdn } : {}),
        ...spec.settings,
      };
      const extensionSeed: ExtensionSeed = {
        ...extension,
        configurationSettings: settings,
        protectedSettings: spec.protectedSettings ?? { "relay.connectionString": "Endpoint=sb://relay.test/;SharedAccessKey=x" },
        // the extension's health check before a Helm release: the secret it is to use must hold a usable, matching pair
        healthCheck: (s) => sslSecretProblem(kube, s),
      };
      extensionSeeds.push(extensionSeed);
      arm.addExtension(extensionSeed);
      if (spec.initialSecret) {
        kube.putSecret("azureml", spec.initialSecret.name, { "cert.pem": spec.initialSecret.certPem, "key.pem": spec.initialSecret.keyPem });
      }
      const fe = await startAzuremlFe({
        load: async () => {
          const ext = arm.getExtension(extension);
          if (ext?.protectedSettings["scoringFe.sslCert"] && ext.protectedSettings["scoringFe.sslKey"]) {
            // protected PEM settings take precedence over sslSecret, as in the real extension
            return {
              certPem: Buffer.from(ext.protectedSettings["scoringFe.sslCert"], "base64").toString("utf8"),
              keyPem: Buffer.from(ext.protectedSettings["scoringFe.sslKey"], "base64").toString("utf8"),
            };
          }
          // the release running (a failed operation rolled back to the previous one); the chart reads scoringFe.sslSecret
          const deployed = ext?.deployedSettings ?? {};
          // TLS off (allowInsecureConnections=True): azureml-fe serves plain HTTP, no certificate at all
          if ((deployed.allowInsecureConnections ?? "").toLowerCase() === "true") return undefined;
          const name = deployed["scoringFe.sslSecret"] ?? deployed.sslSecret;
          const secret = name ? kube.getSecret("azureml", name) : undefined;
          const certPem = secret?.["cert.pem"];
          const keyPem = secret?.["key.pem"];
          return certPem && keyPem ? { certPem, keyPem } : undefined;
        },
      });
      stops.push(() => fe.close());
      await fe.reload();
      arm.onExtensionUpdated(async (ext) => {
        if (ext.clusterName === spec.name) await fe.reload();
      });
      kube.putService("azureml", {
        name: "azureml-fe",
        type: "LoadBalancer",
        ports: [{ name: "https", port: 443 }],
        ingress: [{ ip: fe.host }],
      });
      if (spec.aRecord !== false) {
        const z = zones.zoneFor(spec.fqdn)!;
        const rel = spec.fqdn === z.name ? "@" : spec.fqdn.slice(0, -(z.name.length + 1));
        zones.putRecordSet(z, "A", rel, { ttl: 300, addresses: [fe.host] });
      }
      clusters.push({ spec, kube, fe, extension });
    }

    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: clusters.map((c) => ({ name: c.spec.name, cluster: { server: c.kube.url, "certificate-authority-data": Buffer.from(pki.caPem).toString("base64") } })),
        users: clusters.map((c) => ({ name: `amlcert@${c.spec.name}`, user: { token: c.kube.saToken } })),
        contexts: clusters.map((c) => ({ name: c.spec.name, context: { cluster: c.spec.name, user: `amlcert@${c.spec.name}`, namespace: "azureml" } })),
        "current-context": clusters[0]!.spec.name,
      }),
      { mode: 0o600 },
    );

    // what the scan after the suite looks for verbatim in every CLI child's output
    recordKnownSecrets([token, ...clusters.flatMap((c) => [c.kube.saToken, c.kube.adminToken]), ...Object.values(opts.eab ?? {})]);

    const writeConfig = (overrides: Record<string, unknown> = {}, name = "amlcert.yaml") => {
      const base = {
        acme: {
          directory: acmeFront?.directoryUrl ?? pebble.directoryUrl,
          email: "platform@contoso.test",
          keyType: "ecdsa-p256",
          accountKey: { secret: "amlcert-acme-account", kubernetes: { kubeconfig, context: clusters[0]!.spec.name } },
        },
        azure: { cloud: "AzurePublicCloud", resourceManagerEndpoint: arm.url, authorityHost: entra.url },
        dns: { nameServers: [dns.address], resolvers: [dns.address], propagationTimeout: "30s", propagationInterval: "200ms" },
        extension: { lroTimeout: "60s", pollInterval: "100ms" },
        verify: { trustBundleFile: pebbleRootsFile, port: clusters[0]!.fe.port, timeout: "10s", interval: "200ms" },
        log: { level: "info", format: "json" },
        targets: clusters.map((c) => ({
          fqdn: c.spec.fqdn,
          sans: c.spec.sans ?? [],
          dnsZone: { subscriptionId: SUBSCRIPTION, resourceGroup: DNS_RG, zone },
          challengeZones: (opts.extraZones ?? []).map((z) => ({ subscriptionId: SUBSCRIPTION, resourceGroup: DNS_RG, zone: z })),
          extension: { subscriptionId: c.extension.subscriptionId, resourceGroup: c.extension.resourceGroup, clusterType: c.extension.clusterType, clusterName: c.extension.clusterName, name: c.extension.name },
          kubernetes: { kubeconfig, context: c.spec.name },
          secretName: "aml-tls",
          probeAddress: `${c.fe.host}:${c.fe.port}`,
        })),
      };
      const merged = deepMerge(base, overrides);
      const cfg = merged as { renewal?: { secretMode?: string }; acme?: { accountKey?: { secret?: string } }; history?: { configMap?: string }; targets: { secretName?: string; secretMode?: string }[] };
      const notSlots = [cfg.renewal?.secretMode, ...cfg.targets.map((t) => t.secretMode)].some((m) => m === "versioned" || m === "fixed");
      if (notSlots) seedsVersions = true;
      if (manifests) {
        if (notSlots) overlay = "versioned";
        const add = (list: string[], n: string | undefined) => n && !list.includes(n) && list.push(n);
        for (const t of cfg.targets) add(names.secretNames, t.secretName);
        add(names.accountSecrets, cfg.acme?.accountKey?.secret);
        add(names.historyConfigMaps, cfg.history?.configMap);
        manifests = deployManifestsFor(ROOT, overlay, names);
        const role = manifests.rbac.find((o) => o.kind === "Role")!;
        for (const c of clusters) {
          c.kube.putObject(role as RbacObject & { apiVersion: string; kind: string });
          applyState(c.kube);
        }
      }
      const path = join(dir, name);
      writeFileSync(path, stringify(merged));
      return path;
    };

    const cliEnv = (extra: Record<string, string> = {}) => ({
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: dir,
      NODE_EXTRA_CA_CERTS: pki.caFile,
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: CLIENT_ID,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
      AZURE_AUTHORITY_HOST: entra.url,
      ...extra,
    });

    /** The built CLI as a child; its output is also kept for the secret scan after the suite (test/support/secret-scan.ts). */
    const startCli = (args: string[], env?: Record<string, string>) => {
      const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
      const tee = teeCliOutput(args);
      child.stdout.on("data", (d: Buffer) => tee.stdout(d.toString()));
      child.stderr.on("data", (d: Buffer) => tee.stderr(d.toString()));
      return child;
    };

    const runCli = (args: string[], o: CliOptions = {}) =>
      new Promise<CliRun>((resolvePromise, reject) => {
        const child = startCli(args, o.env);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
          o.onStderr?.(d.toString(), child);
        });
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          reject(new Error(`amlcert ${args.join(" ")} did not finish within ${o.timeoutMs ?? 120_000} ms\n${stderr}`));
        }, o.timeoutMs ?? 120_000);
        child.on("error", reject);
        child.on("close", (code) => {
          clearTimeout(timer);
          const lines = stdout
            .split("\n")
            .filter((l) => l.trim().startsWith("{"))
            .map((l) => JSON.parse(l) as Record<string, unknown>);
          resolvePromise({ code: code ?? -1, stdout, stderr, lines });
        });
      });

    const spawnCli = (args: string[], o: { env?: Record<string, string> } = {}): SpawnedCli => {
      const child = startCli(args, o.env);
      let stdout = "";
      let stderr = "";
      const waiters = new Set<() => void>();
      const wake = () => waiters.forEach((w) => w());
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        wake();
      });
      const exited = new Promise<number>((resolveExit) => {
        child.on("close", (code, signal) => {
          resolveExit(code ?? 128 + (SIGNAL_NUMBERS[signal ?? ""] ?? 0));
          wake();
        });
        child.on("error", () => resolveExit(-1));
      });
      let closed = false;
      void exited.then(() => (closed = true));
      stops.push(async () => {
        if (closed) return;
        child.kill("SIGKILL");
        await exited;
      });
      const describe = () => `amlcert ${args.join(" ")}`;
      const waitForStderr = (pattern: RegExp, timeoutMs = 60_000) =>
        new Promise<string>((resolveWait, reject) => {
          const check = () => {
            // complete lines only: a chunk may end inside a line
            const line = stderr.split("\n").slice(0, -1).find((l) => pattern.test(l));
            if (line !== undefined) return done(() => resolveWait(line));
            if (closed) return done(() => reject(new Error(`${describe()} exited before logging ${pattern}\n${stderr}`)));
          };
          const timer = setTimeout(() => done(() => reject(new Error(`${describe()} did not log ${pattern} within ${timeoutMs} ms\n${stderr}`))), timeoutMs);
          const done = (settle: () => void) => {
            clearTimeout(timer);
            waiters.delete(check);
            settle();
          };
          waiters.add(check);
          check();
        });
      const stopChild = async (signal: NodeJS.Signals = "SIGTERM", timeoutMs = 40_000) => {
        if (!closed) child.kill(signal);
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            child.kill("SIGKILL");
            reject(new Error(`${describe()} did not exit within ${timeoutMs} ms of ${signal}\n${stderr}`));
          }, timeoutMs);
        });
        try {
          return await Promise.race([exited, late]);
        } finally {
          clearTimeout(timer);
        }
      };
      return { child, stdout: () => stdout, stderr: () => stderr, exited, waitForStderr, stop: stopChild };
    };

    // --- seeding and reset: each test sets up the state it needs instead of inheriting an earlier test's ---

    let issuer: Promise<PebbleIssuer> | undefined;
    const makeCertificate = async (o: MakeCertificateOptions): Promise<MadeCertificate> => {
      const spec = clusters[o.cluster ?? 0]!.spec;
      const names = o.names ?? [spec.fqdn, ...(spec.sans ?? [])];
      const ca = await (issuer ??= pebbleIssuer(pebble.managementUrl, pki.caPem));
      return makeLeafFrom(ca, names, o.notBefore, o.notAfter);
    };

    const seedSecret = (cert: MadeCertificate, o: SeedSecretOptions = {}): string => {
      const c = clusters[o.cluster ?? 0]!;
      const base = o.base ?? "aml-tls";
      const inspected = inspectPair(cert.chainPem, cert.keyPem, cert.names);
      if (!inspected.leaf || inspected.problems.length > 0) throw new Error(`seedSecret: the certificate is not a sound pair: ${JSON.stringify(inspected.problems)}`);
      const name = o.name ?? (seedsVersions ? versionedSecretName(base, inspected.leaf) : `${base}-a`);
      const write = secretFor(
        { name, base, fqdn: c.spec.fqdn, names: cert.names, chainPem: cert.chainPem, keyPem: cert.keyPem, leaf: inspected.leaf },
        { state: o.rollout ?? "done", failures: o.rolloutFailures ?? 0 },
      );
      c.kube.putSecret("azureml", name, write.data, { labels: write.labels, annotations: write.annotations });
      return name;
    };

    const seedExtension = async (o: { cluster?: number; sslSecret?: string; provisioningState?: string } = {}) => {
      const i = o.cluster ?? 0;
      const c = clusters[i]!;
      const seed = extensionSeeds[i]!;
      const named: Record<string, string> = o.sslSecret === undefined ? {} : { sslSecret: o.sslSecret, "scoringFe.sslSecret": o.sslSecret, sslCname: c.spec.fqdn };
      arm.addExtension({ ...seed, configurationSettings: { ...seed.configurationSettings, ...named }, provisioningState: o.provisioningState ?? "Succeeded" });
      await c.fe.reload();
    };

    const seedCertificateInPlace = async (o: MakeCertificateOptions & Omit<SeedSecretOptions, "cluster" | "rollout">) => {
      const i = o.cluster ?? 0;
      const cert = await makeCertificate(o);
      const secret = seedSecret(cert, { cluster: i, base: o.base, name: o.name, rollout: "done", rolloutFailures: o.rolloutFailures });
      await seedExtension({ cluster: i, sslSecret: secret });
      const fe = clusters[i]!.fe;
      if (fe.servedSerial() !== cert.serial) throw new Error(`seedCertificateInPlace: azureml-fe serves ${fe.servedSerial() ?? "nothing"}, not ${cert.serial} (${fe.lastReloadError() ?? "no reload error"})`);
      return { secret, serial: cert.serial, cert };
    };

    const seedAccountKey = (secretName = "amlcert-acme-account") => {
      const pem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString();
      clusters[0]!.kube.putSecret("azureml", secretName, { [ACCOUNT_KEY_DATA_KEY]: pem }, { labels: { [LABEL_MANAGED_BY]: MANAGED_BY } });
    };

    // what reset() puts back
    const initialRecordSets = zones.allZones().map((z) => ({ zone: z, sets: zones.listRecordSets(z).map((r) => structuredClone(r)) }));
    const initialPropagationDelayMs = zones.propagationDelayMs;
    const initialLro = structuredClone(arm.lro);
    const initialProtectedSettingsView = arm.protectedSettingsView;

    const reset = async () => {
      acmeFront?.reset({ keepLog: true });
      arm.faults.clear();
      arm.clearAuthorization();
      arm.latencyMs = 0;
      arm.beforeHandle = undefined;
      arm.protectedSettingsView = initialProtectedSettingsView;
      arm.lro = structuredClone(initialLro);
      await arm.settleOperations();
      dns.dropNextQueries(0);
      dns.failNextQueries(0);
      zones.propagationDelayMs = initialPropagationDelayMs;
      for (const { zone: z, sets } of initialRecordSets) {
        for (const r of zones.listRecordSets(z)) {
          if (!sets.some((s) => s.type === r.type && s.name === r.name)) zones.deleteRecordSet(z, r.type, r.name);
        }
        for (const initial of sets) {
          const current = zones.getRecordSet(z, initial.type, initial.name);
          if (current !== undefined && JSON.stringify({ ...current, etag: "" }) === JSON.stringify({ ...initial, etag: "" })) continue;
          const { name, type, etag: _etag, ...data } = initial;
          zones.putRecordSet(z, type, name, data);
        }
      }
      for (const [i, c] of clusters.entries()) {
        const kube = c.kube;
        kube.faults.clear();
        kube.requestHook = undefined;
        for (const o of kube.store.all("secrets", "azureml")) {
          if (o.metadata.labels?.[LABEL_SECRET_BASE] !== undefined) kube.deleteObject("v1", "Secret", "azureml", o.metadata.name!);
        }
        if (c.spec.initialSecret) {
          kube.putSecret("azureml", c.spec.initialSecret.name, { "cert.pem": c.spec.initialSecret.certPem, "key.pem": c.spec.initialSecret.keyPem });
        }
        kube.deleteObject("v1", "ConfigMap", "azureml", "amlcert-history");
        kube.deleteObject("coordination.k8s.io/v1", "Lease", "azureml", "amlcert");
        for (const e of kube.listEvents("azureml")) kube.deleteObject("v1", "Event", "azureml", e.metadata.name!);
        applyState(kube);
        c.fe.unfreeze();
        await seedExtension({ cluster: i, sslSecret: c.spec.initialSecret?.name });
      }
    };

    return {
      dir,
      pki,
      zones,
      zone,
      dns,
      entra,
      arm,
      pebble,
      acmeFront,
      clusters,
      kubeconfig,
      pebbleRootsFile,
      writeConfig,
      cliEnv,
      runCli,
      spawnCli,
      makeCertificate,
      seedSecret,
      seedExtension,
      seedCertificateInPlace,
      seedAccountKey,
      reset,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface PebbleIssuer {
  cert: x509.X509Certificate;
  pem: string;
  key: webcrypto.CryptoKey;
}

/** GET a PEM from Pebble's management API (it serves the test PKI's server certificate). */
function managementGet(url: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca: caPem, timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`Pebble management GET ${url} answered ${res.statusCode}: ${body}`))));
    });
    req.on("timeout", () => req.destroy(new Error(`Pebble management GET ${url}: no answer within 10 s`)));
    req.on("error", reject);
  });
}

/** Pebble's intermediate (the one that signs its leaves) and its key, from the management API. */
async function pebbleIssuer(managementUrl: string, caPem: string): Promise<PebbleIssuer> {
  const [pem, keyPem] = await Promise.all([managementGet(`${managementUrl}/intermediates/0`, caPem), managementGet(`${managementUrl}/intermediate-keys/0`, caPem)]);
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType !== "rsa") throw new Error(`Pebble's intermediate key is ${key.asymmetricKeyType}; makeCertificate signs with RSA only`);
  const der = key.export({ format: "der", type: "pkcs8" });
  const signingKey = await webcrypto.subtle.importKey("pkcs8", der, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
  return { cert: new x509.X509Certificate(pem), pem: pem.endsWith("\n") ? pem : `${pem}\n`, key: signingKey };
}

/** A leaf for `names` from notBefore to notAfter, with a fresh ECDSA P-256 key, signed by `ca`. */
async function makeLeafFrom(ca: PebbleIssuer, names: string[], notBefore: Date, notAfter: Date): Promise<MadeCertificate> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const issuerKeyId = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  // @peculiar/x509 is typed against the DOM's WebCrypto; Node's is the same API
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const k = (key: webcrypto.CryptoKey) => key as any;
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${names[0]}`,
    issuer: ca.cert.subject,
    publicKey: k(keys.publicKey),
    signingKey: k(ca.key),
    notBefore,
    notAfter,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5" },
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: "dns" as const, value: n }))),
      await x509.SubjectKeyIdentifierExtension.create(k(keys.publicKey)),
      ...(issuerKeyId ? [new x509.AuthorityKeyIdentifierExtension(issuerKeyId)] : []),
    ],
  });
  const leafPem = cert.toString("pem") + "\n";
  return {
    chainPem: leafPem + ca.pem,
    keyPem: await pkcs8Pem(keys.privateKey),
    serial: new X509Certificate(leafPem).serialNumber.toUpperCase(),
    names,
    notBefore,
    notAfter,
  };
}

/** The extension's health check on the secret a release names (E40007 INVALID_SSL_SETTING when it fails). */
function sslSecretProblem(kube: KubeServer, settings: Record<string, string>): HealthProblem | undefined {
  const name = settings["scoringFe.sslSecret"] ?? settings.sslSecret;
  if (name === undefined) return undefined;
  const secret = kube.getSecret("azureml", name);
  if (!secret) return { message: `secret ${name} was not found in namespace azureml` };
  if (!secret["cert.pem"] || !secret["key.pem"]) return { message: `secret ${name} has no cert.pem or key.pem` };
  const problems = inspectPair(secret["cert.pem"], secret["key.pem"], []).problems.filter((p) => !(p.kind === "key" && p.problem === "not-pkcs8") && p.kind !== "chain");
  if (problems.some((p) => p.kind === "key-mismatch")) return { message: `the private key in secret ${name} does not match the certificate` };
  if (problems.length > 0) return { message: `secret ${name} does not hold a usable certificate and key (${problems.map((p) => p.kind).join(", ")})` };
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Objects merge; arrays and scalars replace; `undefined` deletes. */
/** The result line a run printed for `fqdn`; throws with the run's output when there is none. */
export function resultLine(run: CliRun, fqdn: string): Record<string, unknown> {
  const r = run.lines.find((l) => l.fqdn === fqdn);
  if (!r) throw new Error(`no result line for ${fqdn} (exit ${run.code})\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return r;
}

export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete out[k];
    else if (isObject(v) && isObject(out[k])) out[k] = deepMerge(out[k] as Record<string, unknown>, v);
    else out[k] = v;
  }
  return out;
}

/** A fresh PKI in `dir`, for processes (the demo) that start their own children with NODE_EXTRA_CA_CERTS. */
export function freshPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  return createTestPki(dir);
}
