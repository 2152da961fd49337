/**
 * The real ACME CA for tests: Debian's Pebble 2.4.0 (`/usr/bin/pebble`) as a child process, plus Pebble's mock DNS
 * server `pebble-challtestsrv` for suites that do not run the Azure DNS stand-in.
 *
 * Pebble 2.4.0 facts (checked against its source, tag v2.4.0, and the Debian binary):
 * - `-dnsserver host:port` makes the VA send its DNS-01 TXT queries to that server (UDP, miekg/dns client);
 *   without it Pebble uses the system resolver.
 * - `-strict` turns on upcoming-breaking-change checks. Env: PEBBLE_WFE_NONCEREJECT (percent of good nonces
 *   rejected as badNonce), PEBBLE_VA_NOSLEEP, PEBBLE_VA_SLEEPTIME, PEBBLE_VA_ALWAYS_VALID, PEBBLE_AUTHZREUSE (percent
 *   of valid authorizations reused, default 50), PEBBLE_CHAIN_LENGTH, PEBBLE_ALTERNATE_ROOTS, PEBBLE_WFE_ORDERS_PER_PAGE.
 * - Config (JSON, key "pebble"): listenAddress, managementListenAddress, certificate, privateKey, httpPort, tlsPort,
 *   ocspResponderURL, externalAccountBindingRequired, externalAccountMACKeys {kid: base64url (no padding) key},
 *   domainBlocklist [names; a name blocks itself and every name below it: newOrder answers rejectedIdentifier],
 *   certificateValidityPeriod (seconds; default 157766400 = 5 years; notAfter = notBefore + period - 1 s).
 *   newOrder also honours `notBefore`/`notAfter` (RFC 3339) from the client.
 * - Management API (HTTPS, same certificate): GET /roots/0, /root-keys/0, /intermediates/0, /intermediate-keys/0,
 *   /cert-status-by-serial/<hex serial>. No ARI (renewalInfo) in 2.4.0.
 */
import type { ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DnsChallengeSolver, PresentedTxt } from "../../src/ports.js";
import type { TestPki } from "./pki.js";
import { spawnLogged } from "./child-process.js";

export const PEBBLE_BINARY = "/usr/bin/pebble";
export const CHALLTESTSRV_BINARY = "/usr/bin/pebble-challtestsrv";

const START_ATTEMPTS = 5;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_LIMIT = 256 * 1024;

export interface PebbleOptions {
  /** the test PKI: Pebble's API and management API serve `pki.certFile`, so clients trust them through `pki.caPem` */
  pki: Pick<TestPki, "certFile" | "keyFile" | "caPem">;
  /** where Pebble's VA sends DNS-01 queries, `127.0.0.1:<port>` */
  dnsServer: string;
  /** External Account Binding keys: kid -> base64url HMAC key. When given, EAB is required for new accounts. */
  eab?: Record<string, string>;
  /** extra environment for Pebble, over the defaults (PEBBLE_WFE_NONCEREJECT=15, PEBBLE_VA_NOSLEEP=1) */
  env?: Record<string, string>;
  /** validity of issued certificates in seconds (Pebble's `certificateValidityPeriod`) */
  certificateValidityPeriodSeconds?: number;
  /** names Pebble refuses to order (`domainBlocklist`): newOrder fails with rejectedIdentifier */
  domainBlocklist?: string[];
  /** run with -strict (default true) */
  strict?: boolean;
  binary?: string;
}

export interface Pebble {
  /** ACME directory URL, https://127.0.0.1:<port>/dir */
  directoryUrl: string;
  /** management API base URL, https://127.0.0.1:<port> */
  managementUrl: string;
  /** Pebble's root followed by its intermediate (both regenerated on every start) */
  rootsPem(): Promise<string>;
  rootPem(): Promise<string>;
  intermediatePem(): Promise<string>;
  process: ChildProcess;
  /** Pebble's stdout+stderr so far (bounded), for failure messages */
  logs(): string;
  close(): Promise<void>;
}

/** A port that was free a moment ago, on TCP (and UDP when asked), on 127.0.0.1. */
export async function freePort(opts: { udp?: boolean } = {}): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (!opts.udp) return port;
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket("udp4");
      u.once("error", () => {
        u.close();
        resolve(false);
      });
      u.bind(port, "127.0.0.1", () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error("could not find a free loopback port in 20 attempts");
}

function httpsGet(url: string, caPem: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: "GET", ca: caPem, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Start Pebble on free loopback ports and wait (bounded) until its directory answers. */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  const binary = opts.binary ?? PEBBLE_BINARY;
  if (!existsSync(binary)) {
    throw new Error(`Pebble is not installed (${binary} is missing): run scripts/setup.sh (apt-get install pebble)`);
  }
  const dir = await mkdtemp(join(tmpdir(), "amlcert-pebble-"));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PEBBLE_")) env[k] = v;
  Object.assign(env, { PEBBLE_WFE_NONCEREJECT: "15", PEBBLE_VA_NOSLEEP: "1" }, opts.env ?? {});

  let lastFailure = "";
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const [apiPort, mgmtPort, httpPort, tlsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${apiPort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: opts.pki.certFile,
        privateKey: opts.pki.keyFile,
        httpPort,
        tlsPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: opts.eab !== undefined,
        ...(opts.eab === undefined ? {} : { externalAccountMACKeys: opts.eab }),
        ...(opts.domainBlocklist === undefined ? {} : { domainBlocklist: opts.domainBlocklist }),
        ...(opts.certificateValidityPeriodSeconds === undefined
          ? {}
          : { certificateValidityPeriod: opts.certificateValidityPeriodSeconds }),
      },
    };
    const configFile = join(dir, "pebble-config.json");
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const args = ["-config", configFile, "-dnsserver", opts.dnsServer, ...(opts.strict === false ? [] : ["-strict"])];
    const proc = spawnLogged(binary, args, { env, cwd: dir, logLimit: LOG_LIMIT });
    const directoryUrl = `https://127.0.0.1:${apiPort}/dir`;
    const managementUrl = `https://127.0.0.1:${mgmtPort}`;

    const deadline = Date.now() + START_TIMEOUT_MS;
    let ready = false;
    while (Date.now() < deadline && !proc.hasExited()) {
      try {
        const [dirRes, rootRes] = await Promise.all([
          httpsGet(directoryUrl, opts.pki.caPem, 1_000),
          httpsGet(`${managementUrl}/roots/0`, opts.pki.caPem, 1_000),
        ]);
        if (dirRes.status === 200 && rootRes.status === 200) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    if (ready) {
      const getPem = async (path: string) => {
        const res = await httpsGet(`${managementUrl}${path}`, opts.pki.caPem);
        if (res.status !== 200) throw new Error(`Pebble management GET ${path} answered ${res.status}: ${res.body}`);
        return res.body.endsWith("\n") ? res.body : `${res.body}\n`;
      };
      return {
        directoryUrl,
        managementUrl,
        rootPem: () => getPem("/roots/0"),
        intermediatePem: () => getPem("/intermediates/0"),
        rootsPem: async () => `${await getPem("/roots/0")}${await getPem("/intermediates/0")}`,
        process: proc.child,
        logs: proc.output,
        async close() {
          await proc.stop(STOP_TIMEOUT_MS);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    await proc.stop(STOP_TIMEOUT_MS);
    lastFailure = proc.output();
    if (!/address already in use/i.test(lastFailure)) break; // only a port race is worth another attempt
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`Pebble did not start within ${START_TIMEOUT_MS} ms:\n${tail(lastFailure)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// pebble-challtestsrv: a mock DNS server (UDP+TCP) whose TXT answers are set over an HTTP management API.

export interface ChallTestSrv {
  /** `127.0.0.1:<port>`, for Pebble's -dnsserver */
  dnsServer: string;
  managementUrl: string;
  /** add one TXT value at `host` (absolute name; a trailing dot is added) */
  addTxt(host: string, value: string): Promise<void>;
  /** remove every TXT value at `host` */
  clearTxt(host: string): Promise<void>;
  logs(): string;
  close(): Promise<void>;
}

function httpPostJson(url: string, body: unknown, timeoutMs = 5_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpRequest(
      url,
      { method: "POST", timeout: timeoutMs, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

const fqdnDot = (name: string) => (name.endsWith(".") ? name : `${name}.`);

export async function startChallTestSrv(opts: { binary?: string } = {}): Promise<ChallTestSrv> {
  const binary = opts.binary ?? CHALLTESTSRV_BINARY;
  if (!existsSync(binary)) {
    throw new Error(`pebble-challtestsrv is not installed (${binary} is missing): run scripts/setup.sh (apt-get install pebble)`);
  }
  let lastFailure = "";
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const dnsPort = await freePort({ udp: true });
    const mgmtPort = await freePort();
    const args = ["-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${mgmtPort}`];
    const proc = spawnLogged(binary, args, { cwd: tmpdir(), logLimit: LOG_LIMIT });
    const managementUrl = `http://127.0.0.1:${mgmtPort}`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    let ready = false;
    while (Date.now() < deadline && !proc.hasExited()) {
      try {
        if ((await httpPostJson(`${managementUrl}/clear-txt`, { host: "ready.invalid." }, 1_000)) === 200) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    // the DNS listeners start alongside the management server; give a port clash a moment to surface
    if (ready) await sleep(100);
    if (ready && !proc.hasExited()) {
      const post = async (path: string, body: unknown) => {
        const status = await httpPostJson(`${managementUrl}${path}`, body);
        if (status !== 200) throw new Error(`pebble-challtestsrv ${path} answered ${status}`);
      };
      return {
        dnsServer: `127.0.0.1:${dnsPort}`,
        managementUrl,
        addTxt: (host, value) => post("/set-txt", { host: fqdnDot(host), value }),
        clearTxt: (host) => post("/clear-txt", { host: fqdnDot(host) }),
        logs: proc.output,
        close: () => proc.stop(STOP_TIMEOUT_MS).then(() => undefined),
      };
    }
    await proc.stop(STOP_TIMEOUT_MS);
    lastFailure = proc.output();
    if (!/address already in use/i.test(lastFailure)) break;
  }
  throw new Error(`pebble-challtestsrv did not start within ${START_TIMEOUT_MS} ms:\n${tail(lastFailure)}`);
}

/**
 * A DnsChallengeSolver on pebble-challtestsrv. challtestsrv can only clear *all* values at a name, so the solver
 * keeps the values it published and re-adds the others after a removal, which gives "remove only my value".
 * `published()` shows what is live, for assertions.
 */
export interface ChallTestSrvSolver extends DnsChallengeSolver {
  published(): Map<string, string[]>;
  presentCount(): number;
  cleanupCount(): number;
}

export function challTestSrvSolver(srv: ChallTestSrv): ChallTestSrvSolver {
  const live = new Map<string, string[]>();
  let presents = 0;
  let cleanups = 0;
  let queue: Promise<unknown> = Promise.resolve();
  // serialise writes so a clear + re-add never interleaves with another present
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    present(recordName, value) {
      return serial(async () => {
        const name = recordName.toLowerCase().replace(/\.$/, "");
        await srv.addTxt(name, value);
        live.set(name, [...(live.get(name) ?? []), value]);
        presents++;
        const handle: PresentedTxt = { recordFqdn: name, value, zone: "challtestsrv" };
        return handle;
      });
    },
    cleanup(handle) {
      return serial(async () => {
        const values = live.get(handle.recordFqdn) ?? [];
        const i = values.indexOf(handle.value);
        if (i < 0) return;
        const rest = [...values.slice(0, i), ...values.slice(i + 1)];
        await srv.clearTxt(handle.recordFqdn);
        for (const v of rest) await srv.addTxt(handle.recordFqdn, v);
        if (rest.length === 0) live.delete(handle.recordFqdn);
        else live.set(handle.recordFqdn, rest);
        cleanups++;
      });
    },
    published: () => new Map([...live].map(([k, v]) => [k, [...v]])),
    presentCount: () => presents,
    cleanupCount: () => cleanups,
  };
}
