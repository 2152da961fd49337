/**
 * Run a command over the selected targets: `renew` runs up to `renewal.concurrency` of them at once (each takes its
 * own cluster's Lease; two targets on one cluster take turns in the run lock), `plan` one after another. One
 * target's failure does not stop the others; results keep the configured order; the exit code is the worst of
 * them (3 before 4: a failed renewal outranks a failed check).
 */
import { ExitCode, isAmlcertError } from "../errors.js";
import type { TargetConfig } from "../config/schema.js";
import type { Logger } from "../observability/logger.js";
import { renewTarget } from "../renewal/renew.js";
import type { TargetOutcome } from "../renewal/events.js";
import { inspectTarget } from "../renewal/inspect.js";
import { checkDns } from "../renewal/verify-dns.js";
import { outcomeError } from "../renewal/recorder.js";
import type { App } from "./compose.js";

const SEVERITY: Record<number, number> = { [ExitCode.Ok]: 0, [ExitCode.VerificationFailed]: 1, [ExitCode.RenewalFailed]: 2, [ExitCode.Config]: 3, [ExitCode.Internal]: 4 };

export function worstExitCode(codes: number[]): number {
  return codes.reduce((worst, c) => ((SEVERITY[c] ?? 4) > (SEVERITY[worst] ?? 0) ? c : worst), ExitCode.Ok as number);
}

export const exitCodeOf = (o: TargetOutcome): number => o.error?.exitCode ?? ExitCode.Ok;

/** `work` over `items` with at most `limit` in flight; results in the items' order. `work` must not throw. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await work(items[i]!, i);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

export async function runRenew(app: App, targets: TargetConfig[], signal?: AbortSignal, concurrency = 1): Promise<TargetOutcome[]> {
  return mapBounded(targets, concurrency, (t) => {
    const { deps, settings } = app.target(t);
    return renewTarget(deps, settings, signal);
  });
}

export interface PlanLine {
  fqdn: string;
  action: "renew" | "none" | "error";
  reason: string;
  message: string;
  secret?: string;
  serial?: string;
  notAfter?: string;
  renewAt?: string;
  /** where renewAt came from: ari (the CA's window), renewBefore, or lifetime (2/3) */
  renewAtSource?: string;
  dnsOk?: boolean;
  warnings: string[];
  error?: { code: string; stage: string; message: string };
  exitCode: number;
}

export async function runPlan(app: App, targets: TargetConfig[], logger: Logger): Promise<PlanLine[]> {
  const out: PlanLine[] = [];
  for (const t of targets) {
    const { deps, settings } = app.target(t);
    try {
      await app.ready();
      const i = await inspectTarget(deps, settings);
      const dns = await checkDns(deps, settings, i.expected);
      const line: PlanLine = {
        fqdn: t.fqdn,
        action: i.decision.renew ? "renew" : "none",
        reason: i.decision.reason,
        message: i.decision.message,
        secret: i.currentSecretName,
        serial: i.decision.current?.serialNumber,
        notAfter: i.decision.current?.notAfter.toISOString(),
        renewAt: i.decision.renewAt?.toISOString(),
        ...(i.decision.renewAtSource ? { renewAtSource: i.decision.renewAtSource } : {}),
        dnsOk: dns.ok,
        warnings: [...i.warnings, ...dns.problems.map((p) => `DNS: ${p}`)],
        exitCode: ExitCode.Ok,
      };
      logger.info({ stage: "plan", fqdn: t.fqdn, reason: line.reason }, `${line.action === "renew" ? "would renew" : "nothing to do"}: ${line.message}`);
      for (const w of line.warnings) logger.warn({ stage: "plan", fqdn: t.fqdn }, w);
      out.push(line);
    } catch (err) {
      const e = outcomeError(err, "preflight");
      logger.error({ stage: e.stage, fqdn: t.fqdn, err: isAmlcertError(err) ? err : e }, e.message);
      out.push({ fqdn: t.fqdn, action: "error", reason: e.code, message: e.message, warnings: [], error: { code: e.code, stage: e.stage, message: e.message }, exitCode: e.exitCode });
    }
  }
  return out;
}
