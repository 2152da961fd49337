/**
 * In-memory fakes of every port in src/ports.ts, for unit tests of the renewal use case and the DNS solver.
 * Each fake holds plain state a test can seed and inspect, records every call that writes, and has small knobs
 * for failures. `makeDeps()` wires them into a `RenewDeps` (with the real DNS solver on the fake zones).
 *
 * Conventions: DNS names are absolute, lower case, without the trailing dot (as the ports promise). "seed*" methods
 * set up state without being recorded as writes; the port methods record what amlcert did.
 */
import { X509Certificate } from "node:crypto";
import { Writable } from "node:stream";
import pino from "pino";
import { abortReason } from "../../src/ports.js";
import type {
  AcmeIssuer,
  Clock,
  DnsChallengeSolver,
  DnsLookup,
  DnsZone,
  ExtensionClient,
  ExtensionState,
  IssueRequest,
  IssuedCertificate,
  KubeCluster,
  PresentedTxt,
  SecretWrite,
  StoredSecret,
  TlsProbe,
  TlsProbeResult,
} from "../../src/ports.js";
import { AmlcertError } from "../../src/errors.js";
import type { Logger } from "../../src/observability/logger.js";
import { AZUREML_EXTENSION_TYPE } from "../../src/renewal/inspect.js";
import type { RenewDeps } from "../../src/renewal/deps.js";
import { createAcmeSource } from "../../src/sources/acme-source.js";
import { kubeEventsSink } from "../../src/observability/kube-events.js";
import { createDnsSolver } from "../../src/renewal/dns-solver.js";

const norm = (name: string) => name.toLowerCase().replace(/\.$/, "");

/** Throw `failure` when it is set: a function is called with the arguments (to fail only some calls). */
type Failure<A extends unknown[]> = Error | ((...args: A) => Error | undefined) | undefined;
function failWith<A extends unknown[]>(failure: Failure<A>, ...args: A): void {
  const err = typeof failure === "function" ? failure(...args) : failure;
  if (err) throw err;
}

// ---------------------------------------------------------------------------------------------------- clock

/** Time that only moves when told to: `sleep` advances it at once and records the duration. */
export class FakeClock implements Clock {
  private t: number;
  readonly sleeps: number[] = [];

  constructor(start: Date) {
    this.t = start.getTime();
  }

  now(): Date {
    return new Date(this.t);
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw abortReason(signal);
    this.sleeps.push(ms);
    this.t += Math.max(0, ms);
  }

  advance(ms: number): void {
    this.t += ms;
  }
}

// ---------------------------------------------------------------------------------------------------- logger

/** A pino logger that writes nowhere. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

export interface LogEntry {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger that keeps every line (JSON-parsed) in `entries`; `messages(level)` lists the messages (of one level). */
export function recordingLogger(): { logger: Logger; entries: LogEntry[]; messages: (level?: "warn" | "info" | "error") => string[] } {
  const entries: LogEntry[] = [];
  const destination = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) entries.push(JSON.parse(line) as LogEntry);
      cb();
    },
  });
  const levels = { info: 30, warn: 40, error: 50 } as const;
  return {
    logger: pino({ level: "trace" }, destination),
    entries,
    messages: (level) => entries.filter((e) => level === undefined || e.level === levels[level]).map((e) => e.msg),
  };
}

// ---------------------------------------------------------------------------------------------------- kubernetes

export interface LabelSelectorTerm {
  key: string;
  op: "=" | "!=" | "exists";
  value?: string;
}

/** Equality-based label selectors (`a=b,c!=d,e`), as the API server evaluates them. */
export function matchesSelector(labels: Record<string, string>, selector: string): boolean {
  const terms: LabelSelectorTerm[] = selector
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const ne = t.indexOf("!=");
      if (ne >= 0) return { key: t.slice(0, ne), op: "!=" as const, value: t.slice(ne + 2) };
      const eq = t.indexOf("=");
      if (eq >= 0) return { key: t.slice(0, eq), op: "=" as const, value: t.slice(eq + 1).replace(/^=/, "") };
      return { key: t, op: "exists" as const };
    });
  return terms.every((term) => {
    const v = labels[term.key];
    if (term.op === "exists") return v !== undefined;
    if (term.op === "=") return v === term.value;
    return v !== term.value;
  });
}

const copyData = (data: Record<string, Buffer>) => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)]));

function copySecret(s: StoredSecret): StoredSecret {
  return { ...s, data: copyData(s.data), labels: { ...s.labels }, annotations: { ...s.annotations } };
}

export interface Ingress {
  type: string;
  ips: string[];
  hostnames: string[];
  clusterIP?: string;
}

export interface RecordedEvent {
  secretName: string;
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** Namespace `azureml` in memory: secrets, services, events. Every write and delete is recorded. */
export class FakeKube implements KubeCluster {
  readonly secrets = new Map<string, StoredSecret>();
  readonly services = new Map<string, Ingress>();
  /** every writeSecret call, in order (copies of what was sent) */
  readonly writes: SecretWrite[] = [];
  /** every deleteSecret call, in order */
  readonly deletes: string[] = [];
  readonly events: RecordedEvent[] = [];
  readonly selectors: string[] = [];
  failWrite: Failure<[SecretWrite]>;
  failDelete: Failure<[string]>;
  failList: Failure<[string]>;
  failGet: Failure<[string]>;
  private version = 1;

  /** Put a secret in place without recording a write. */
  seedSecret(s: { name: string; data: Record<string, Buffer | string>; labels?: Record<string, string>; annotations?: Record<string, string>; type?: string }): StoredSecret {
    const data = Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v)]));
    const stored: StoredSecret = {
      name: s.name,
      type: s.type ?? "Opaque",
      data,
      labels: { ...(s.labels ?? {}) },
      annotations: { ...(s.annotations ?? {}) },
      resourceVersion: String(this.version++),
      creationTimestamp: "2020-01-01T00:00:00Z",
    };
    this.secrets.set(s.name, stored);
    return copySecret(stored);
  }

  /** cert.pem / key.pem of a secret as text (undefined when the secret does not exist). */
  pemOf(name: string): { cert?: string; key?: string } | undefined {
    const s = this.secrets.get(name);
    if (!s) return undefined;
    return { cert: s.data["cert.pem"]?.toString("utf8"), key: s.data["key.pem"]?.toString("utf8") };
  }

  async getSecret(name: string): Promise<StoredSecret | undefined> {
    failWith(this.failGet, name);
    const s = this.secrets.get(name);
    return s ? copySecret(s) : undefined;
  }

  async writeSecret(secret: SecretWrite): Promise<StoredSecret> {
    const sent: SecretWrite = { name: secret.name, data: copyData(secret.data), labels: { ...secret.labels }, annotations: { ...secret.annotations } };
    this.writes.push(sent);
    failWith(this.failWrite, sent);
    const previous = this.secrets.get(secret.name);
    if (secret.expectedResourceVersion !== undefined && (previous?.resourceVersion ?? "") !== secret.expectedResourceVersion) {
      throw new AmlcertError("KUBE_CONFLICT", "store", `secret "${secret.name}" changed since amlcert read it`);
    }
    const stored: StoredSecret = {
      ...sent,
      data: copyData(sent.data),
      type: "Opaque",
      resourceVersion: String(this.version++),
      creationTimestamp: previous?.creationTimestamp ?? "2020-01-01T00:00:00Z",
    };
    this.secrets.set(secret.name, stored);
    return copySecret(stored);
  }

  async listSecrets(labelSelector: string): Promise<StoredSecret[]> {
    this.selectors.push(labelSelector);
    failWith(this.failList, labelSelector);
    return [...this.secrets.values()].filter((s) => matchesSelector(s.labels, labelSelector)).map(copySecret);
  }

  async deleteSecret(name: string): Promise<void> {
    this.deletes.push(name);
    failWith(this.failDelete, name);
    this.secrets.delete(name);
  }

  async getServiceIngress(name: string): Promise<Ingress | undefined> {
    const s = this.services.get(name);
    return s ? { ...s, ips: [...s.ips], hostnames: [...s.hostnames] } : undefined;
  }

  async recordEvent(e: RecordedEvent): Promise<void> {
    this.events.push({ ...e });
  }
}

// ---------------------------------------------------------------------------------------------------- extension

export interface FakeExtensionOptions {
  extensionType?: string;
  configurationSettings?: Record<string, string>;
  protectedSettingKeys?: string[];
}

/** The AzureML cluster extension: `get` returns the state, `updateSettings` merges configurationSettings (as ARM does). */
export class FakeExtension implements ExtensionClient {
  state: ExtensionState;
  /** every PATCH body (configurationSettings), in order, including failed ones */
  readonly patches: Record<string, string>[] = [];
  getCalls = 0;
  /** the update's long-running operation fails with this (nothing is merged) */
  failUpdate: Failure<[Record<string, string>]>;
  failGet: Failure<[]>;
  /** what ARM reports: "auto" = changed when a setting differs */
  changed: boolean | "auto" = "auto";
  /** the operation never ends on its own: only the caller's signal ends the wait (with its reason) */
  hangUpdate = false;
  /** called when an update starts waiting (to stop the run at that moment) */
  onUpdateWait: (() => void) | undefined;

  constructor(opts: FakeExtensionOptions = {}) {
    this.state = {
      id: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/providers/Microsoft.KubernetesConfiguration/extensions/azureml",
      extensionType: opts.extensionType ?? AZUREML_EXTENSION_TYPE,
      provisioningState: "Succeeded",
      configurationSettings: { inferenceRouterServiceType: "LoadBalancer", allowInsecureConnections: "False", ...(opts.configurationSettings ?? {}) },
      protectedSettingKeys: [...(opts.protectedSettingKeys ?? [])],
    };
  }

  get settings(): Record<string, string> {
    return this.state.configurationSettings;
  }

  private snapshot(): ExtensionState {
    return { ...this.state, configurationSettings: { ...this.state.configurationSettings }, protectedSettingKeys: [...this.state.protectedSettingKeys] };
  }

  async get(): Promise<ExtensionState> {
    this.getCalls++;
    failWith(this.failGet);
    return this.snapshot();
  }

  async updateSettings(settings: Record<string, string>, signal?: AbortSignal): Promise<{ changed: boolean; state: ExtensionState }> {
    this.patches.push({ ...settings });
    if (this.hangUpdate) {
      await new Promise<never>((_, reject) => {
        if (!signal) return reject(new Error("FakeExtension: hangUpdate without a signal would never end"));
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        this.onUpdateWait?.();
      });
    }
    failWith(this.failUpdate, settings);
    const differs = Object.entries(settings).some(([k, v]) => this.state.configurationSettings[k] !== v);
    this.state.configurationSettings = { ...this.state.configurationSettings, ...settings };
    return { changed: this.changed === "auto" ? differs : this.changed, state: this.snapshot() };
  }
}

// ---------------------------------------------------------------------------------------------------- Azure DNS

export interface TxtEntry {
  value: string;
  ttl: number;
  /** fake-clock time the value was added (for the lookup's propagation delay) */
  addedAt: number;
}

/** One Azure DNS zone: TXT, CNAME and A record sets. Adds/removes/upserts are recorded. */
export class FakeZone implements DnsZone {
  readonly zone: string;
  readonly txt = new Map<string, TxtEntry[]>();
  readonly cnames = new Map<string, string>();
  readonly a = new Map<string, string[]>();
  readonly txtAdds: { fqdn: string; value: string; ttl: number }[] = [];
  readonly txtRemoves: { fqdn: string; value: string }[] = [];
  readonly aUpserts: { fqdn: string; addresses: string[]; ttl: number; outcome: "created" | "updated" | "unchanged" }[] = [];
  readonly cnameLookups: string[] = [];
  servers: string[];
  failAdd: Failure<[string, string]>;
  failRemove: Failure<[string, string]>;
  failUpsert: Failure<[string]>;
  failNameServers: Failure<[]>;

  constructor(
    zone: string,
    private readonly clock: Clock,
    servers: string[] = [`ns1-${zone}:53`, `ns2-${zone}:53`],
  ) {
    this.zone = norm(zone);
    this.servers = servers;
  }

  holds(fqdn: string): boolean {
    const n = norm(fqdn);
    return n === this.zone || n.endsWith(`.${this.zone}`);
  }

  private own(fqdn: string): string {
    const n = norm(fqdn);
    if (!this.holds(n)) throw new Error(`fake zone ${this.zone}: ${n} is not in this zone`);
    return n;
  }

  seedCname(fqdn: string, target: string): void {
    this.cnames.set(this.own(fqdn), norm(target));
  }

  seedA(fqdn: string, addresses: string[]): void {
    this.a.set(this.own(fqdn), [...addresses]);
  }

  seedTxt(fqdn: string, value: string): void {
    const n = this.own(fqdn);
    this.txt.set(n, [...(this.txt.get(n) ?? []), { value, ttl: 60, addedAt: -Infinity }]);
  }

  txtValues(fqdn: string): string[] {
    return (this.txt.get(norm(fqdn)) ?? []).map((e) => e.value);
  }

  async addTxtValue(fqdn: string, value: string, ttlSeconds: number): Promise<void> {
    const n = this.own(fqdn);
    this.txtAdds.push({ fqdn: n, value, ttl: ttlSeconds });
    failWith(this.failAdd, n, value);
    const entries = this.txt.get(n) ?? [];
    if (!entries.some((e) => e.value === value)) entries.push({ value, ttl: ttlSeconds, addedAt: this.clock.now().getTime() });
    this.txt.set(n, entries);
  }

  async removeTxtValue(fqdn: string, value: string): Promise<void> {
    const n = norm(fqdn);
    this.txtRemoves.push({ fqdn: n, value });
    failWith(this.failRemove, n, value);
    const rest = (this.txt.get(n) ?? []).filter((e) => e.value !== value);
    if (rest.length === 0) this.txt.delete(n);
    else this.txt.set(n, rest);
  }

  async getCname(fqdn: string): Promise<string | undefined> {
    const n = norm(fqdn);
    this.cnameLookups.push(n);
    return this.cnames.get(n);
  }

  async upsertA(fqdn: string, addresses: string[], ttlSeconds: number): Promise<"created" | "updated" | "unchanged"> {
    const n = this.own(fqdn);
    failWith(this.failUpsert, n);
    const before = this.a.get(n);
    const outcome = before === undefined ? "created" : [...before].sort().join() === [...addresses].sort().join() ? "unchanged" : "updated";
    this.a.set(n, [...addresses]);
    this.aUpserts.push({ fqdn: n, addresses: [...addresses], ttl: ttlSeconds, outcome });
    return outcome;
  }

  async nameServers(): Promise<string[]> {
    failWith(this.failNameServers);
    return [...this.servers];
  }
}

// ---------------------------------------------------------------------------------------------------- DNS lookups

export interface Resolution {
  addresses: string[];
  cnames: string[];
}

/**
 * DNS on the wire, answered from the fake zones. A query whose servers are all name servers of the fake zones is
 * authoritative and sees the zones' current content (after `propagationDelayMs`, except `laggingServers`, which never
 * see new TXT values). Any other query (the system resolver, `servers` undefined, or custom resolvers) gets the next
 * answer from `resolverAnswers` for that name when one is queued (the last one repeats), else the zones' content.
 */
export class FakeLookup implements DnsLookup {
  readonly laggingServers = new Set<string>();
  propagationDelayMs = 0;
  readonly resolverAnswers = new Map<string, (Resolution | Error)[]>();
  readonly hosts = new Map<string, string[]>();
  readonly txtQueries: { name: string; servers: string[] }[] = [];
  readonly resolveQueries: { name: string; servers?: string[] }[] = [];
  failTxt: Failure<[string, string[]]>;

  constructor(
    private readonly zones: FakeZone[],
    private readonly clock: Clock,
  ) {}

  addZone(zone: FakeZone): void {
    this.zones.push(zone);
  }

  private authoritative(servers: string[] | undefined): boolean {
    if (!servers || servers.length === 0) return false;
    const known = new Set(this.zones.flatMap((z) => z.servers));
    return servers.every((s) => known.has(s));
  }

  private zoneOf(name: string): FakeZone | undefined {
    return this.zones.filter((z) => z.holds(name)).sort((a, b) => b.zone.length - a.zone.length)[0];
  }

  async txt(name: string, servers: string[]): Promise<string[]> {
    const n = norm(name);
    this.txtQueries.push({ name: n, servers: [...servers] });
    failWith(this.failTxt, n, servers);
    if (servers.some((s) => this.laggingServers.has(s))) {
      return (this.zoneOf(n)?.txt.get(n) ?? []).filter((e) => e.addedAt === -Infinity).map((e) => e.value);
    }
    const now = this.clock.now().getTime();
    return (this.zoneOf(n)?.txt.get(n) ?? []).filter((e) => now - e.addedAt >= this.propagationDelayMs).map((e) => e.value);
  }

  /** Follow CNAMEs through the fake zones to the A records. Asked as an authoritative server, a hop outside every
   * zone is REFUSED, as real authoritative servers (Azure DNS) do. */
  fromZones(name: string, authoritative = false): Resolution {
    const cnames: string[] = [];
    let n = norm(name);
    for (let hop = 0; hop < 10; hop++) {
      const zone = this.zoneOf(n);
      if (!zone && authoritative) throw Object.assign(new Error(`DNS CNAME query for ${n} failed: EREFUSED`), { code: "EREFUSED", query: n });
      const target = zone?.cnames.get(n);
      if (!target) return { addresses: [...(zone?.a.get(n) ?? [])], cnames };
      cnames.push(target);
      n = target;
    }
    throw new Error(`fake lookup: CNAME chain too long at ${name}`);
  }

  async resolve(name: string, servers?: string[]): Promise<Resolution> {
    const n = norm(name);
    this.resolveQueries.push(servers ? { name: n, servers: [...servers] } : { name: n });
    if (!this.authoritative(servers)) {
      const queue = this.resolverAnswers.get(n);
      if (queue && queue.length > 0) {
        const next = queue.length > 1 ? queue.shift()! : queue[0]!;
        if (next instanceof Error) throw next;
        return { addresses: [...next.addresses], cnames: [...next.cnames] };
      }
    }
    return this.fromZones(n, this.authoritative(servers));
  }

  async hostAddresses(host: string): Promise<string[]> {
    return [...(this.hosts.get(norm(host)) ?? [])];
  }
}

// ---------------------------------------------------------------------------------------------------- TLS probe

/** The serial number (upper-case hex) of the first certificate in a PEM chain. */
export function serialOf(chainPem: string): string {
  return new X509Certificate(chainPem).serialNumber.toUpperCase();
}

/**
 * azureml-fe as seen by a TLS handshake. By default (`serving`) it serves whatever `serve()` returns; `serials`, when
 * set, is a sequence answered one per probe (the last one repeats).
 */
export class FakeTlsProbe implements TlsProbe {
  readonly calls: { host: string; port: number; servername: string }[] = [];
  serials: string[] | undefined;
  authorized = true;
  authorizationError: string | undefined;
  failure: Failure<[{ host: string; port: number; servername: string }]>;

  constructor(private readonly serve: () => string | undefined = () => undefined) {}

  async probe(target: { host: string; port: number; servername: string }): Promise<TlsProbeResult> {
    this.calls.push({ ...target });
    failWith(this.failure, target);
    let serial: string | undefined;
    if (this.serials && this.serials.length > 0) serial = this.serials.length > 1 ? this.serials.shift() : this.serials[0];
    else serial = this.serve();
    if (serial === undefined) throw new Error(`connect ECONNREFUSED ${target.host}:${target.port}`);
    return {
      serialNumber: serial,
      fingerprint256: "00",
      protocol: "TLSv1.2",
      authorized: this.authorized,
      ...(this.authorized ? {} : { authorizationError: this.authorizationError ?? "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }),
    };
  }
}

/** azureml-fe's behaviour: it serves the certificate in the secret the extension's sslSecret names. */
export function servesWhatTheExtensionNames(kube: FakeKube, extension: FakeExtension): () => string | undefined {
  return () => {
    const name = extension.settings.sslSecret ?? extension.settings["scoringFe.sslSecret"];
    const cert = name ? kube.pemOf(name)?.cert : undefined;
    return cert ? serialOf(cert) : undefined;
  };
}

// ---------------------------------------------------------------------------------------------------- ACME

/**
 * An ACME CA that answers with a configured chain. When `presentFor` lists record names, it first presents a value at
 * each through the solver (as a real order would) and cleans all of them up afterwards, on success and failure.
 */
export class FakeAcme implements AcmeIssuer {
  readonly requests: IssueRequest[] = [];
  readonly presented: PresentedTxt[] = [];
  chainPem: string | ((req: IssueRequest) => string) | undefined;
  failure: Error | undefined;
  presentFor: string[] = [];

  async issue(req: IssueRequest, solver: DnsChallengeSolver): Promise<IssuedCertificate> {
    this.requests.push({ names: [...req.names], keyPem: req.keyPem });
    const handles: PresentedTxt[] = [];
    try {
      for (const [i, recordName] of this.presentFor.entries()) {
        const handle = await solver.present(recordName, `challenge-${this.requests.length}-${i}-${"x".repeat(32)}`);
        handles.push(handle);
        this.presented.push(handle);
      }
      if (this.failure) throw this.failure;
      if (this.chainPem === undefined) throw new Error("FakeAcme: no chain configured");
      return { chainPem: typeof this.chainPem === "function" ? this.chainPem(req) : this.chainPem };
    } finally {
      for (const h of handles) await solver.cleanup(h);
    }
  }
}

/** The fresh-key generator: returns `key` (set it to the key the fake CA's chain was made for). */
export class FakeKeys {
  key: string | undefined;
  calls = 0;
  readonly generate = async (): Promise<string> => {
    this.calls++;
    if (this.key === undefined) throw new Error("FakeKeys: no key configured");
    return this.key;
  };
}

// ---------------------------------------------------------------------------------------------------- wiring

export interface MakeDepsOptions {
  now?: Date;
  /** the target's zone */
  zone?: string;
  /** extra zones for `_acme-challenge` CNAMEs */
  challengeZones?: string[];
  fqdn?: string;
  /** azureml-fe's load balancer IP; the zone's A record for fqdn is seeded to it */
  ingressIp?: string;
  extension?: FakeExtensionOptions;
  logger?: Logger;
  txtTtlSeconds?: number;
  propagationTimeoutMs?: number;
  propagationIntervalMs?: number;
  /** the target's secretName (base), for Kubernetes Events on failures before a version is stored */
  secretName?: string;
}

export interface FakeWorld {
  deps: RenewDeps;
  kube: FakeKube;
  extension: FakeExtension;
  zone: FakeZone;
  challengeZones: FakeZone[];
  lookup: FakeLookup;
  acme: FakeAcme;
  tlsProbe: FakeTlsProbe;
  keys: FakeKeys;
  clock: FakeClock;
}

/**
 * A complete, healthy world: the extension of the right type with TLS on, azureml-fe a LoadBalancer at `ingressIp`,
 * the FQDN's A record pointing at it, azureml-fe serving what the extension names, and the real DNS solver writing to
 * the fake zones. Nothing is stored yet and the CA has no chain: each test sets what it needs.
 */
export function makeDeps(opts: MakeDepsOptions = {}): FakeWorld {
  const clock = new FakeClock(opts.now ?? new Date("2026-05-01T12:00:00Z"));
  const logger = opts.logger ?? silentLogger();
  const fqdn = norm(opts.fqdn ?? "ml.contoso.test");
  const ingressIp = opts.ingressIp ?? "20.30.40.50";
  const zone = new FakeZone(opts.zone ?? "contoso.test", clock);
  const challengeZones = (opts.challengeZones ?? []).map((z) => new FakeZone(z, clock));
  zone.seedA(fqdn, [ingressIp]);
  const lookup = new FakeLookup([zone, ...challengeZones], clock);
  const kube = new FakeKube();
  kube.services.set("azureml-fe", { type: "LoadBalancer", ips: [ingressIp], hostnames: [], clusterIP: "10.0.0.10" });
  const extension = new FakeExtension(opts.extension);
  const tlsProbe = new FakeTlsProbe(servesWhatTheExtensionNames(kube, extension));
  const acme = new FakeAcme();
  const keys = new FakeKeys();
  const nameServersOf = (z: DnsZone) => z.nameServers();
  const solver = createDnsSolver({
    zones: [zone, ...challengeZones],
    lookup,
    nameServersOf,
    txtTtlSeconds: opts.txtTtlSeconds ?? 60,
    propagationTimeoutMs: opts.propagationTimeoutMs ?? 120_000,
    propagationIntervalMs: opts.propagationIntervalMs ?? 2_000,
    clock,
    logger,
  });
  const deps: RenewDeps = {
    kube,
    extension,
    zone,
    lookup,
    nameServersOf,
    source: createAcmeSource({ acme: () => acme, solver, generateKey: keys.generate }),
    tlsProbe,
    clock,
    logger,
    events: [kubeEventsSink(kube, opts.secretName ?? "azureml-tls")],
  };
  return { deps, kube, extension, zone, challengeZones, lookup, acme, tlsProbe, keys, clock };
}
