/**
 * How `amlcert doctor` shows its checklist: on a terminal, one line per check under each target (ok, warn, FAIL), the
 * fix indented below a warning or a failure; otherwise one JSON object per target (the DoctorReport itself).
 */
import type { CheckState, DoctorReport } from "./doctor.js";

const MARK: Record<CheckState, string> = { pass: "  ok  ", warn: " warn ", fail: " FAIL " };

export function formatDoctorReport(r: DoctorReport): string {
  const failures = r.checks.filter((c) => c.state === "fail").length;
  const warnings = r.checks.filter((c) => c.state === "warn").length;
  const head = `${r.fqdn}: ${r.ok ? "ready to renew" : `${failures} problem${failures === 1 ? "" : "s"} would stop a renewal`}${warnings ? `, ${warnings} warning${warnings === 1 ? "" : "s"}` : ""}`;
  const lines = r.checks.map((c) => {
    const fix = c.fix && c.state !== "pass" ? `\n        fix: ${c.fix.replace(/\n/g, "\n        ")}` : "";
    return `  [${MARK[c.state]}] ${c.message}${fix}`;
  });
  return [head, ...lines].join("\n");
}

export function formatDoctorJson(r: DoctorReport): string {
  return JSON.stringify(r);
}
