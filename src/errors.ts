/**
 * One registry of stable error codes. Every failure amlcert reports carries a code (a metric label and a
 * grep-able identifier), the stage it happened in, and an exit code. Adapters throw AmlcertError with `cause`
 * set to the SDK error, so the chain is kept for debugging while the message stays human.
 */

/** Documented exit codes (README "Exit codes"). */
export const ExitCode = {
  /** everything renewed and verified, or nothing needed doing */
  Ok: 0,
  /** an unexpected internal error (a bug): please report it */
  Internal: 1,
  /** bad command line or configuration; nothing was contacted or written */
  Config: 2,
  /** renewal failed up to and including the extension update; the previous certificate is still in place */
  RenewalFailed: 3,
  /** the new certificate is stored and rolled out, but the DNS or TLS check after rollout failed */
  VerificationFailed: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Stable stage identifiers, in the order of a renewal. Used in logs, messages, metrics and alerts. */
export const Stages = [
  "config",
  "plan",
  "preflight",
  "acme-account",
  "dns-challenge",
  "propagation",
  "acme-order",
  "validate",
  "store",
  "extension",
  "verify-dns",
  "verify-tls",
  "prune",
] as const;
export type Stage = (typeof Stages)[number];

const stageExit: Record<Stage, ExitCode> = {
  config: ExitCode.Config,
  plan: ExitCode.RenewalFailed,
  preflight: ExitCode.RenewalFailed,
  "acme-account": ExitCode.RenewalFailed,
  "dns-challenge": ExitCode.RenewalFailed,
  propagation: ExitCode.RenewalFailed,
  "acme-order": ExitCode.RenewalFailed,
  validate: ExitCode.RenewalFailed,
  store: ExitCode.RenewalFailed,
  extension: ExitCode.RenewalFailed,
  "verify-dns": ExitCode.VerificationFailed,
  "verify-tls": ExitCode.VerificationFailed,
  prune: ExitCode.VerificationFailed,
};

export type ErrorCode =
  | "CONFIG_INVALID"
  | "AZURE_AUTH"
  | "AZURE_FORBIDDEN"
  | "AZURE_THROTTLED"
  | "AZURE_NOT_FOUND"
  | "AZURE_CONFLICT"
  | "AZURE_ERROR"
  | "DNS_PROPAGATION_TIMEOUT"
  | "DNS_CNAME_UNRESOLVED"
  | "ACME_ACCOUNT"
  | "ACME_REJECTED"
  | "ACME_ERROR"
  /** the CA answered 429 with a Retry-After longer than the run may wait; details.retryAt says when to try again */
  | "ACME_RATE_LIMITED"
  | "CERT_INVALID"
  | "CERT_NOT_NEWER"
  | "KUBE_FORBIDDEN"
  | "KUBE_CONFLICT"
  | "KUBE_NOT_FOUND"
  | "KUBE_ERROR"
  | "EXTENSION_WRONG_TYPE"
  | "EXTENSION_INSECURE"
  | "EXTENSION_LRO_FAILED"
  | "EXTENSION_TIMEOUT"
  | "DNS_MISMATCH"
  | "TLS_OLD_CERT_SERVED"
  | "TLS_PROBE_FAILED"
  | "INTERNAL";

export class AmlcertError extends Error {
  override readonly name = "AmlcertError";
  readonly code: ErrorCode;
  readonly stage: Stage;
  readonly exitCode: ExitCode;
  /** extra structured facts for the log (never key material) */
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    stage: Stage,
    message: string,
    opts: { cause?: unknown; details?: Record<string, unknown>; exitCode?: ExitCode } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.stage = stage;
    this.exitCode = opts.exitCode ?? (code === "CONFIG_INVALID" ? ExitCode.Config : stageExit[stage]);
    this.details = opts.details ?? {};
  }
}

/** A copy of `err` attributed to `stage` (adapters do not always know which stage calls them). */
export function atStage(err: unknown, stage: Stage): AmlcertError {
  if (err instanceof AmlcertError) {
    if (err.stage === stage) return err;
    return new AmlcertError(err.code, stage, err.message, { cause: err.cause, details: err.details });
  }
  // Not one of ours. A programming error (TypeError and kin) is a bug: exit 1, "please report". Anything else an
  // adapter let through (a socket hang up) failed the stage like any other error of that stage.
  const message = err instanceof Error ? err.message : String(err);
  return new AmlcertError("INTERNAL", stage, message, { cause: err, ...(isBug(err) ? { exitCode: ExitCode.Internal } : {}) });
}

/** Errors that only a defect in amlcert's own code (or a library it calls wrongly) produces. */
export function isBug(err: unknown): boolean {
  return err instanceof TypeError || err instanceof ReferenceError || err instanceof RangeError || err instanceof SyntaxError;
}

export function isAmlcertError(err: unknown): err is AmlcertError {
  return err instanceof AmlcertError;
}
