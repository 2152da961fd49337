/** Debian's promtool over a metrics exposition, for the tests that lint what amlcert serves or pushes. */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { PROMTOOL_BINARY } from "../servers/prometheus.js";

/** `promtool check metrics` on `text` (stdin): its exit code (-1 when killed after 30 s) and everything it printed. */
export function promtoolCheckMetrics(text: string): Promise<{ code: number; output: string }> {
  if (!existsSync(PROMTOOL_BINARY)) throw new Error(`${PROMTOOL_BINARY} is missing: install Debian's prometheus (apt-get install prometheus); .ci/run does`);
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL_BINARY, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output });
    });
    child.stdin.end(text);
  });
}
