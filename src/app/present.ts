/**
 * What a person sees on a terminal: one readable line per target. Scripts and CronJobs (stdout not a TTY, or
 * --json) get the same facts as one JSON object per line.
 */
import type { TargetOutcome } from "../renewal/events.js";
import type { PlanLine } from "./run.js";

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
const yesNo = (ok: boolean, what: string) => `${what} ${ok ? "ok" : "FAILED"}`;

export function formatRenewResult(r: TargetOutcome): string {
  switch (r.action) {
    case "renewed":
      return `${r.fqdn}: renewed (${r.reason}) serial ${r.serial}, valid until ${r.notAfter}, secret ${r.secret}; ${yesNo(r.dnsOk, "DNS")}, ${yesNo(r.servingOk, "serving")} [${seconds(r.durationMs)}]`;
    case "none":
      return `${r.fqdn}: up to date, serial ${r.serial} valid until ${r.notAfter} in secret ${r.secret}; ${yesNo(r.dnsOk, "DNS")}, ${yesNo(r.servingOk, "serving")}`;
    case "skipped":
      return `${r.fqdn}: skipped (${r.reason}): another amlcert run holds the cluster's Lease`;
    case "failed":
      return `${r.fqdn}: FAILED at ${r.error?.stage} (${r.error?.code}): ${r.error?.message}${r.storedSecret ? ` [new certificate stored in ${r.storedSecret}]` : ""}`;
  }
}

export function formatPlanLine(p: PlanLine): string {
  if (p.action === "error") return `${p.fqdn}: cannot plan, ${p.error?.stage} (${p.error?.code}): ${p.message}`;
  const head = p.action === "renew" ? `would renew (${p.reason}): ${p.message}` : `nothing to do: ${p.message}`;
  const current = p.secret ? `; current secret ${p.secret}${p.serial ? `, serial ${p.serial}` : ""}` : "";
  const warnings = p.warnings.map((w) => `\n  warning: ${w}`).join("");
  return `${p.fqdn}: ${head}${current}${warnings}`;
}
