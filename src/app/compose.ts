/**
 * The composition root: turns a validated configuration into adapters and use-case inputs. The only module that
 * knows every adapter; everything it builds is passed in, so the use case never touches an SDK or `process`.
 */
import { readFileSync } from "node:fs";
import type { Config, KubernetesSourceConfig, TargetConfig, ZoneRefConfig } from "../config/schema.js";
import { directoryUrl, secretModeOf } from "../config/schema.js";
import { AmlcertError } from "../errors.js";
import type { AcmeIssuer, Clock, DnsLookup, DnsZone, TlsProbe } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { resolveCloud, type ResolvedCloud } from "../azure/cloud.js";
import { createAzureCredential, type AzureCredential } from "../azure/credential.js";
import { createAzureDnsZone } from "../azure-dns/azure-dns-zone.js";
import { createExtensionClient } from "../extension/extension-client.js";
import { createKubeCluster, type KubeSource } from "../kubernetes/kube-cluster.js";
import { createLeaseLock, type LeaseLock } from "../kubernetes/lease-lock.js";
import { createDnsLookup } from "../dns-check/dns-lookup.js";
import { authoritativeServers, parseServer } from "../dns-check/name-servers.js";
import { createTlsProbe } from "../tls-probe/tls-probe.js";
import { createAcmeIssuer } from "../acme/acme-issuer.js";
import { fileAccountKeyStore, secretAccountKeyStore, type AccountKeyStore } from "../acme/account-key-store.js";
import { generateCertificateKey } from "../acme/keys.js";
import { createDnsSolver, type DnsSolver } from "../renewal/dns-solver.js";
import type { RenewDeps, RenewSettings } from "../renewal/renew.js";

export const AZUREML_NAMESPACE = "azureml";

export interface AppInput {
  config: Config;
  eabHmacKey?: string;
  env: Record<string, string | undefined>;
  logger: Logger;
  clock: Clock;
  force: boolean;
  /** this run's identity in the Lease (pod name or host, and pid) */
  holder: string;
}

/** A renewal holds the cluster's Lease at most this long; a crashed run's lease expires after it. */
export const LEASE_TTL_SECONDS = 3600;

export interface App {
  cloud: ResolvedCloud;
  azure: AzureCredential;
  lookup: DnsLookup;
  tlsProbe: TlsProbe;
  /** built lazily: `plan` never creates an ACME account */
  acme: () => AcmeIssuer;
  target: (t: TargetConfig) => { deps: RenewDeps; settings: RenewSettings };
  /** On SIGTERM/SIGINT: remove the TXT values of orders in flight and give up the Leases this run holds. */
  shutdown: () => Promise<void>;
}

export function kubeSource(k: KubernetesSourceConfig): KubeSource {
  return k.inCluster ? { kind: "in-cluster" } : { kind: "kubeconfig", path: k.kubeconfig, context: k.context };
}

function readTrustBundle(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new AmlcertError("CONFIG_INVALID", "config", `verify.trustBundleFile: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

export function createApp(input: AppInput): App {
  const { config, logger, clock } = input;
  const cloud = resolveCloud(config.azure.cloud, {
    ...(config.azure.resourceManagerEndpoint ? { resourceManagerEndpoint: config.azure.resourceManagerEndpoint.replace(/\/$/, "") } : {}),
    ...(config.azure.authorityHost ? { authorityHost: config.azure.authorityHost.replace(/\/$/, "") } : {}),
    ...(config.azure.tokenScope ? { tokenScope: config.azure.tokenScope } : {}),
  });
  const azure = createAzureCredential({ cloud, env: input.env, logger });
  const lookup = createDnsLookup();
  const tlsProbe = createTlsProbe({ caPem: readTrustBundle(config.verify.trustBundleFile), timeoutMs: 10_000 });
  const arm = { credential: azure.credential, endpoint: cloud.resourceManagerEndpoint, scope: cloud.tokenScope, logger };

  const zones = new Map<string, DnsZone>();
  const zone = (ref: ZoneRefConfig): DnsZone => {
    const key = `${ref.subscriptionId}/${ref.resourceGroup}/${ref.zone}`.toLowerCase();
    const existing = zones.get(key);
    if (existing) return existing;
    const created = createAzureDnsZone({ ...arm, subscriptionId: ref.subscriptionId, resourceGroup: ref.resourceGroup, zone: ref.zone });
    zones.set(key, created);
    return created;
  };
  // A zone's name servers do not change during a run: ask ARM (and resolve their addresses) once per zone, not for
  // every challenge and every DNS check. A failure is not cached, so a later call asks again.
  const nameServers = new Map<DnsZone, Promise<string[]>>();
  const nameServersOf = (z: DnsZone): Promise<string[]> => {
    let found = nameServers.get(z);
    if (!found) {
      found = authoritativeServers({ zone: z, lookup, override: config.dns.nameServers });
      found.catch(() => nameServers.delete(z));
      nameServers.set(z, found);
    }
    return found;
  };

  let acme: AcmeIssuer | undefined;
  const acmeIssuer = (): AcmeIssuer => {
    if (acme) return acme;
    const a = config.acme;
    let accountKeys: AccountKeyStore;
    if (a.accountKey.file) accountKeys = fileAccountKeyStore(a.accountKey.file);
    else {
      const kube = createKubeCluster({ source: kubeSource(a.accountKey.kubernetes), namespace: AZUREML_NAMESPACE, logger });
      accountKeys = secretAccountKeyStore(kube, a.accountKey.secret!);
    }
    acme = createAcmeIssuer({
      directoryUrl: directoryUrl(config),
      email: a.email,
      eab: a.eab && input.eabHmacKey ? { kid: a.eab.keyId, hmacKey: input.eabHmacKey } : undefined,
      accountKeys,
      logger,
      clock,
      termsOfServiceAgreed: true,
    });
    return acme;
  };

  const inFlight: { solver: DnsSolver; lease: LeaseLock }[] = [];
  const target = (t: TargetConfig) => {
    const primary = zone(t.dnsZone);
    const allZones = [primary, ...t.challengeZones.map(zone)];
    const kube = createKubeCluster({ source: kubeSource(t.kubernetes), namespace: AZUREML_NAMESPACE, logger });
    const lease = createLeaseLock({ source: kubeSource(t.kubernetes), namespace: AZUREML_NAMESPACE, logger, clock });
    const lock = { acquire: () => lease.acquire(input.holder, LEASE_TTL_SECONDS), release: () => lease.release() };
    const extension = createExtensionClient({
      ...arm,
      subscriptionId: t.extension.subscriptionId,
      resourceGroup: t.extension.resourceGroup,
      clusterType: t.extension.clusterType,
      clusterName: t.extension.clusterName,
      extensionName: t.extension.name,
      lroTimeoutMs: config.extension.lroTimeout,
      pollIntervalMs: config.extension.pollInterval,
    });
    const solver = createDnsSolver({
      zones: allZones,
      lookup,
      nameServersOf,
      txtTtlSeconds: config.dns.txtTtl,
      propagationTimeoutMs: config.dns.propagationTimeout,
      propagationIntervalMs: config.dns.propagationInterval,
      clock,
      logger: logger.child({ fqdn: t.fqdn }),
    });
    // validated by the schema; a bare host keeps verify.port
    inFlight.push({ solver, lease });
    const probe = t.probeAddress ? parseServer(t.probeAddress) : undefined;
    const explicitPort = t.probeAddress !== undefined && (/^\[[^\]]+\]:\d+$/.test(t.probeAddress) || /^[^:]+:\d+$/.test(t.probeAddress));
    const probePort = explicitPort ? probe?.port : undefined;
    const deps: RenewDeps = {
      kube,
      lock,
      extension,
      zone: primary,
      lookup,
      nameServersOf,
      get acme() {
        return acmeIssuer();
      },
      solver,
      tlsProbe,
      generateKey: () => generateCertificateKey(config.acme.keyType),
      clock,
      logger,
    };
    const settings: RenewSettings = {
      fqdn: t.fqdn,
      names: [t.fqdn, ...t.sans.filter((s) => s !== t.fqdn)],
      secretName: t.secretName,
      secretMode: secretModeOf(config, t),
      keepPrevious: config.renewal.keepPrevious,
      keyType: config.acme.keyType,
      renewBeforeMs: config.renewal.renewBefore,
      force: input.force,
      expectedAddress: t.expectedAddress,
      probe: { host: probe?.host, port: probePort ?? config.verify.port },
      manageRecord: t.manageRecord,
      recordTtlSeconds: 300,
      resolvers: config.dns.resolvers,
      verifyTimeoutMs: config.verify.timeout,
      verifyIntervalMs: config.verify.interval,
    };
    return { deps, settings };
  };

  const shutdown = async () => {
    await Promise.all(inFlight.map(async ({ solver, lease }) => {
      await solver.cleanupOutstanding();
      await lease.release();
    }));
  };

  return { cloud, azure, lookup, tlsProbe, acme: acmeIssuer, target, shutdown };
}
