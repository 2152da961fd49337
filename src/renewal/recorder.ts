/**
 * One run's voice: every step reports through here, as typed events (./events.ts) to the subscribers, and the run's
 * outcome is a fold over those same events, so what the CLI prints, what the metrics count and what the history
 * keeps can never disagree, and nothing is filled in as the flow goes.
 */
import { AmlcertError, atStage, type Stage } from "../errors.js";
import type { CertificateInfo } from "../certs/certificate.js";
import type { Clock } from "../ports.js";
import type { Logger } from "../observability/logger.js";
import { createEventBus, type CertificateFacts, type EventSink, type OutcomeError, type RenewalEvent, type RunAction, type TargetOutcome } from "./events.js";
import { renewalTimeOf, type PlanDecision } from "./plan.js";

/** Omit the envelope (type-specific fields only) from each member of the union. */
type Body<T extends RenewalEvent["type"]> = Omit<Extract<RenewalEvent, { type: T }>, "type" | "fqdn" | "at">;

export function certificateFacts(leaf: CertificateInfo, renewBeforeMs?: number): CertificateFacts {
  const due = renewalTimeOf(leaf, renewBeforeMs);
  return {
    serial: leaf.serialNumber,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    renewAt: due.at.toISOString(),
    renewAtSource: due.source,
  };
}

/** Any thrown value as the outcome's error: amlcert's own errors keep their code; anything else is an internal error (exit 1). */
export function outcomeError(err: unknown, stage: Stage): OutcomeError {
  const e = err instanceof AmlcertError ? err : atStage(err, stage);
  const retryAt = e.details?.retryAt;
  const valid = typeof retryAt === "string" && !Number.isNaN(Date.parse(retryAt));
  return { code: e.code, stage: e.stage, message: e.message, exitCode: e.exitCode, ...(valid ? { retryAt: new Date(retryAt).toISOString() } : {}) };
}

/** The outcome of a run, from its events alone. */
export function foldOutcome(fqdn: string, events: RenewalEvent[], action: RunAction, durationMs: number, error?: OutcomeError, skippedBecause = "LockHeld"): TargetOutcome {
  const last = <T extends RenewalEvent["type"]>(type: T) => events.filter((e): e is Extract<RenewalEvent, { type: T }> => e.type === type).at(-1);
  const planned = last("planned");
  const stored = last("stored");
  const verified = last("verified");
  const dns = last("dns-checked");
  // in place after the run: what this run rolled out, else what it planned on
  const rolledOutNew = stored !== undefined && events.some((e) => e.type === "rolled-out" && e.secret === stored.secret);
  const cert = rolledOutNew ? stored.certificate : planned?.current;
  const secret = rolledOutNew ? stored.secret : planned?.secret;
  return {
    fqdn,
    action,
    reason: action === "skipped" ? skippedBecause : (planned?.reason ?? error?.code ?? ""),
    ...(cert ? { serial: cert.serial, notBefore: cert.notBefore, notAfter: cert.notAfter, renewAt: cert.renewAt, ...(cert.renewAtSource ? { renewAtSource: cert.renewAtSource } : {}) } : {}),
    ...(secret ? { secret } : {}),
    ...(stored ? { storedSecret: stored.secret } : {}),
    extensionUpdated: events.some((e) => e.type === "rolled-out" && e.changed),
    dnsOk: verified?.dnsOk ?? dns?.ok ?? false,
    servingOk: verified?.servingOk ?? false,
    durationMs,
    ...(error ? { error } : {}),
  };
}

export class RunRecorder {
  private readonly events: RenewalEvent[] = [];
  private readonly started: number;
  private readonly bus;
  /** the stage running now, to attribute an unexpected error */
  private current: Stage = "plan";

  constructor(
    readonly fqdn: string,
    private readonly clock: Clock,
    sinks: EventSink[],
    private readonly logger: Logger,
  ) {
    this.bus = createEventBus(sinks, (err, e) => logger.warn({ fqdn, event: e.type, err }, "an event subscriber failed"));
    this.started = clock.now().getTime();
    this.emit("run-started", {});
  }

  emit<T extends RenewalEvent["type"]>(type: T, body: Body<T>): void {
    const event = { type, fqdn: this.fqdn, at: this.clock.now(), ...body } as unknown as RenewalEvent;
    this.events.push(event);
    this.bus.emit(event);
  }

  /**
   * Run one step as `stage`: timed, reported, and its error attributed to the stage. With `keepStage`, an amlcert
   * error keeps the stage its adapter named (ACME knows account, challenge and propagation apart).
   */
  async stage<T>(stage: Stage, step: () => Promise<T>, opts: { keepStage?: boolean } = {}): Promise<T> {
    const t0 = this.clock.now().getTime();
    this.current = stage;
    this.emit("stage-started", { stage });
    const done = (ok: boolean) => this.emit("stage-finished", { stage, ok, durationMs: this.clock.now().getTime() - t0 });
    try {
      const value = await step();
      done(true);
      return value;
    } catch (err) {
      done(false);
      throw opts.keepStage && err instanceof AmlcertError ? err : atStage(err, stage);
    }
  }

  planned(decision: PlanDecision, secret: string | undefined, renewBeforeMs?: number): void {
    const current = decision.current ? certificateFacts(decision.current, renewBeforeMs) : undefined;
    if (current && decision.renewAt) current.renewAt = decision.renewAt.toISOString();
    if (current && decision.renewAtSource) current.renewAtSource = decision.renewAtSource;
    this.emit("planned", { renew: decision.renew, reason: decision.reason, message: decision.message, ...(secret ? { secret } : {}), ...(current ? { current } : {}) });
  }

  private async finish(action: RunAction, error?: OutcomeError, skippedBecause?: string): Promise<TargetOutcome> {
    const outcome = foldOutcome(this.fqdn, this.events, action, this.clock.now().getTime() - this.started, error, skippedBecause);
    this.emit("run-finished", { outcome });
    await this.bus.flush();
    return outcome;
  }

  /** LockHeld: another run holds the Lease. Stopped: this process is stopping (SIGTERM); nothing was concluded.
   * RateLimited: a CA said not before a time that has not come (the history's retryNotBefore); nothing was ordered. */
  skipped(because: "LockHeld" | "Stopped" | "RateLimited" | "ExtensionBusy" = "LockHeld"): Promise<TargetOutcome> {
    if (because === "RateLimited") this.logger.warn({ fqdn: this.fqdn, stage: "preflight" }, "skipped: a rate limit says not to order before the time recorded in the history (--force orders anyway)");
    if (because === "Stopped") this.logger.warn({ fqdn: this.fqdn, stage: this.current }, `stopped during ${this.current}; the next run starts over`);
    return this.finish("skipped", undefined, because);
  }

  succeeded(renewed: boolean): Promise<TargetOutcome> {
    return this.finish(renewed ? "renewed" : "none");
  }

  /** A run that ended by an error: stopped (SIGTERM, daemon stop) when `stop` aborted, failed otherwise. A stop is not
   * a failed renewal: the history's failure count and the alerts must not move. */
  interrupted(err: unknown, stop?: AbortSignal): Promise<TargetOutcome> {
    return stop?.aborted ? this.skipped("Stopped") : this.failed(err);
  }

  /** The error is logged here with its cause chain; the outcome carries its code, stage and message only. */
  failed(err: unknown): Promise<TargetOutcome> {
    const error = outcomeError(err, this.current);
    const logged = err instanceof AmlcertError ? err : atStage(err, this.current);
    if (error.exitCode === 1) this.logger.fatal({ fqdn: this.fqdn, stage: error.stage, err: logged }, `internal error at ${error.stage}: ${error.message} (please report this)`);
    else this.logger.error({ fqdn: this.fqdn, stage: error.stage, code: error.code, err: logged }, `${error.stage} failed: ${error.message}`);
    return this.finish("failed", error);
  }
}

