/**
 * Pebble (the real RFC 8555 test CA) validates DNS-01 against the DNS stand-in: `pebble -dnsserver 127.0.0.1:<port>`.
 * The `_acme-challenge` name is a CNAME into a second zone, and the TXT value reaches the wire only after a
 * propagation delay, which amlcert's waitForTxt waits out before the challenge is answered.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, get } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import acme from "acme-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDnsLookup } from "../../src/dns-check/dns-lookup.js";
import { waitForTxt } from "../../src/dns-check/propagation.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { createTestPki, type TestPki } from "../servers/pki.js";
import { ZoneStore } from "../servers/zone-store.js";
import { VirtualClock } from "../support/virtual-clock.js";

const PEBBLE = "/usr/bin/pebble";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** GET `url` trusting `ca` until it answers 200; bounded by `timeoutMs`. */
async function waitForHttps(url: string, ca: string, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = get(url, { ca, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", () => resolve(0));
      req.on("timeout", () => req.destroy());
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`Pebble did not come up at ${url} within ${timeoutMs} ms. Output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("Pebble validates DNS-01 through the DNS stand-in", () => {
  // the store's propagation delay and amlcert's wait run on one virtual clock that moves only when the wait sleeps:
  // the value reaches the wire because the wait slept past the delay, never because real time passed
  const clock = new VirtualClock(new Date("2025-03-01T12:00:00Z"));
  const store = new ZoneStore({ now: () => clock.now().getTime() });
  const example = store.addZone("sub", "rg", "example.com");
  const validation = store.addZone("sub", "rg", "validation.example.net");
  let dns: DnsServer;
  let pebble: ChildProcess | undefined;
  let pebbleOutput = "";
  let dir: string;
  let pki: TestPki;
  let directoryUrl: string;

  beforeAll(async () => {
    if (!existsSync(PEBBLE)) throw new Error(`Pebble is required for this test but ${PEBBLE} is missing (Debian package "pebble")`);
    dir = mkdtempSync(join(tmpdir(), "amlcert-pebble-dns-"));
    pki = createTestPki(join(dir, "pki"));
    dns = await startDnsServer({ zones: store });
    const [listen, management] = [await freePort(), await freePort()];
    writeFileSync(
      join(dir, "pebble.json"),
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${listen}`,
          managementListenAddress: `127.0.0.1:${management}`,
          certificate: pki.certFile,
          privateKey: pki.keyFile,
          httpPort: 5002,
          tlsPort: 5001,
          ocspResponderURL: "",
          externalAccountBindingRequired: false,
        },
      }),
    );
    pebble = spawn(PEBBLE, ["-config", join(dir, "pebble.json"), "-dnsserver", dns.address, "-strict"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    pebble.stdout?.on("data", (d: Buffer) => (pebbleOutput += d.toString()));
    pebble.stderr?.on("data", (d: Buffer) => (pebbleOutput += d.toString()));
    directoryUrl = `https://127.0.0.1:${listen}/dir`;
    await waitForHttps(directoryUrl, pki.caPem, 15_000, () => pebbleOutput);
    acme.axios.defaults.httpsAgent = new Agent({ ca: pki.caPem });
  });

  afterAll(async () => {
    if (pebble && pebble.exitCode === null) {
      const exited = new Promise<void>((r) => pebble!.once("exit", () => r()));
      pebble.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (pebble.exitCode === null) pebble.kill("SIGKILL");
    }
    await dns?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("when the challenge name is a CNAME into another zone and the TXT value propagates late, Pebble issues the certificate", async () => {
    store.propagationDelayMs = 300;
    store.putRecordSet(example, "CNAME", "_acme-challenge.www", { ttl: 60, cname: "www.validation.example.net" });
    const lookup = createDnsLookup({ timeoutMs: 5_000, tries: 2 });
    const presented: string[] = [];
    const client = new acme.Client({ directoryUrl, accountKey: await acme.crypto.createPrivateEcdsaKey() });
    const [, csr] = await acme.crypto.createCsr({ commonName: "www.example.com", altNames: ["www.example.com"] }, await acme.crypto.createPrivateEcdsaKey());
    dns.queries.length = 0;

    const chain = await client.auto({
      csr,
      termsOfServiceAgreed: true,
      challengePriority: ["dns-01"],
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, _challenge, keyAuthorization) => {
        presented.push(keyAuthorization);
        store.putRecordSet(validation, "TXT", "www", { ttl: 60, txt: [[keyAuthorization]] });
        expect(await lookup.txt("www.validation.example.net", [dns.address])).toEqual([]); // not on the wire yet
        const waited = await waitForTxt({
          lookup,
          name: "www.validation.example.net",
          value: keyAuthorization,
          servers: [dns.address],
          timeoutMs: 10_000,
          intervalMs: 50,
          clock,
          logger: { debug: () => {}, info: () => {} },
        });
        expect(waited).toEqual({ attempts: 7, elapsedMs: 300 }); // checks at 0, 50, ..., 300 ms of the clock
      },
      challengeRemoveFn: async () => {
        store.deleteRecordSet(validation, "TXT", "www");
      },
    });

    expect(chain).toContain("BEGIN CERTIFICATE");
    expect(presented).toHaveLength(1);
    // Pebble asked our server for the challenge record and got the final value through the CNAME
    expect(dns.queries).toContainEqual(expect.objectContaining({ name: "_acme-challenge.www.example.com", type: "TXT", rcode: "NOERROR" }));
  });
});
