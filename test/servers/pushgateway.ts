/**
 * Debian's real Prometheus Pushgateway (`prometheus-pushgateway`) for tests: on a free loopback port, metrics in
 * memory only (no persistence file), its working directory a temp dir removed on close. Start waits (bounded)
 * until /-/ready answers 200; close stops the process (SIGTERM, then SIGKILL, each bounded).
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./pebble.js";
import { spawnLogged } from "./child-process.js";

export const PUSHGATEWAY_BINARY = "/usr/bin/prometheus-pushgateway";

const READY_ATTEMPTS = 100;
const READY_INTERVAL_MS = 50;
const REQUEST_TIMEOUT_MS = 2_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_LIMIT = 64 * 1024;

/** One sample as /api/v1/metrics shows it: `value` for counters and gauges, buckets/count/sum for histograms. */
export interface PushedMetric {
  labels: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

export interface PushedFamily {
  type: string;
  help: string;
  metrics: PushedMetric[];
}

/** One group as /api/v1/metrics shows it. */
export interface PushGroup {
  labels: Record<string, string>;
  /** metric families by name */
  families: Map<string, PushedFamily>;
  pushTimeSeconds: number | undefined;
  lastPushSuccessful: boolean;
}

export interface Pushgateway {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** every group the gateway holds (GET /api/v1/metrics) */
  groups(): Promise<PushGroup[]>;
  /** the gateway's own exposition of everything pushed (GET /metrics) */
  metricsText(): Promise<string>;
  process: ChildProcess;
  logs(): string;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: res.status, body: await res.text() };
}

interface ApiGroup {
  labels: Record<string, string>;
  last_push_successful: boolean;
  push_time_seconds?: { metrics: { value: string }[] };
  [family: string]: unknown;
}

export async function startPushgateway(opts: { binary?: string } = {}): Promise<Pushgateway> {
  const binary = opts.binary ?? PUSHGATEWAY_BINARY;
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: install Debian's prometheus-pushgateway (apt-get install prometheus-pushgateway); .ci/run does`);
  }
  const dir = mkdtempSync(join(tmpdir(), "amlcert-pushgateway-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawnLogged(binary, [`--web.listen-address=127.0.0.1:${port}`, "--persistence.file=", "--log.level=warn"], { cwd: dir, logLimit: LOG_LIMIT });
  const child = proc.child;

  async function close(): Promise<void> {
    await proc.stop(STOP_TIMEOUT_MS);
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    let ready = false;
    for (let i = 0; i < READY_ATTEMPTS && !proc.hasExited() && !ready; i++) {
      ready = await get(`${url}/-/ready`).then((r) => r.status === 200, () => false);
      if (!ready) await sleep(READY_INTERVAL_MS);
    }
    if (!ready) {
      throw new Error(`prometheus-pushgateway did not become ready on ${url}${proc.hasExited() ? " (it exited)" : ""}:\n${proc.output().trimEnd().split("\n").slice(-20).join("\n")}`);
    }
  } catch (err) {
    await close();
    throw err;
  }

  return {
    url,
    port,
    process: child,
    logs: proc.output,
    close,
    async metricsText() {
      const r = await get(`${url}/metrics`);
      if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.body}`);
      return r.body;
    },
    async groups() {
      const r = await get(`${url}/api/v1/metrics`);
      if (r.status !== 200) throw new Error(`GET /api/v1/metrics answered ${r.status}: ${r.body}`);
      const data = (JSON.parse(r.body) as { data: ApiGroup[] }).data;
      return data.map((g) => {
        const families: PushGroup["families"] = new Map();
        for (const [name, value] of Object.entries(g)) {
          if (name === "labels" || name === "last_push_successful" || typeof value !== "object" || value === null) continue;
          const f = value as PushedFamily;
          families.set(name, { type: f.type, help: f.help, metrics: f.metrics });
        }
        const push = g.push_time_seconds?.metrics[0]?.value;
        return { labels: g.labels, families, pushTimeSeconds: push === undefined ? undefined : Number(push), lastPushSuccessful: g.last_push_successful };
      });
    },
  };
}
