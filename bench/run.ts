/**
 * The benchmark (issue 10): amlcert against Debian's lego and certbot and a bare acme-client script (the floor),
 * all on loopback against Pebble and the harness's stand-ins, timed in one run and interleaved. Started by
 * scripts/bench.sh, which runs this inside its own mount and network namespaces (see bench/README.md).
 *
 *   node dist/bench/run.js [--runs 5] [--delays 0,2,5] [--fleet 1,10,100] [--cycles 1000] [--out bench/results]
 *                          [--clients amlcert,lego,certbot,floor] [--sections issuance,start,memory,fleet] [--smoke]
 *                          [--cli dist/bin/amlcert.js]
 *
 * Sections:
 *   issuance  one DNS-01 issuance per client, whole process, at each injected propagation delay; overhead = wall
 *             time minus the delay; the first ACME request after process start (bench/first-request.ts)
 *   start     `version`, `--help`, and a whole no-op `renew` (the certificate in place is valid)
 *   memory    peak RSS (issuing and no-op renew, from the issuance and start sections); the daemon's RSS after
 *             start and after N scheduled cycles on a compressed clock (bench/daemon-cycles.ts)
 *   fleet     1, 10 and 100 targets (each its own cluster and Lease) in one `renew`: total time and peak RSS
 */
import { execFileSync } from "node:child_process";
import { lookup } from "node:dns/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, startHarness, type Harness, type HarnessOptions } from "../test/harness/harness.js";
import { startDnsRelay, type DnsRelay } from "./dns-relay.js";
import { startControl, type Control } from "./control.js";
import { startFirstRequestFront, type FirstRequest } from "./first-request.js";
import { mib, rotate, secs, summarize, table, timed, type Summary, type Timed } from "./lib.js";

type Client = "amlcert" | "amlcert-tsc" | "lego" | "certbot" | "floor";
/** amlcert-tsc: the same CLI unbundled (tsc's dist/src/cli.js and node_modules), to show what the bundle buys */
const ALL_CLIENTS: Client[] = ["amlcert", "amlcert-tsc", "lego", "certbot", "floor"];
const SMOKE_CLIENTS: Client[] = ["amlcert", "lego", "certbot", "floor"];
const SECTIONS = ["issuance", "start", "memory", "fleet"] as const;
type Section = (typeof SECTIONS)[number];

/** The zone's NS names (the harness's) and the loopback addresses scripts/bench.sh maps them to in /etc/hosts. */
export const NAME_SERVERS = [
  { name: "ns1-01.azure-dns.test", address: "127.0.0.2" },
  { name: "ns2-01.azure-dns.test", address: "127.0.0.3" },
];
/** certbot's DNS plugins wait this long after writing the TXT records (certbot 2.1 dns_common default). */
export const CERTBOT_PROPAGATION_SECONDS = 10;
/** Pebble as every client sees it: no random nonce rejection, no VA sleep, no authorization reuse (each order solves its challenge). */
const PEBBLE_ENV = { PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_VA_NOSLEEP: "1", PEBBLE_AUTHZREUSE: "0" };
const FQDN = "ml.contoso.test";

interface Options {
  runs: number;
  delays: number[];
  fleet: number[];
  cycles: number;
  out: string;
  clients: Client[];
  sections: Set<Section>;
  smoke: boolean;
  cli: string;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: "string" },
      delays: { type: "string" },
      fleet: { type: "string" },
      cycles: { type: "string" },
      out: { type: "string" },
      clients: { type: "string" },
      sections: { type: "string" },
      smoke: { type: "boolean", default: false },
      cli: { type: "string" },
    },
  });
  const list = (v: string | undefined, def: string) => (v ?? def).split(",").map((s) => s.trim()).filter(Boolean);
  const smoke = values.smoke ?? false;
  const clients = list(values.clients, (smoke ? SMOKE_CLIENTS : ALL_CLIENTS).join(",")) as Client[];
  for (const c of clients) if (!ALL_CLIENTS.includes(c)) throw new Error(`--clients: unknown client ${c}`);
  const sections = new Set(list(values.sections, SECTIONS.join(",")) as Section[]);
  for (const s of sections) if (!SECTIONS.includes(s)) throw new Error(`--sections: unknown section ${s}`);
  const cli = values.cli ?? (existsSync(join(ROOT, "dist/bin/amlcert.js")) ? "dist/bin/amlcert.js" : "dist/src/cli.js");
  return {
    runs: Number(values.runs ?? (smoke ? 1 : 5)),
    delays: list(values.delays, smoke ? "0" : "0,2,5").map((d) => Number(d) * 1000),
    fleet: list(values.fleet, smoke ? "1,2" : "1,10,100").map(Number),
    cycles: Number(values.cycles ?? (smoke ? 5 : 1000)),
    out: values.out ?? join(ROOT, "bench/results"),
    clients,
    sections,
    smoke,
    cli: join(ROOT, cli),
  };
}

/** Refuse to run outside scripts/bench.sh's namespaces: port 53 and /etc/hosts must be ours. */
async function checkEnvironment(clients: Client[]): Promise<void> {
  if (process.env.AMLCERT_BENCH_NS !== "1") throw new Error("run the benchmark through scripts/bench.sh (it needs its own network and mount namespaces, as root)");
  for (const ns of NAME_SERVERS) {
    const found = await lookup(ns.name).catch(() => undefined);
    if (found?.address !== ns.address) throw new Error(`${ns.name} resolves to ${found?.address ?? "nothing"}, not ${ns.address}: run through scripts/bench.sh`);
  }
  for (const c of clients) {
    if (c === "lego" && !existsSync("/usr/bin/lego")) throw new Error("lego is not installed: run bench/setup.sh (apt-get install lego)");
    if (c === "certbot" && !existsSync("/usr/bin/certbot")) throw new Error("certbot is not installed: run bench/setup.sh (apt-get install certbot)");
  }
}

/** A harness and everything around it that the clients talk to: relays on port 53, the first-request front, the DNS API. */
interface Stage {
  h: Harness;
  relays: DnsRelay[];
  front: FirstRequest;
  control: Control;
  dir: string;
  /** amlcert's config: the defaults, except the addresses of the stand-ins and the extension poll (see README) */
  config: string;
  stop(): Promise<void>;
}

/** What a SIGTERM/SIGINT stops before the bench exits (Pebble and the stand-ins are children of this process). */
const live = new Set<Stage>();
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.once(sig, () => {
    process.stderr.write(`bench: ${sig}: stopping Pebble and the stand-ins\n`);
    void Promise.all([...live].map((s) => s.stop().catch(() => undefined))).then(() => process.exit(128 + (sig === "SIGTERM" ? 15 : 2)));
  });
}

async function stage(opts: HarnessOptions): Promise<Stage> {
  const s = await startStage(opts);
  live.add(s);
  const stop = s.stop;
  s.stop = async () => {
    live.delete(s);
    await stop();
  };
  return s;
}

async function startStage(opts: HarnessOptions): Promise<Stage> {
  const h = await startHarness({ ...opts, pebbleEnv: PEBBLE_ENV });
  const relays: DnsRelay[] = [];
  let front: FirstRequest | undefined;
  let control: Control | undefined;
  try {
    for (const ns of NAME_SERVERS) relays.push(await startDnsRelay(ns.address, { host: h.dns.host, port: h.dns.port }));
    front = await startFirstRequestFront({ target: h.pebble.directoryUrl, certFile: h.pki.certFile, keyFile: h.pki.keyFile, caPem: h.pki.caPem });
    control = await startControl(h.zones);
  } catch (err) {
    for (const r of relays) await r.close();
    await front?.close();
    await h.stop();
    throw err;
  }
  const dir = mkdtempSync(join(tmpdir(), "amlcert-bench-"));
  const config = h.writeConfig(
    {
      acme: { directory: front.directoryUrl },
      // the zone's name servers come from ARM (ns1-01/ns2-01.azure-dns.test, resolved through /etc/hosts), as in Azure
      dns: { nameServers: undefined, resolvers: [`${NAME_SERVERS[0]!.address}:53`], propagationTimeout: undefined, propagationInterval: undefined },
      // the stand-in's extension operation finishes on its first poll; Azure's takes minutes and is not part of an issuance
      extension: { lroTimeout: undefined, pollInterval: "100ms" },
      verify: { timeout: undefined, interval: undefined },
      log: { level: "info", format: "json" },
    },
    "bench.yaml",
  );
  return {
    h,
    relays,
    front,
    control,
    dir,
    config,
    stop: async () => {
      await control!.close();
      await front!.close();
      for (const r of relays) await r.close();
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Before each amlcert run: the stand-ins as the harness started them, and an extension operation that ends on its first poll. */
async function resetFor(s: Stage): Promise<void> {
  await s.h.reset();
  s.h.arm.lro = { ...s.h.arm.lro, pollsBeforeDone: 0 };
}

const fail = (what: string, r: Timed) => new Error(`${what} exited ${r.code}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-6000)}`);

interface Sample {
  wallMs: number;
  rssMiB?: number;
  firstRequestMs?: number;
}

/** One issuance by `client` at the current delay; throws when it did not issue. */
async function issue(s: Stage, o: Options, client: Client, delayMs: number): Promise<Sample> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: s.dir, LANG: "C.UTF-8" };
  const caFile = s.h.pki.caFile;
  let cmd: string;
  let args: string[];
  let childEnv: Record<string, string>;
  let check: (r: Timed) => void = () => undefined;
  if (client === "amlcert" || client === "amlcert-tsc") {
    await resetFor(s);
    cmd = process.execPath;
    args = [client === "amlcert" ? o.cli : join(ROOT, "dist/src/cli.js"), "renew", "--config", s.config, "--json"];
    // BENCH_NODE_OPTIONS (e.g. --cpu-prof --cpu-prof-dir=...) reaches amlcert only: how the profiles in bench/README.md were taken
    childEnv = s.h.cliEnv(amlcertExtraEnv());
    check = (r) => {
      const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
      const result = line ? (JSON.parse(line) as { action?: string }) : undefined;
      if (result?.action !== "renewed") throw fail(`amlcert renew (action ${result?.action})`, r);
    };
  } else if (client === "lego") {
    rmSync(join(s.dir, "lego/certificates"), { recursive: true, force: true });
    cmd = "/usr/bin/lego";
    args = ["--server", s.front.directoryUrl, "--accept-tos", "--email", "bench@contoso.test", "--path", join(s.dir, "lego"), "--key-type", "ec256",
      "--dns", "exec", "--dns.resolvers", `${NAME_SERVERS[0]!.address}:53`, "--domains", FQDN, "run"];
    childEnv = { ...env, EXEC_PATH: join(ROOT, "bench/hooks/lego-exec.sh"), LEGO_CA_CERTIFICATES: caFile, BENCH_CONTROL: s.control.url };
  } else if (client === "certbot") {
    for (const d of ["live", "archive", "renewal"]) rmSync(join(s.dir, "certbot/config", d), { recursive: true, force: true });
    cmd = "/usr/bin/certbot";
    args = ["certonly", "--non-interactive", "--agree-tos", "--email", "bench@contoso.test", "--no-eff-email", "--server", s.front.directoryUrl,
      "--config-dir", join(s.dir, "certbot/config"), "--work-dir", join(s.dir, "certbot/work"), "--logs-dir", join(s.dir, "certbot/logs"),
      "--manual", "--preferred-challenges", "dns", "--manual-auth-hook", join(ROOT, "bench/hooks/certbot-auth.sh"),
      "--manual-cleanup-hook", join(ROOT, "bench/hooks/certbot-cleanup.sh"), "--key-type", "ecdsa", "-d", FQDN];
    childEnv = { ...env, REQUESTS_CA_BUNDLE: caFile, BENCH_CONTROL: s.control.url, BENCH_CERTBOT_WAIT: String(CERTBOT_PROPAGATION_SECONDS) };
  } else {
    const account = join(s.dir, "floor-account.json");
    if (!existsSync(account)) {
      const r = await timed(process.execPath, [join(ROOT, "dist/bench/floor.js"), "register", s.h.pebble.directoryUrl, account], { env: { ...env, NODE_EXTRA_CA_CERTS: caFile } });
      if (r.code !== 0) throw fail("floor register", r);
    }
    cmd = process.execPath;
    // the floor waits exactly the injected delay (plus amlcert's settle time, 0 by default) after writing its value
    args = [join(ROOT, "dist/bench/floor.js"), "issue", account, FQDN, s.control.url, String(delayMs), s.front.directoryUrl];
    childEnv = { ...env, NODE_EXTRA_CA_CERTS: caFile };
  }
  // after reset(), which puts the harness's start delay back: every client gets the delay under test
  s.h.zones.propagationDelayMs = delayMs;
  s.front.mark();
  const r = await timed(cmd, args, { env: childEnv, rss: true, timeoutMs: 180_000 });
  if (r.code !== 0) throw fail(`${client} at ${delayMs} ms`, r);
  check(r);
  // the last run's output of each client and delay, for a profile of where the time went
  mkdirSync(join(o.out, "logs"), { recursive: true });
  writeFileSync(join(o.out, "logs", `${client}-${delayMs}ms.log`), `${r.stdout}\n${r.stderr}`);
  const first = s.front.first();
  return { wallMs: r.wallMs, rssMiB: r.rssMiB, firstRequestMs: first === undefined ? undefined : first - r.startedAt };
}

/** For experiments and profiles, amlcert's children only: BENCH_NODE_OPTIONS (e.g. --cpu-prof --cpu-prof-dir=DIR) and
 * BENCH_AMLCERT_ENV (a JSON object of variables). */
function amlcertExtraEnv(): Record<string, string> {
  return {
    ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}),
    ...(process.env.BENCH_AMLCERT_ENV ? (JSON.parse(process.env.BENCH_AMLCERT_ENV) as Record<string, string>) : {}),
  };
}

type Results = Record<string, unknown>;

async function issuanceSection(s: Stage, o: Options, results: Results, log: (m: string) => void): Promise<void> {
  // warm-up: every client registers its account (and the processes' files are in the page cache); not timed
  if (!o.smoke) {
    log("warm-up: one issuance per client");
    for (const c of o.clients) await issue(s, o, c, 0);
  }
  const samples: Record<string, Record<number, Sample[]>> = {};
  for (const d of o.delays) {
    s.h.zones.propagationDelayMs = d;
    for (let run = 0; run < o.runs; run++) {
      for (const c of rotate(o.clients, run)) {
        const sample = await issue(s, o, c, d);
        ((samples[c] ??= {})[d] ??= []).push(sample);
        log(`issuance delay=${d / 1000}s run=${run + 1}/${o.runs} ${c}: ${(sample.wallMs / 1000).toFixed(2)} s, first ACME request ${sample.firstRequestMs?.toFixed(0) ?? "?"} ms, ${sample.rssMiB?.toFixed(0) ?? "?"} MiB`);
      }
    }
  }
  s.h.zones.propagationDelayMs = 0;
  results.issuance = samples;
}

async function startSection(s: Stage, o: Options, results: Results, log: (m: string) => void): Promise<void> {
  const env = s.h.cliEnv();
  const runs = Math.max(o.runs, o.smoke ? 1 : 7);
  const out: Record<string, Sample[]> = { version: [], help: [], noopRenew: [], versionTsc: [], noopRenewTsc: [] };
  const tsc = join(ROOT, "dist/src/cli.js");
  for (let i = 0; i < runs; i++) {
    for (const [key, cli, args] of [["version", o.cli, ["version"]], ["help", o.cli, ["--help"]], ["versionTsc", tsc, ["version"]]] as const) {
      const r = await timed(process.execPath, [cli, ...args], { env, rss: true });
      if (r.code !== 0) throw fail(`amlcert ${args.join(" ")}`, r);
      out[key]!.push({ wallMs: r.wallMs, rssMiB: r.rssMiB });
    }
  }
  await resetFor(s);
  const now = Date.now();
  await s.h.seedCertificateInPlace({ notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 89 * 86_400_000), name: "aml-tls-a" });
  for (let i = 0; i < runs * 2; i++) {
    // bundled and unbundled, alternately
    const bundled = i % 2 === 0;
    s.front.mark();
    const r = await timed(process.execPath, [bundled ? o.cli : tsc, "renew", "--config", s.config, "--json"], { env: { ...env, ...amlcertExtraEnv() }, rss: true });
    const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
    const action = line ? (JSON.parse(line) as { action?: string }).action : undefined;
    if (r.code !== 0 || action !== "none") throw fail(`no-op amlcert renew (action ${action})`, r);
    mkdirSync(join(o.out, "logs"), { recursive: true });
    writeFileSync(join(o.out, "logs", "amlcert-noop.log"), `${r.stdout}\n${r.stderr}`);
    // an ACME request here is the renewalInfo (ARI) check; the sample notes when it came
    const first = s.front.first();
    out[bundled ? "noopRenew" : "noopRenewTsc"]!.push({ wallMs: r.wallMs, rssMiB: r.rssMiB, firstRequestMs: first === undefined ? undefined : first - r.startedAt });
    log(`no-op renew (${bundled ? "bundle" : "unbundled"}) ${Math.floor(i / 2) + 1}/${runs}: ${(r.wallMs / 1000).toFixed(2)} s, ${r.rssMiB?.toFixed(0)} MiB`);
  }
  results.start = out;
}

async function daemonSection(s: Stage, o: Options, results: Results, log: (m: string) => void): Promise<void> {
  await resetFor(s);
  const now = Date.now();
  await s.h.seedCertificateInPlace({ notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 89 * 86_400_000), name: "aml-tls-a" });
  log(`daemon: ${o.cycles} scheduled cycles on a compressed clock`);
  const r = await timed(process.execPath, [join(ROOT, "dist/bench-bin/daemon-cycles.js"), s.config, String(o.cycles)], { env: s.h.cliEnv(amlcertExtraEnv()), rss: true, timeoutMs: 60 * 60_000 });
  if (r.code !== 0) throw fail("daemon cycles", r);
  const report = JSON.parse(r.stdout.trim().split("\n").pop()!) as { cycles: number; elapsedMs: number; samples: Array<{ cycle: number; rssMiB: number; heapUsedMiB: number }>; outcomes: Record<string, number> };
  results.daemon = { ...report, peakRssMiB: r.rssMiB };
  log(`daemon: ${report.cycles} cycles in ${(report.elapsedMs / 1000).toFixed(1)} s, RSS ${report.samples[0]?.rssMiB.toFixed(0)} -> ${report.samples.at(-1)?.rssMiB.toFixed(0)} MiB`);
}

async function fleetSection(o: Options, results: Results, log: (m: string) => void): Promise<void> {
  const out: Array<{ targets: number; wallMs: number; rssMiB?: number; renewed: number; tokenRequests: number }> = [];
  for (const n of o.fleet) {
    log(`fleet: starting a harness with ${n} cluster(s)`);
    const s = await stage({ clusters: Array.from({ length: n }, (_, i) => ({ name: `aks-${i}`, fqdn: `t${i}.contoso.test` })) });
    try {
      await resetFor(s);
      // the account exists already, as it does on every run but a first one
      s.h.seedAccountKey();
      const tokensBefore = s.h.entra.tokenRequests.length;
      const r = await timed(process.execPath, [o.cli, "renew", "--config", s.config, "--json"], { env: s.h.cliEnv(), rss: true, timeoutMs: 30 * 60_000 });
      const lines = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { action?: string });
      const renewed = lines.filter((l) => l.action === "renewed").length;
      if (r.code !== 0 || renewed !== n) throw fail(`fleet of ${n}: ${renewed} renewed`, r);
      out.push({ targets: n, wallMs: r.wallMs, rssMiB: r.rssMiB, renewed, tokenRequests: s.h.entra.tokenRequests.length - tokensBefore });
      log(`fleet of ${n}: ${(r.wallMs / 1000).toFixed(2)} s, ${r.rssMiB?.toFixed(0)} MiB, ${s.h.entra.tokenRequests.length - tokensBefore} token request(s)`);
    } finally {
      await s.stop();
    }
  }
  results.fleet = out;
}

// --- report ---

const pct = (x: number) => `${x.toFixed(2)}×`;

function report(o: Options, results: Results): { markdown: string; targets: Array<{ target: string; value: string; met: boolean }> } {
  const parts: string[] = [];
  const targets: Array<{ target: string; value: string; met: boolean }> = [];
  const issuance = results.issuance as Record<string, Record<number, Sample[]>> | undefined;
  const sum = (xs: (number | undefined)[]) => summarize(xs.filter((x): x is number => x !== undefined));
  if (issuance) {
    const rows: string[][] = [];
    for (const c of o.clients) {
      const cells: string[] = [c];
      for (const d of o.delays) {
        const xs = issuance[c]?.[d] ?? [];
        cells.push(secs(sum(xs.map((x) => x.wallMs))), secs(sum(xs.map((x) => x.wallMs - d))));
      }
      rows.push(cells);
    }
    parts.push(`### One DNS-01 issuance, whole process (s: median (min–max), ${o.runs} runs each, interleaved)\n\n` +
      table(["client", ...o.delays.flatMap((d) => [`wall @ ${d / 1000} s`, `overhead @ ${d / 1000} s`])], rows));
    for (const d of o.delays) {
      const med = (c: Client, f: (x: Sample) => number) => sum((issuance[c]?.[d] ?? []).map(f)).median;
      if (issuance.amlcert && issuance.lego) {
        const r = med("amlcert", (x) => x.wallMs - d) / med("lego", (x) => x.wallMs - d);
        targets.push({ target: `issuance overhead ≤ 0.5× lego's at ${d / 1000} s`, value: pct(r), met: r <= 0.5 });
      }
      if (issuance.amlcert && issuance.floor) {
        const r = med("amlcert", (x) => x.wallMs) / med("floor", (x) => x.wallMs);
        targets.push({ target: `wall time ≤ 1.3× the floor's at ${d / 1000} s`, value: pct(r), met: r <= 1.3 });
      }
    }
    const d0 = o.delays[0]!;
    const firstRows = o.clients.map((c) => [c, `${sum((issuance[c]?.[d0] ?? []).map((x) => x.firstRequestMs)).median.toFixed(0)} ms`, mib(sum((issuance[c]?.[d0] ?? []).map((x) => x.rssMiB)))]);
    parts.push(`### Cold start and memory of an issuance (at ${d0 / 1000} s delay)\n\n` + table(["client", "process start → first ACME request (median)", "peak RSS, MiB: median (min–max)"], firstRows));
    if (issuance.amlcert) {
      const first = sum((issuance.amlcert[d0] ?? []).map((x) => x.firstRequestMs)).median;
      targets.push({ target: "first ACME request ≤ 300 ms after process start", value: `${first.toFixed(0)} ms`, met: first <= 300 });
      const rss = sum((issuance.amlcert[d0] ?? []).map((x) => x.rssMiB)).median;
      targets.push({ target: "peak RSS of renew ≤ 100 MiB (issuing)", value: `${rss.toFixed(0)} MiB`, met: rss <= 100 });
    }
  }
  const start = results.start as Record<string, Sample[]> | undefined;
  if (start) {
    const row = (name: string, xs: Sample[]) => [name, secs(sum(xs.map((x) => x.wallMs))), mib(sum(xs.map((x) => x.rssMiB)))];
    parts.push("### amlcert commands, whole process\n\n" + table(["command", "wall, s: median (min–max)", "peak RSS, MiB"], [
      row("`version`", start.version!), row("`--help`", start.help!), row("`renew`, nothing due (no-op)", start.noopRenew!),
      row("`version`, unbundled (dist/src/cli.js)", start.versionTsc!), row("`renew`, no-op, unbundled", start.noopRenewTsc!),
    ]));
    const v = sum(start.version!.map((x) => x.wallMs)).median;
    const hh = sum(start.help!.map((x) => x.wallMs)).median;
    const n = sum(start.noopRenew!.map((x) => x.wallMs)).median;
    const nr = sum(start.noopRenew!.map((x) => x.rssMiB)).median;
    targets.push({ target: "`version` ≤ 0.2 s", value: `${(v / 1000).toFixed(2)} s`, met: v <= 200 });
    targets.push({ target: "`--help` ≤ 0.2 s", value: `${(hh / 1000).toFixed(2)} s`, met: hh <= 200 });
    targets.push({ target: "no-op renew ≤ 0.6 s", value: `${(n / 1000).toFixed(2)} s`, met: n <= 600 });
    targets.push({ target: "peak RSS of renew ≤ 100 MiB (no-op)", value: `${nr.toFixed(0)} MiB`, met: nr <= 100 });
  }
  const daemon = results.daemon as { cycles: number; elapsedMs: number; samples: Array<{ cycle: number; rssMiB: number; heapUsedMiB: number }>; peakRssMiB?: number } | undefined;
  if (daemon) {
    parts.push(`### Daemon memory over ${daemon.cycles} scheduled cycles (compressed clock, ${(daemon.elapsedMs / 1000).toFixed(0)} s)\n\n` +
      table(["after cycle", "RSS, MiB", "V8 heap used, MiB"], daemon.samples.map((x) => [String(x.cycle), x.rssMiB.toFixed(1), x.heapUsedMiB.toFixed(1)])) +
      `\n\nPeak RSS of the daemon process: ${daemon.peakRssMiB?.toFixed(0)} MiB.`);
    const first = daemon.samples[0]!.rssMiB;
    const last = daemon.samples.at(-1)!.rssMiB;
    targets.push({ target: "daemon idle RSS ≤ 80 MiB", value: `${first.toFixed(0)} MiB`, met: first <= 80 });
    targets.push({ target: `daemon RSS flat over ${daemon.cycles} cycles (≤ +10%)`, value: `${first.toFixed(0)} → ${last.toFixed(0)} MiB`, met: last <= first * 1.1 });
  }
  const fleet = results.fleet as Array<{ targets: number; wallMs: number; rssMiB?: number; tokenRequests: number }> | undefined;
  if (fleet && fleet.length > 0) {
    const one = fleet.find((f) => f.targets === 1)?.wallMs;
    parts.push("### Fleet: targets in one `renew` (each on its own cluster, all due)\n\n" + table(["targets", "total, s", "× one target", "peak RSS, MiB", "Entra token requests"], fleet.map((f) => [
      String(f.targets), (f.wallMs / 1000).toFixed(2), one ? pct(f.wallMs / one) : "", f.rssMiB?.toFixed(0) ?? "", String(f.tokenRequests),
    ])));
    const big = fleet.at(-1)!;
    if (one && big.targets > 1) {
      targets.push({ target: `${big.targets} targets ≤ 3× the time of one`, value: pct(big.wallMs / one), met: big.wallMs / one <= 3 });
      targets.push({ target: `${big.targets} targets: peak RSS ≤ 150 MiB`, value: `${big.rssMiB?.toFixed(0)} MiB`, met: (big.rssMiB ?? Infinity) <= 150 });
    }
  }
  parts.push("### Targets\n\n" + table(["target", "measured", "met"], targets.map((t) => [t.target, t.value, t.met ? "yes" : "**no**"])));
  return { markdown: parts.join("\n\n"), targets };
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  await checkEnvironment(o.clients);
  const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
  const results: Results = {
    startedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgAtStart: loadavg(), node: process.version },
    versions: {
      lego: o.clients.includes("lego") ? execFileSync("/usr/bin/lego", ["--version"]).toString().trim() : undefined,
      certbot: o.clients.includes("certbot") ? execFileSync("/usr/bin/certbot", ["--version"]).toString().trim() : undefined,
      amlcertCli: o.cli.slice(ROOT.length + 1),
    },
    options: { ...o, sections: [...o.sections], out: undefined },
  };
  const needsStage = o.sections.has("issuance") || o.sections.has("start") || o.sections.has("memory");
  if (needsStage) {
    const s = await stage({});
    try {
      if (o.sections.has("issuance")) await issuanceSection(s, o, results, log);
      if (o.sections.has("start")) await startSection(s, o, results, log);
      if (o.sections.has("memory")) await daemonSection(s, o, results, log);
    } finally {
      await s.stop();
    }
  }
  if (o.sections.has("fleet")) await fleetSection(o, results, log);
  (results.machine as Record<string, unknown>).loadavgAtEnd = loadavg();
  results.finishedAt = new Date().toISOString();
  const { markdown, targets } = report(o, results);
  results.targets = targets;
  const cmd = `bash scripts/bench.sh${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`;
  const header = `## Benchmark results (${results.startedAt})\n\n\`${cmd}\` on ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ` +
    `${(results.versions as Record<string, string>).lego ?? ""}; ${(results.versions as Record<string, string>).certbot ?? ""}; load average at start ${loadavg().map((x) => x.toFixed(2)).join(" ")}.`;
  const extra = [process.env.BENCH_NODE_OPTIONS && `BENCH_NODE_OPTIONS="${process.env.BENCH_NODE_OPTIONS}"`, process.env.BENCH_AMLCERT_ENV && `BENCH_AMLCERT_ENV='${process.env.BENCH_AMLCERT_ENV}'`].filter(Boolean);
  const text = `${header}${extra.length ? ` amlcert ran with ${extra.join(" ")}.` : ""}\n\n${markdown}\n`;
  process.stdout.write(text);
  mkdirSync(o.out, { recursive: true });
  const stamp = String(results.startedAt).replace(/[:.]/g, "-");
  writeFileSync(join(o.out, `${stamp}.json`), JSON.stringify(results, null, 2));
  writeFileSync(join(o.out, `${stamp}.md`), text);
  writeFileSync(join(o.out, "latest.md"), text);
  writeFileSync(join(o.out, "latest.json"), JSON.stringify(results, null, 2));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
