/**
 * `amlcert daemon` on a compressed clock, for the memory figures: the same wiring as the daemon command
 * (src/cli/commands.ts: config loader, logger, createApp, metrics, serveDaemon), with a clock that runs `factor`
 * times faster than real time and the schedule every minute, so 1000 scheduled cycles take minutes, not days. Every
 * cycle is a whole run through the stand-ins (Lease, extension, secret, DNS and TLS checks, history); network
 * timeouts stay real. Prints one JSON line: RSS after the first cycle and every `sampleEvery` cycles after it.
 *
 *   node dist/bench/daemon-cycles.js <config> <cycles> [factor]
 */
import { createServer, type AddressInfo } from "node:net";
import { loadConfig } from "../src/config/load.js";
import { createLogger } from "../src/observability/logger.js";
import { createApp } from "../src/app/compose.js";
import { createMetrics } from "../src/observability/metrics.js";
import { serveDaemon } from "../src/app/serve.js";
import { abortableSleep, type Clock } from "../src/ports.js";

function compressedClock(factor: number): Clock {
  const realStart = Date.now();
  return {
    now: () => new Date(realStart + (Date.now() - realStart) * factor),
    sleep: (ms, signal) => abortableSleep(ms / factor, signal),
  };
}

const mib = () => process.memoryUsage().rss / 1024 / 1024;

async function main(configPath: string, cycles: number, factor: number): Promise<void> {
  const loaded = loadConfig({ path: configPath, env: process.env });
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const p = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  const config = { ...loaded.config, daemon: { ...loaded.config.daemon, schedule: "* * * * *", listen: `127.0.0.1:${port}`, runAtStart: true } };
  const logger = createLogger({ level: config.log.level, format: "json" });
  const clock = compressedClock(factor);
  const metrics = createMetrics({ version: "bench" });
  const app = createApp({ config, eabHmacKey: loaded.eabHmacKey, env: process.env, logger, clock, force: false, holder: `bench/${process.pid}`, metrics });
  const samples: Array<{ cycle: number; rssMiB: number; heapUsedMiB: number }> = [];
  const outcomes: Record<string, number> = {};
  let done = 0;
  let finished!: () => void;
  const allDone = new Promise<void>((r) => (finished = r));
  const sampleEvery = Math.max(1, Math.floor(cycles / 10));
  for (const t of config.targets) {
    app.target(t).deps.events?.push((e) => {
      if (e.type !== "run-finished") return;
      done++;
      outcomes[`${e.outcome.action}:${e.outcome.reason}`] = (outcomes[`${e.outcome.action}:${e.outcome.reason}`] ?? 0) + 1;
      if (done === 1 || done % sampleEvery === 0) samples.push({ cycle: done, rssMiB: mib(), heapUsedMiB: process.memoryUsage().heapUsed / 1024 / 1024 });
      if (done >= cycles) finished();
    });
  }
  const startedAt = performance.now();
  const daemon = await serveDaemon(app, config.targets, { config, metrics, logger, clock });
  await allDone;
  const elapsedMs = performance.now() - startedAt;
  await daemon.stop();
  process.stdout.write(`${JSON.stringify({ cycles: done, elapsedMs, factor, samples, outcomes })}\n`);
}

const [configPath, cycles, factor] = process.argv.slice(2);
main(configPath!, Number(cycles ?? 1000), Number(factor ?? 600)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`daemon-cycles: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
