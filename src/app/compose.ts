/**
 * The composition root: turns a validated configuration into adapters and use-case inputs. The only module that
 * knows every adapter; everything it builds is passed in, so the use case never touches an SDK or `process`.
 *
 * Process scope (built once, shared by every run of a daemon that ticks for weeks): the credential, SDK clients,
 * the ACME client, DNS and TLS helpers, and one wiring per configured target (its clients, solver, lock and
 * subscribers). Run scope (per renewTarget call): the Lease turn, the order and its TXT values, the events.
 * Nothing here grows per run.
 */
import { readFileSync } from "node:fs";
import type { Config, KubernetesSourceConfig, TargetConfig, ZoneRefConfig } from "../config/schema.js";
import { directoryUrl, secretModeOf } from "../config/schema.js";
import { AmlcertError } from "../errors.js";
import type { AcmeIssuer, Clock, DnsLookup, DnsZone, KubeCluster, TlsProbe } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { resolveCloud, type ResolvedCloud } from "../azure/cloud.js";
import { createAzureCredential, type AzureCredential } from "../azure/credential.js";
import { createAzureDnsZone } from "../azure-dns/azure-dns-zone.js";
import { createExtensionClient } from "../extension/extension-client.js";
import { createKubeCluster, type KubeSource } from "../kubernetes/kube-cluster.js";
import { createLeaseLock } from "../kubernetes/lease-lock.js";
import { createDnsLookup } from "../dns-check/dns-lookup.js";
import { authoritativeServers, parseServer } from "../dns-check/name-servers.js";
import { createTlsProbe } from "../tls-probe/tls-probe.js";
import { eabHint } from "../config/hints.js";
import { trustBundleProblem } from "../certs/certificate.js";
import { fileAccountKeyStore, secretAccountKeyStore, type AccountKeyStore } from "../acme/account-key-store.js";
import { generateCertificateKey } from "../acme/keys.js";
import { createDnsSolver, type DnsSolver } from "../renewal/dns-solver.js";
import type { RenewDeps, RenewSettings, RunLock } from "../renewal/deps.js";
import type { EventSink } from "../renewal/events.js";
import { createAcmeSource } from "../sources/acme-source.js";
import { createSourceFactory } from "../sources/configured-source.js";
import { kubeEventsSink } from "../observability/kube-events.js";
import { runLogSink } from "../observability/run-log.js";
import { createRunLock, deadOnThisHost } from "./run-lock.js";
import type { Metrics } from "../observability/metrics.js";
import type { HistoryStore, TargetHistory } from "../history/history.js";
import { nextHistory } from "../history/record.js";
import { createHistoryStore } from "../kubernetes/history-store.js";
import { createAccessReview, type AccessReview } from "../kubernetes/access-review.js";
import type { AzurePermissions } from "../azure/permissions.js";
import type { AcmeProbe } from "../ports.js";
import { createJournalWriter, journalChanges } from "../history/journal.js";
import type { RunJournalPort } from "../renewal/deps.js";
import type { PresentedTxt } from "../ports.js";

export const AZUREML_NAMESPACE = "azureml";
/** A zone's name servers are asked again after this long (a daemon runs for weeks; delegations change rarely). */
const NAME_SERVER_CACHE_MS = 10 * 60_000;

export interface AppInput {
  config: Config;
  eabHmacKey?: string;
  env: Record<string, string | undefined>;
  logger: Logger;
  clock: Clock;
  force: boolean;
  /** renew --enable-tls: an extension with TLS off gets the new certificate and TLS on in one update */
  enableTls?: boolean;
  /** this process's identity in the Lease (pod name or host, and pid) */
  holder: string;
  /** process-wide metrics: fed by every run's events, the history, and every adapter's responses */
  metrics?: Metrics;
}

export interface TargetWiring {
  config: TargetConfig;
  deps: RenewDeps;
  settings: RenewSettings;
  kube: KubeCluster;
}

export interface App {
  cloud: ResolvedCloud;
  azure: AzureCredential;
  lookup: DnsLookup;
  tlsProbe: TlsProbe;
  /** the Azure sign-in, once per process (a failure is tried again on the next call) */
  ready: () => Promise<void>;
  /** built lazily: `plan` never creates an ACME account */
  acme: () => AcmeIssuer;
  /** one target's wiring, built on first use and reused by every later run */
  target: (t: TargetConfig) => TargetWiring;
  /** the Kubernetes cluster a source names (one client per cluster) */
  cluster: (k: KubernetesSourceConfig) => KubeCluster;
  /** the durable history of a target's cluster (one store per cluster) */
  history: (t: TargetConfig) => HistoryStore;
  /** record the next attempt the scheduler chose for a target (history and metrics) */
  scheduled: (t: TargetConfig, at: Date) => Promise<void>;
  /** On SIGTERM/SIGINT: remove the TXT values of orders in flight and give up the Leases, in parallel. */
  shutdown: () => Promise<void>;
  /** `doctor`: what ARM's permissions API says the identity may do (the SDK is loaded on first use) */
  permissions: () => AzurePermissions;
  /** `doctor`: SelfSubjectAccessReviews in namespace azureml of a cluster */
  accessReview: (k: KubernetesSourceConfig) => AccessReview;
  /** `doctor`: the ACME directory and whether the stored account key has an account there (creates nothing) */
  acmeProbe: () => Promise<AcmeProbe>;
}

export function kubeSource(k: KubernetesSourceConfig): KubeSource {
  return k.inCluster ? { kind: "in-cluster" } : { kind: "kubeconfig", path: k.kubeconfig, context: k.context };
}

type RetryLog = { warn(obj: object, msg: string): void };
/** The bounds and retries of ARM requests (azure.requestTimeout, maxRetries, maxRetryAfter); each retry is logged. */
export const armRetry = (config: Config, log?: RetryLog) => ({
  timeoutMs: config.azure.requestTimeout,
  maxRetries: config.azure.maxRetries,
  maxRetryAfterMs: config.azure.maxRetryAfter,
  ...(log ? { onRetry: ({ message, ...facts }: { message: string }) => log.warn({ system: "arm", ...facts }, message) } : {}),
});
/** The bounds and retries of Kubernetes API requests (kubernetesApi.*); each retry is logged. */
export const kubeRetry = (config: Config, log?: RetryLog) => ({
  timeoutMs: config.kubernetesApi.requestTimeout,
  maxRetries: config.kubernetesApi.maxRetries,
  maxRetryAfterMs: config.kubernetesApi.maxRetryAfter,
  ...(log ? { onRetry: ({ message, ...facts }: { message: string }) => log.warn({ system: "kubernetes", ...facts }, message) } : {}),
});

const clusterKey = (k: KubernetesSourceConfig) => (k.inCluster ? "in-cluster" : `${k.kubeconfig ?? ""}#${k.context ?? ""}`);

function readTrustBundle(path: string | undefined): string | undefined {
  if (!path) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw new AmlcertError("CONFIG_INVALID", "config", `verify.trustBundleFile: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  // a bundle that trusts nothing would fail every TLS check, after the rollout: refuse it before anything is contacted
  const problem = trustBundleProblem(pem);
  if (problem) throw new AmlcertError("CONFIG_INVALID", "config", `verify.trustBundleFile: ${path}: ${problem}`);
  return pem;
}

/** Built once per key, then reused: the process-scope caches below are all of this shape. */
function once<K, V>(build: (key: K, id: string) => V, id: (key: K) => string): { get: (key: K) => V; values: () => V[] } {
  const made = new Map<string, V>();
  return {
    get: (key) => {
      const k = id(key);
      let v = made.get(k);
      if (v === undefined) {
        v = build(key, k);
        made.set(k, v);
      }
      return v;
    },
    values: () => [...made.values()],
  };
}

export function createApp(input: AppInput): App {
  const { config, logger, clock } = input;
  const cloud = resolveCloud(config.azure.cloud, {
    ...(config.azure.resourceManagerEndpoint ? { resourceManagerEndpoint: config.azure.resourceManagerEndpoint.replace(/\/$/, "") } : {}),
    ...(config.azure.authorityHost ? { authorityHost: config.azure.authorityHost.replace(/\/$/, "") } : {}),
    ...(config.azure.tokenScope ? { tokenScope: config.azure.tokenScope } : {}),
  });
  const requests = input.metrics?.requests;
  const azure = createAzureCredential({ cloud, env: input.env, logger, requests, requestTimeoutMs: config.azure.requestTimeout });
  const lookup = createDnsLookup({ timeoutMs: config.dns.queryTimeout, tries: config.dns.queryTries });
  const tlsProbe = createTlsProbe({ caPem: readTrustBundle(config.verify.trustBundleFile), timeoutMs: config.verify.probeTimeout });
  // sign in once per process and log who we are; a failure is not kept, so a daemon's next run tries again
  let signedIn: Promise<void> | undefined;
  const ready = (): Promise<void> => {
    signedIn ??= azure.identity().then((id) => {
      logger.info(
        { stage: "preflight", method: id.method, clientId: id.clientId, objectId: id.objectId, tenantId: id.tenantId, arm: cloud.resourceManagerEndpoint },
        `Azure identity: ${id.method}${id.clientId ? ` (client ${id.clientId})` : ""}`,
      );
    });
    signedIn.catch(() => (signedIn = undefined));
    return signedIn;
  };
  const arm = { credential: azure.credential, endpoint: cloud.resourceManagerEndpoint, scope: cloud.tokenScope, logger, requests, retry: armRetry(config, logger) };

  const zones = once(
    (ref: ZoneRefConfig) => createAzureDnsZone({ ...arm, subscriptionId: ref.subscriptionId, resourceGroup: ref.resourceGroup, zone: ref.zone }),
    (ref) => `${ref.subscriptionId}/${ref.resourceGroup}/${ref.zone}`.toLowerCase(),
  );
  // A zone's name servers do not change during a run: ask ARM (and resolve their addresses) once per zone and
  // period, not for every challenge and every DNS check. A failure is not cached, so a later call asks again.
  const nameServers = new Map<DnsZone, { at: number; servers: Promise<string[]> }>();
  const nameServersOf = (z: DnsZone): Promise<string[]> => {
    const now = clock.now().getTime();
    const cached = nameServers.get(z);
    if (cached && now - cached.at < NAME_SERVER_CACHE_MS) return cached.servers;
    const servers = authoritativeServers({ zone: z, lookup, override: config.dns.nameServers });
    servers.catch(() => nameServers.delete(z));
    nameServers.set(z, { at: now, servers });
    return servers;
  };

  const inAzureml = (k: KubernetesSourceConfig) => ({ source: { ...kubeSource(k), retry: kubeRetry(config, logger) }, namespace: AZUREML_NAMESPACE, logger, clock, requests });
  const clusters = once((k: KubernetesSourceConfig) => createKubeCluster(inAzureml(k)), clusterKey);
  // a target's certificate source (C4): ACME, a Key Vault certificate, or a TLS secret in another namespace
  const sources = createSourceFactory({ config, credential: azure.credential, requests, kube: (k, namespace) => createKubeCluster({ ...inAzureml(k), namespace }) });
  // a holder of this host whose pid is gone crashed: its Lease is taken over at once (signal 0 probes, EPERM means alive)
  const abandonedBy = deadOnThisHost(input.holder, (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EPERM";
    }
  });
  const locks = once((k: KubernetesSourceConfig): RunLock => createRunLock({ lease: createLeaseLock(inAzureml(k)), holder: input.holder, clock, logger, abandonedBy }), clusterKey);
  const histories = once((k: KubernetesSourceConfig) => createHistoryStore({ ...inAzureml(k), name: config.history.configMap }), clusterKey);

  /** Change a target's history; the metrics follow what was stored (or, when the write failed, what would have been). */
  const recordHistory = async (t: TargetConfig, change: (prev: TargetHistory | undefined) => TargetHistory): Promise<void> => {
    let seen: TargetHistory | undefined;
    try {
      seen = await histories.get(t.kubernetes).update(t.fqdn, (prev) => (seen = change(prev)));
    } catch (err) {
      logger.warn({ fqdn: t.fqdn, err }, "could not write the renewal history; the metrics show this run's view of it");
    }
    if (seen) input.metrics?.observeHistory(seen);
  };
  const historySink = (t: TargetConfig): EventSink => (e) =>
    // the next attempt is the scheduler's to say (`scheduled`, after this); a CronJob's schedule is not ours to know
    // a skipped run (another run holds the Lease, or this one was stopped) concluded nothing: the history is left alone
    e.type === "run-finished" && e.outcome.action !== "skipped" ? recordHistory(t, (prev) => nextHistory(prev, e.outcome, clock.now())) : undefined;
  const scheduled = (t: TargetConfig, at: Date) =>
    recordHistory(t, (prev) => ({ ...(prev ?? { fqdn: t.fqdn, consecutiveFailures: 0 }), nextAttempt: at.toISOString() }));

  // acme-client is imported at the first order, not at start-up: a run with nothing to renew never loads it
  let acme: Promise<AcmeIssuer> | undefined;
  const loadAcme = async (): Promise<AcmeIssuer> => {
    const { createAcmeIssuer } = await import("../acme/acme-issuer.js");
    let acme: AcmeIssuer;
    const a = config.acme;
    const accountKeys: AccountKeyStore = a.accountKey.file
      ? fileAccountKeyStore(a.accountKey.file)
      : secretAccountKeyStore(clusters.get(a.accountKey.kubernetes), a.accountKey.secret!);
    acme = createAcmeIssuer({
      directoryUrl: directoryUrl(config),
      email: a.email,
      eab: a.eab && input.eabHmacKey ? { kid: a.eab.keyId, hmacKey: input.eabHmacKey } : undefined,
      accountKeys,
      logger,
      clock,
      termsOfServiceAgreed: true,
      requests,
      transport: { requestTimeoutMs: a.requestTimeout, attempts: a.maxRetries + 1, retryAfterMaxMs: a.maxRetryAfter },
    });
    // a CA that demands External Account Binding is answered in the configuration's words (acme.eab)
    const bare = acme;
    acme = { ...bare, issue: (req, solver) => bare.issue(req, solver).catch((err: unknown) => Promise.reject(eabHint(err, a.eab !== undefined))) };
    return acme;
  };
  const acmeClient = (): Promise<AcmeIssuer> => {
    if (acme) return acme;
    const loading = loadAcme();
    loading.catch(() => (acme = undefined));
    return (acme = loading);
  };
  const acmeIssuer = (): AcmeIssuer => ({
    issue: async (req, solver) => (await acmeClient()).issue(req, solver),
    renewalInfo: async (chainPem, signal) => (await acmeClient()).renewalInfo?.(chainPem, signal),
    profiles: async (signal) => (await acmeClient()).profiles?.(signal),
  });
  /** the profile a target orders, and the field that set it (for messages) */
  const profileOf = (t: TargetConfig): { name: string; field: string } | undefined =>
    t.profile ? { name: t.profile, field: `targets[${config.targets.indexOf(t)}].profile` } : config.acme.profile ? { name: config.acme.profile, field: "acme.profile" } : undefined;

  const solvers: DnsSolver[] = [];
  /** A target's run journal over its history ConfigMap (crash recovery, src/renewal/reconcile.ts); TXT values are removed through `solver`. */
  const journalOf = (t: TargetConfig, solver: () => DnsSolver): RunJournalPort => {
    const store = histories.get(t.kubernetes);
    const writer = createJournalWriter(store, t.fqdn);
    return {
      read: () => store.read(t.fqdn),
      change: writer.change,
      removeTxt: (j) => solver().cleanup({ recordFqdn: j.record, zone: j.zone, value: j.value }),
      holder: input.holder,
    };
  };
  const txtJournal = (t: TargetConfig, journal: RunJournalPort) => {
    const entry = (h: PresentedTxt) => ({ record: h.recordFqdn, zone: h.zone, value: h.value });
    const warn = (err: unknown) => logger.warn({ fqdn: t.fqdn, stage: "dns-challenge", err }, "could not write the run journal; a crash now would leave this TXT value for a person to remove");
    return {
      placing: (h: PresentedTxt) => journal.change(journalChanges.txtPlacing(entry(h), input.holder)).then(() => undefined, warn),
      removed: (h: PresentedTxt) => journal.change(journalChanges.txtRemoved(entry(h))).then(() => undefined, warn),
    };
  };
  const targets = once((t: TargetConfig): TargetWiring => {
    const primary = zones.get(t.dnsZone);
    const kube = clusters.get(t.kubernetes);
    let journaled: DnsSolver | undefined;
    const journal = journalOf(t, () => journaled!);
    const extension = createExtensionClient({
      ...arm,
      subscriptionId: t.extension.subscriptionId,
      resourceGroup: t.extension.resourceGroup,
      clusterType: t.extension.clusterType,
      clusterName: t.extension.clusterName,
      extensionName: t.extension.name,
      lroTimeoutMs: config.extension.lroTimeout,
      clock,
      pollIntervalMs: config.extension.pollInterval,
    });
    const solver = createDnsSolver({
      zones: [primary, ...t.challengeZones.map(zones.get)],
      lookup,
      nameServersOf,
      txtTtlSeconds: config.dns.txtTtl,
      propagationTimeoutMs: config.dns.propagationTimeout,
      propagationIntervalMs: config.dns.propagationInterval,
      propagationSettleMs: config.dns.propagationSettle,
      clock,
      logger: logger.child({ fqdn: t.fqdn }),
      journal: txtJournal(t, journal),
    });
    journaled = solver;
    solvers.push(solver);
    // validated by the schema; a bare host keeps verify.port
    const probe = t.probeAddress ? parseServer(t.probeAddress) : undefined;
    const explicitPort = t.probeAddress !== undefined && (/^\[[^\]]+\]:\d+$/.test(t.probeAddress) || /^[^:]+:\d+$/.test(t.probeAddress));
    const deps: RenewDeps = {
      ready,
      kube,
      lock: locks.get(t.kubernetes),
      extension,
      zone: primary,
      lookup,
      nameServersOf,
      source: sources.forTarget(t, () => createAcmeSource({ acme: acmeIssuer, solver, generateKey: () => generateCertificateKey(config.acme.keyType), profile: profileOf(t), renewBeforeMs: config.renewal.renewBefore, directory: directoryUrl(config), logger })),
      tlsProbe,
      clock,
      logger,
      events: [runLogSink(logger), kubeEventsSink(kube, t.secretName), ...(input.metrics ? [input.metrics.sink] : []), historySink(t)],
      journal,
    };
    input.metrics?.observeSource?.(t.fqdn, deps.source.kind);
    const settings: RenewSettings = {
      fqdn: t.fqdn,
      names: [t.fqdn, ...t.sans.filter((s) => s !== t.fqdn)],
      secretName: t.secretName,
      secretMode: secretModeOf(config, t),
      keepPrevious: config.renewal.keepPrevious,
      keyType: config.acme.keyType,
      renewBeforeMs: config.renewal.renewBefore,
      force: input.force,
      enableTls: input.enableTls === true,
      expectedAddress: t.expectedAddress,
      probe: { host: probe?.host, port: (explicitPort ? probe?.port : undefined) ?? config.verify.port },
      manageRecord: t.manageRecord,
      recordTtlSeconds: 300,
      resolvers: config.dns.resolvers,
      verifyTimeoutMs: config.verify.timeout,
      verifyIntervalMs: config.verify.interval,
      extensionBusyTimeoutMs: config.extension.busyTimeout,
      extensionBusyIntervalMs: config.extension.busyInterval,
    };
    return { config: t, deps, settings, kube };
  }, (t) => t.fqdn);

  // TXT clean-up and Lease release side by side: a slow ARM must not keep the Lease held
  const shutdown = async () => {
    await Promise.all([...solvers.map((s) => s.cleanupOutstanding()), ...locks.values().map((l) => l.release())]);
  };

  let permissionsClient: Promise<AzurePermissions> | undefined;
  const permissions = (): AzurePermissions => ({
    at: async (scope) => {
      permissionsClient ??= import("../azure/permissions.js").then((m) =>
        m.createAzurePermissions({ credential: azure.credential, endpoint: cloud.resourceManagerEndpoint, scope: cloud.tokenScope, requests, retry: armRetry(config, logger) }),
      );
      return (await permissionsClient).at(scope);
    },
  });
  const accessReview = (k: KubernetesSourceConfig) => createAccessReview({ source: { ...kubeSource(k), retry: kubeRetry(config, logger) }, namespace: AZUREML_NAMESPACE, requests });
  const acmeProbe = async (): Promise<AcmeProbe> => {
    const issuer = await acmeClient();
    if (!issuer.probe) throw new AmlcertError("INTERNAL", "preflight", "this ACME issuer cannot be probed");
    return issuer.probe();
  };

  return { permissions, accessReview, acmeProbe, cloud, azure, lookup, tlsProbe, ready, acme: acmeIssuer, target: targets.get, cluster: clusters.get, history: (t) => histories.get(t.kubernetes), scheduled, shutdown };
}
