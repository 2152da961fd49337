/**
 * In-memory fakes of every port in src/ports.ts, for unit tests of the renewal use case and the DNS solver.
 * Each fake holds plain state a test can seed and inspect, records every call that writes, and has small knobs
 * for failures. `makeDeps()` wires them into a `RenewDeps` (with the real DNS solver on the fake zones).
 *
 * Conventions: DNS names are absolute, lower case, without the trailing dot (as the ports promise). "seed*" methods
 * set up state without being recorded as writes; the port methods record what amlcert did.
 *
 * Each fake behaves as the real adapter does on its stand-in: the contract suites in test/contract/ run the same
 * assertions against both. Where they disagree, the fake changes (README, Development).
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
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
import { AmlcertError, atStage, isAmlcertError } from "../../src/errors.js";
import { DnsLookupError } from "../../src/dns-check/dns-lookup.js";
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
  /** the API server refuses to create the Event (recordEvent still resolves, as the adapter's does) */
  failEvent: Failure<[RecordedEvent]>;
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
    if (previous && previous.type !== "Opaque") {
      throw new AmlcertError("KUBE_ERROR", "store", `secret "${secret.name}" exists with type ${previous.type}; the type of a secret cannot change`);
    }
    // as the adapter replaces a secret: labels and annotations others put on it stay (ours win), unless restoring
    const keep = previous && !secret.replaceMetadata ? previous : undefined;
    const stored: StoredSecret = {
      name: secret.name,
      data: copyData(sent.data),
      labels: { ...(keep?.labels ?? {}), ...sent.labels },
      annotations: { ...(keep?.annotations ?? {}), ...sent.annotations },
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

  /** Best effort, as the adapter: when the API server refuses the Event (`failEvent`), it is dropped, never thrown. */
  async recordEvent(e: RecordedEvent): Promise<void> {
    const err = typeof this.failEvent === "function" ? this.failEvent(e) : this.failEvent;
    if (err) return;
    this.events.push({ ...e });
  }
}

// ---------------------------------------------------------------------------------------------------- extension

export interface FakeExtensionOptions {
  extensionType?: string;
  configurationSettings?: Record<string, string>;
  protectedSettingKeys?: string[];
  /** the state ARM shows before amlcert runs (default "Succeeded") */
  provisioningState?: string;
}

/**
 * The AzureML cluster extension as ARM runs it: `get` returns the state; `updateSettings` merges configurationSettings.
 * A PATCH that changes nothing is answered at once (changed false, no operation), as ARM's 200 "no update is done";
 * when the extension's last operation failed, that is no success and the adapter raises EXTENSION_LRO_FAILED (with the
 * extension's `health`), as this fake does. Anything else starts an operation: ARM stores the new settings at once (provisioningState Updating),
 * then the operation ends Succeeded, or Failed (`failUpdate`), and the new settings stay either way.
 */
export class FakeExtension implements ExtensionClient {
  state: ExtensionState;
  /** every PATCH sent (its configurationSettings), in order, including failed ones */
  readonly patches: Record<string, string>[] = [];
  getCalls = 0;
  /** the update's long-running operation fails with this error (as the adapter raises it: EXTENSION_LRO_FAILED, or
   * EXTENSION_TIMEOUT with `failedState` "Updating"). ARM keeps the new settings and shows `failedState`. */
  failUpdate: Failure<[Record<string, string>]>;
  /** the provisioningState a failed operation leaves: "Failed" (default), "Canceled", or "Updating" (still running
   * when the adapter stopped waiting) */
  failedState: "Failed" | "Canceled" | "Updating" = "Failed";
  /** ARM refuses the PATCH itself (403, 409 while an operation runs, 429, a network error): nothing changes */
  rejectUpdate: Failure<[Record<string, string>]>;
  failGet: Failure<[]>;
  /** what ARM reports: "auto" = changed when a setting differs */
  changed: boolean | "auto" = "auto";
  /** the operation never ends on its own: only the caller's signal ends the wait (with its reason) */
  hangUpdate = false;
  /** called when an update starts waiting (to stop the run at that moment) */
  onUpdateWait: (() => void) | undefined;
  /** told of every read and of every operation that succeeded (azureml-fe reloads then) */
  readonly observers: ((event: "read" | "succeeded") => void)[] = [];

  constructor(opts: FakeExtensionOptions = {}) {
    this.state = {
      id: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/providers/Microsoft.KubernetesConfiguration/extensions/azureml",
      extensionType: opts.extensionType ?? AZUREML_EXTENSION_TYPE,
      provisioningState: opts.provisioningState ?? "Succeeded",
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
    for (const o of this.observers) o("read");
    return this.snapshot();
  }

  async updateSettings(settings: Record<string, string>, signal?: AbortSignal): Promise<{ changed: boolean; state: ExtensionState }> {
    signal?.throwIfAborted();
    this.patches.push({ ...settings });
    failWith(this.rejectUpdate, settings);
    const differs = Object.entries(settings).some(([k, v]) => this.state.configurationSettings[k] !== v);
    const changed = this.changed === "auto" ? differs : this.changed;
    this.state.configurationSettings = { ...this.state.configurationSettings, ...settings };
    if (!changed && /^(failed|canceled)$/i.test(this.state.provisioningState ?? "")) {
      throw new AmlcertError("EXTENSION_LRO_FAILED", "extension", `the update of extension azureml did not take effect: ARM made no change (200: no update is done) and the extension's last operation is ${this.state.provisioningState}${this.state.health ? `; the extension reports: ${this.state.health.join("; ")}` : ""}`);
    }
    if (!changed) return { changed: false, state: this.snapshot() };
    this.state.provisioningState = "Updating";
    if (this.hangUpdate) {
      await new Promise<never>((_, reject) => {
        if (!signal) return reject(new Error("FakeExtension: hangUpdate without a signal would never end"));
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        this.onUpdateWait?.();
      });
    }
    const failure = typeof this.failUpdate === "function" ? this.failUpdate(settings) : this.failUpdate;
    if (failure) {
      this.state.provisioningState = this.failedState;
      throw failure;
    }
    this.state.provisioningState = "Succeeded";
    for (const o of this.observers) o("succeeded");
    return { changed: true, state: this.snapshot() };
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
  /** the TTL of each A record set */
  readonly aTtl = new Map<string, number>();
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

  /** A name inside this zone, or the adapter's refusal (INTERNAL) of a name outside it. */
  private own(fqdn: string): string {
    const n = norm(fqdn);
    if (!this.holds(n)) throw new AmlcertError("INTERNAL", "dns-challenge", `${n} is not inside the DNS zone ${this.zone}`);
    return n;
  }

  seedCname(fqdn: string, target: string): void {
    this.cnames.set(this.own(fqdn), norm(target));
  }

  seedA(fqdn: string, addresses: string[], ttlSeconds = 300): void {
    const n = this.own(fqdn);
    this.a.set(n, [...addresses]);
    this.aTtl.set(n, ttlSeconds);
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
    const n = this.own(fqdn);
    this.txtRemoves.push({ fqdn: n, value });
    failWith(this.failRemove, n, value);
    const rest = (this.txt.get(n) ?? []).filter((e) => e.value !== value);
    if (rest.length === 0) this.txt.delete(n);
    else this.txt.set(n, rest);
  }

  async getCname(fqdn: string): Promise<string | undefined> {
    const n = this.own(fqdn);
    this.cnameLookups.push(n);
    return this.cnames.get(n);
  }

  /** As the adapter: "unchanged" only when the record set already has exactly these addresses and this TTL. */
  async upsertA(fqdn: string, addresses: string[], ttlSeconds: number): Promise<"created" | "updated" | "unchanged"> {
    const n = this.own(fqdn);
    failWith(this.failUpsert, n);
    const wanted = [...new Set(addresses)].sort();
    const before = this.a.get(n);
    const same = before !== undefined && this.aTtl.get(n) === ttlSeconds && [...before].sort().join() === wanted.join();
    const outcome = before === undefined ? "created" : same ? "unchanged" : "updated";
    if (outcome !== "unchanged") {
      this.a.set(n, wanted);
      this.aTtl.set(n, ttlSeconds);
    }
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

  /** As the adapter: the values every server serves; a name outside every zone is REFUSED by the authoritative servers. */
  async txt(name: string, servers: string[]): Promise<string[]> {
    const n = norm(name);
    this.txtQueries.push({ name: n, servers: [...servers] });
    if (servers.length === 0) throw new DnsLookupError("NO_SERVERS", { name: n, rrtype: "TXT", server: "" }, `no DNS servers given to ask for TXT ${n}`);
    failWith(this.failTxt, n, servers);
    const zone = this.zoneOf(n);
    if (!zone) throw new DnsLookupError("EREFUSED", { name: n, rrtype: "TXT", server: servers.join(",") }, `DNS TXT query for ${n} to ${servers.join(",")} failed: EREFUSED`);
    if (servers.some((s) => this.laggingServers.has(s))) {
      return (zone.txt.get(n) ?? []).filter((e) => e.addedAt === -Infinity).map((e) => e.value);
    }
    const now = this.clock.now().getTime();
    return (zone.txt.get(n) ?? []).filter((e) => now - e.addedAt >= this.propagationDelayMs).map((e) => e.value);
  }

  /** What a recursive resolver (the CA's) sees at `name` now: CNAMEs followed through the zones, then the TXT values. */
  recursiveTxt(name: string): string[] {
    const { cnames } = this.fromZones(name);
    const final = cnames.at(-1) ?? norm(name);
    return this.zoneOf(final)?.txtValues(final) ?? [];
  }

  /** Follow CNAMEs through the fake zones to the A records, as the adapter does: a loop or more than 8 hops is an
   * error. Asked as an authoritative server, a hop outside every zone is REFUSED, as real authoritative servers
   * (Azure DNS) do. */
  fromZones(name: string, authoritative = false): Resolution {
    const cnames: string[] = [];
    const start = norm(name);
    const seen = new Set([start]);
    let n = start;
    for (;;) {
      const zone = this.zoneOf(n);
      if (!zone && authoritative) throw new DnsLookupError("EREFUSED", { name: n, rrtype: "CNAME", server: "authoritative" }, `DNS CNAME query for ${n} failed: EREFUSED`);
      const target = zone?.cnames.get(n);
      if (!target) return { addresses: [...(zone?.a.get(n) ?? [])], cnames };
      if (seen.has(target)) {
        throw new DnsLookupError("CNAME_LOOP", { name: n, rrtype: "CNAME", server: "fake" }, `CNAME loop from ${start}: ${[start, ...cnames, target].join(" -> ")}`);
      }
      if (cnames.length >= 8) throw new DnsLookupError("CNAME_CHAIN_TOO_LONG", { name: n, rrtype: "CNAME", server: "fake" }, `CNAME chain from ${start} is longer than 8 hops`);
      cnames.push(target);
      seen.add(target);
      n = target;
    }
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

  /** What resolvers say a zone's NS set is, when a test sets it (a delegation that differs from ARM's name servers). */
  readonly delegations = new Map<string, string[]>();

  /** A zone apex answers its name servers (host names, as NS records hold them), unless `delegations` says otherwise. */
  async ns(name: string): Promise<string[]> {
    const n = norm(name);
    const delegated = this.delegations.get(n);
    if (delegated) return [...delegated];
    const zone = this.zones.find((z) => z.zone === n);
    return zone ? zone.servers.map((s) => norm(s.replace(/:\d+$/, ""))) : [];
  }

  /** IP literals pass through; host names are answered from `hosts`, and any other name does not resolve. */
  async hostAddresses(host: string): Promise<string[]> {
    if (isIP(host)) return [host];
    const known = this.hosts.get(norm(host));
    if (!known) throw new DnsLookupError("ENOTFOUND", { name: host, rrtype: "A/AAAA", server: "getaddrinfo" }, `cannot resolve host ${host}: ENOTFOUND`);
    return [...known];
  }
}

// ---------------------------------------------------------------------------------------------------- TLS probe

/** The serial number (upper-case hex) of the first certificate in a PEM chain. */
export function serialOf(chainPem: string): string {
  return new X509Certificate(chainPem).serialNumber.toUpperCase();
}

/**
 * azureml-fe as seen by the TLS probe. By default it serves whatever `serve()` returns: a serial, or a chain PEM (then
 * the served name is checked against the probed one, as the handshake does); `serials`, when set, is a sequence of
 * serials answered one per probe (the last one repeats). As the real probe (verification on), a certificate that does
 * not verify ends the handshake before its serial is known: authorized=false comes with an empty serial and the reason.
 */
export class FakeTlsProbe implements TlsProbe {
  readonly calls: { host: string; port: number; servername: string }[] = [];
  serials: string[] | undefined;
  /** whether the configured trust store verifies the served chain */
  authorized = true;
  authorizationError: string | undefined;
  failure: Failure<[{ host: string; port: number; servername: string }]>;

  constructor(private readonly serve: () => string | undefined = () => undefined) {}

  async probe(target: { host: string; port: number; servername: string }): Promise<TlsProbeResult> {
    this.calls.push({ ...target });
    failWith(this.failure, target);
    let served: string | undefined;
    if (this.serials && this.serials.length > 0) served = this.serials.length > 1 ? this.serials.shift() : this.serials[0];
    else served = this.serve();
    if (served === undefined) throw new AmlcertError("TLS_PROBE_FAILED", "verify-tls", `TLS handshake with ${target.host}:${target.port} (SNI ${target.servername}) failed: connect ECONNREFUSED`);
    const leaf = served.includes("-----BEGIN CERTIFICATE-----") ? new X509Certificate(served) : undefined;
    const refused = !this.authorized
      ? (this.authorizationError ?? "UNABLE_TO_GET_ISSUER_CERT_LOCALLY: unable to get local issuer certificate")
      : leaf && leaf.checkHost(target.servername) === undefined
        ? `ERR_TLS_CERT_ALTNAME_INVALID: Hostname/IP does not match certificate's altnames: Host: ${target.servername}. is not in the cert's altnames: ${leaf.subjectAltName ?? ""}`
        : undefined;
    if (refused !== undefined) return { serialNumber: "", fingerprint256: "", protocol: "TLSv1.2", authorized: false, authorizationError: refused };
    return {
      serialNumber: leaf ? leaf.serialNumber.toUpperCase() : served,
      fingerprint256: leaf ? leaf.fingerprint256 : "00",
      protocol: "TLSv1.2",
      authorized: true,
    };
  }
}

/**
 * azureml-fe's behaviour (as its stand-in, test/servers/azureml-fe.ts): it serves the certificate of the secret the
 * extension's sslSecret names, as it was when azureml-fe last loaded it: when it was first looked at (the first read
 * of the extension or the first probe) and after every extension operation that succeeded. A secret changed in place
 * without an operation is not picked up.
 */
export function servesWhatTheExtensionNames(kube: FakeKube, extension: FakeExtension): () => string | undefined {
  let loaded: { cert: string | undefined } | undefined;
  const load = () => {
    const name = extension.settings.sslSecret ?? extension.settings["scoringFe.sslSecret"];
    loaded = { cert: name ? kube.pemOf(name)?.cert : undefined };
  };
  extension.observers.push((event) => {
    if (event === "succeeded" || loaded === undefined) load();
  });
  return () => {
    if (loaded === undefined) load();
    return loaded!.cert;
  };
}

// ---------------------------------------------------------------------------------------------------- ACME

const uniqueNames = (names: string[]) => [...new Set(names.map((n) => norm(n.trim())).filter((n) => n.length > 0))];

/**
 * An ACME CA that answers with a configured chain. As a real order does, it challenges every name of the request
 * (SANs included; a wildcard at its base name) through the solver, at once, checks each value where the CA would
 * look (`resolveTxt`), and removes every value it presented once all authorizations settled, on success and failure.
 */
export class FakeAcme implements AcmeIssuer {
  readonly requests: IssueRequest[] = [];
  readonly presented: PresentedTxt[] = [];
  readonly cleanedUp: PresentedTxt[] = [];
  /** the chain the CA answers with, or a function of the request (a CA's signer) */
  chainPem: string | ((req: IssueRequest) => string | Promise<string>) | undefined;
  /** thrown after the challenges (finalization or download refused) */
  failure: Error | undefined;
  /** names the CA refuses by policy (each blocks itself and every name below it, as Pebble's domainBlocklist): the
   * order fails with rejectedIdentifier before any challenge */
  blockedNames: string[] = [];
  /** the TXT values the CA's resolver sees at a record name; undefined: every presented value validates */
  resolveTxt: ((recordName: string) => Promise<string[]> | string[]) | undefined;

  async issue(req: IssueRequest, solver: DnsChallengeSolver): Promise<IssuedCertificate> {
    this.requests.push({ names: [...req.names], keyPem: req.keyPem });
    const names = uniqueNames(req.names);
    if (names.length === 0) throw new AmlcertError("INTERNAL", "acme-order", "an ACME order needs at least one name");
    try {
      createPrivateKey(req.keyPem);
    } catch (err) {
      throw new AmlcertError("INTERNAL", "acme-order", "the certificate key is not a readable unencrypted private key", { cause: err });
    }
    const blocked = names.find((n) => this.blockedNames.some((b) => n.replace(/^\*\./, "") === b || n.endsWith(`.${b}`)));
    if (blocked) {
      throw new AmlcertError("ACME_REJECTED", "acme-order", `the CA rejected the order for ${names.join(", ")}: rejectedIdentifier: Order includes a blocked identifier: ${blocked}`, {
        details: { names, problemType: "rejectedIdentifier" },
      });
    }
    const order = this.requests.length;
    const handles: PresentedTxt[] = [];
    const settled = await Promise.allSettled(
      names.map(async (identifier, i) => {
        const recordName = `_acme-challenge.${identifier.replace(/^\*\./, "")}`;
        const value = `challenge-${order}-${i}-${"x".repeat(32)}`;
        let handle: PresentedTxt;
        try {
          handle = await solver.present(recordName, value);
        } catch (err) {
          throw isAmlcertError(err) ? err : atStage(err, "dns-challenge");
        }
        handles.push(handle);
        this.presented.push(handle);
        if (this.resolveTxt && !(await this.resolveTxt(recordName)).includes(value)) {
          throw new AmlcertError("ACME_REJECTED", "acme-order", `the CA rejected the dns-01 challenge for ${identifier}: unauthorized: no TXT record with the expected value found at ${recordName}`, {
            details: { identifier, problemType: "unauthorized" },
          });
        }
      }),
    );
    // cleanup failures are the solver's to log; they never fail the order
    await Promise.allSettled(handles.map(async (h) => {
      await solver.cleanup(h);
      this.cleanedUp.push(h);
    }));
    const failures = settled.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (failures.length > 0) throw failures.find((e) => isAmlcertError(e) && e.code === "ACME_REJECTED") ?? failures[0];
    if (this.failure) throw this.failure;
    if (this.chainPem === undefined) throw new Error("FakeAcme: no chain configured");
    return { chainPem: typeof this.chainPem === "function" ? await this.chainPem(req) : this.chainPem };
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
  acme.resolveTxt = (recordName) => lookup.recursiveTxt(recordName);
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
