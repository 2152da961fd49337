/** A logger for adapters (KubeLogger) that keeps every line, to assert on what was logged. */
import type { KubeLogger } from "../../src/kubernetes/kube-client.js";

export interface LogLine {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}

export function captureLogger(): KubeLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn") };
}
