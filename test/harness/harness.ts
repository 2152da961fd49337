/**
 * The one harness: Pebble (the real ACME CA), the authoritative DNS stand-in, Entra ID, ARM (Azure DNS + the
 * extension), one Kubernetes API server and one azureml-fe per cluster, all on loopback. Used by the e2e suite,
 * the sandbox demo and the benchmarks. It writes a kubeconfig, a workload-identity token file, Pebble's roots and
 * an amlcert config, and runs the built CLI as a child process exactly as a user would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { ZoneStore } from "../servers/zone-store.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { startEntraServer, type EntraServer } from "../servers/entra-server.js";
import { startArmServer, type ArmServer, type ClusterType, type ExtensionRef } from "../servers/arm-server.js";
import { startKubeServer, type KubeServer } from "../servers/kube-server.js";
import { startAzuremlFe, type AzuremlFe } from "../servers/azureml-fe.js";
import { startPebble, type Pebble } from "../servers/pebble.js";
import { readTestPki } from "../servers/trusted-pki.js";
import { createTestPki, type TestPki } from "../servers/pki.js";

/** The project root: the nearest directory above this file with a package.json (works from test/ and dist/test/). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6 && !existsSync(join(dir, "package.json")); i++) dir = dirname(dir);
  return dir;
})();
/** dist/src/cli.js when running compiled, src is never run through a loader */
export const CLI = join(ROOT, "dist/src/cli.js");
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

export interface HarnessOptions {
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

export interface Harness {
  dir: string;
  pki: TestPki;
  zones: ZoneStore;
  zone: string;
  dns: DnsServer;
  entra: EntraServer;
  arm: ArmServer;
  pebble: Pebble;
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
    const pebbleRootsFile = join(dir, "pebble-roots.pem");
    writeFileSync(pebbleRootsFile, await pebble.rootsPem());

    const specs = opts.clusters ?? [{ name: "aks-ml", fqdn: `ml.${zone}` }];
    const clusters: Cluster[] = [];
    for (const spec of specs) {
      const kube = await startKubeServer({ pki, rbacFile: join(ROOT, "deploy/rbac.yaml") });
      stops.push(() => kube.close());
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
      arm.addExtension({ ...extension, configurationSettings: settings, protectedSettings: spec.protectedSettings ?? { "relay.connectionString": "Endpoint=sb://relay.test/;SharedAccessKey=x" } });
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
          const name = ext?.configurationSettings.sslSecret;
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

    const writeConfig = (overrides: Record<string, unknown> = {}, name = "amlcert.yaml") => {
      const base = {
        acme: {
          directory: pebble.directoryUrl,
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

    const runCli = (args: string[], o: CliOptions = {}) =>
      new Promise<CliRun>((resolvePromise, reject) => {
        const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(o.env), stdio: ["ignore", "pipe", "pipe"] });
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
      const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(o.env), stdio: ["ignore", "pipe", "pipe"] });
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

    return { dir, pki, zones, zone, dns, entra, arm, pebble, clusters, kubeconfig, pebbleRootsFile, writeConfig, cliEnv, runCli, spawnCli, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Objects merge; arrays and scalars replace; `undefined` deletes. */
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
