/**
 * Run a command over the selected targets: identity preflight once, then each target in turn. One target's failure
 * does not stop the others; the exit code is the worst of them (3 before 4: a failed renewal outranks a failed check).
 */
import { AmlcertError, ExitCode, atStage, isAmlcertError } from "../errors.js";
import type { TargetConfig } from "../config/schema.js";
import type { Logger } from "../observability/logger.js";
import { checkDns, emptyResult, inspectTarget, renewTarget, type TargetResult } from "../renewal/renew.js";
import type { App } from "./compose.js";

const SEVERITY: Record<number, number> = { [ExitCode.Ok]: 0, [ExitCode.VerificationFailed]: 1, [ExitCode.RenewalFailed]: 2, [ExitCode.Config]: 3, [ExitCode.Internal]: 4 };

export function worstExitCode(codes: number[]): number {
  return codes.reduce((worst, c) => ((SEVERITY[c] ?? 4) > (SEVERITY[worst] ?? 0) ? c : worst), ExitCode.Ok as number);
}

/** Sign in once per run and log who we are. The error, if any, is reported on every target. */
async function preflightIdentity(app: App, logger: Logger): Promise<AmlcertError | undefined> {
  let id;
  try {
    id = await app.azure.identity();
  } catch (err) {
    return atStage(err, "preflight");
  }
  logger.info(
    { stage: "preflight", method: id.method, clientId: id.clientId, objectId: id.objectId, tenantId: id.tenantId, arm: app.cloud.resourceManagerEndpoint },
    `Azure identity: ${id.method}${id.clientId ? ` (client ${id.clientId})` : ""}`,
  );
  return undefined;
}

export async function runRenew(app: App, targets: TargetConfig[], logger: Logger): Promise<{ result: TargetResult; exitCode: number }[]> {
  const out: { result: TargetResult; exitCode: number }[] = [];
  const identityError = await preflightIdentity(app, logger);
  for (const t of targets) {
    const { deps, settings } = app.target(t);
    const started = Date.now();
    const log = logger.child({ fqdn: t.fqdn });
    const progress = emptyResult(t.fqdn);
    try {
      if (identityError) throw identityError;
      log.info({ stage: "plan" }, `checking ${t.fqdn}`);
      const result = await renewTarget(deps, settings, progress);
      const summary = { renewed: "renewed, rolled out and verified", none: "nothing to do", skipped: "skipped", failed: "failed" }[result.action];
      log.info({ result }, summary);
      out.push({ result, exitCode: ExitCode.Ok });
    } catch (err) {
      const e = isAmlcertError(err) ? err : atStage(err, "plan");
      log.error({ stage: e.stage, err: e }, `${e.stage} failed: ${e.message}`);
      out.push({
        result: {
          ...progress,
          action: "failed",
          reason: progress.reason || e.code,
          durationMs: Date.now() - started,
          error: { code: e.code, stage: e.stage, message: e.message },
        },
        exitCode: isAmlcertError(err) ? e.exitCode : ExitCode.Internal,
      });
    }
  }
  return out;
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
  dnsOk?: boolean;
  warnings: string[];
  error?: { code: string; stage: string; message: string };
  exitCode: number;
}

export async function runPlan(app: App, targets: TargetConfig[], logger: Logger): Promise<PlanLine[]> {
  const out: PlanLine[] = [];
  const identityError = await preflightIdentity(app, logger);
  for (const t of targets) {
    const { deps, settings } = app.target(t);
    try {
      if (identityError) throw identityError;
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
        dnsOk: dns.ok,
        warnings: [...i.warnings, ...dns.problems.map((p) => `DNS: ${p}`)],
        exitCode: ExitCode.Ok,
      };
      logger.info({ stage: "plan", fqdn: t.fqdn, reason: line.reason }, `${line.action === "renew" ? "would renew" : "nothing to do"}: ${line.message}`);
      for (const w of line.warnings) logger.warn({ stage: "plan", fqdn: t.fqdn }, w);
      out.push(line);
    } catch (err) {
      const e = isAmlcertError(err) ? err : atStage(err, "plan");
      logger.error({ stage: e.stage, fqdn: t.fqdn, err: e }, e.message);
      out.push({ fqdn: t.fqdn, action: "error", reason: e.code, message: e.message, warnings: [], error: { code: e.code, stage: e.stage, message: e.message }, exitCode: e.exitCode });
    }
  }
  return out;
}
