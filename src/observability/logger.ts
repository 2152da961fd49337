/**
 * pino, configured so that key material, tokens and EAB secrets cannot reach a log: known fields are redacted by
 * path, and every logged string is scrubbed of PEM private keys and bearer/JWT tokens as a second line of defence.
 * Human-readable output on a TTY (pino-pretty), JSON lines otherwise. Logs go to stderr; results go to stdout.
 */
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import { AmlcertError } from "../errors.js";

export type { Logger };

/** The part of a pino logger that adapters need: easy to satisfy in tests, and a pino Logger fits. */
export interface LogSink {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

const REDACT_PATHS = [
  "keyPem",
  "*.keyPem",
  "privateKey",
  "*.privateKey",
  "accountKey",
  "*.accountKey",
  "hmacKey",
  "*.hmacKey",
  "eab.hmacKey",
  "token",
  "*.token",
  "accessToken",
  "*.accessToken",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "data['key.pem']",
  "*.data['key.pem']",
];

const PRIVATE_KEY_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
const JWT = /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\b(Bearer)\s+[A-Za-z0-9._~+/=-]{16,}/gi;

export function scrub(text: string): string {
  return text.replace(PRIVATE_KEY_PEM, "[REDACTED PRIVATE KEY]").replace(JWT, "[REDACTED TOKEN]").replace(BEARER, "$1 [REDACTED]");
}

function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return scrub(value);
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1));
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  if (value instanceof Error) return value; // the err serializer scrubs it (pino runs formatters.log first)
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubDeep(v, depth + 1);
  return out;
}

function jsonText(value: object): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Errors are logged as code, stage, message and the chain of causes' messages: never SDK request objects. */
export function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) {
    if (err !== null && typeof err === "object" && !Array.isArray(err)) {
      // Already serialized (a caller passed serializeError's result) or a thrown plain object: keep its fields,
      // scrubbed, instead of String() turning it into "[object Object]".
      const fields = scrubDeep(err) as Record<string, unknown>;
      return { ...fields, message: typeof fields.message === "string" ? fields.message : scrub(jsonText(err)) };
    }
    return { message: scrub(String(err)) };
  }
  const causes: string[] = [];
  let c: unknown = err.cause;
  for (let i = 0; c && i < 5; i++) {
    causes.push(scrub(c instanceof Error ? `${c.name}: ${c.message}` : String(c)));
    c = c instanceof Error ? c.cause : undefined;
  }
  const out: Record<string, unknown> = { type: err.name, message: scrub(err.message) };
  if (err instanceof AmlcertError) Object.assign(out, { code: err.code, stage: err.stage, details: scrubDeep(err.details) });
  if (causes.length > 0) out.causes = causes;
  if (!(err instanceof AmlcertError)) out.stack = scrub(err.stack ?? "");
  return out;
}

export interface LoggerOptions {
  level?: string;
  format?: "auto" | "json" | "pretty";
  /** where to write; default stderr */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const destination = opts.destination ?? process.stderr;
  const usePretty = opts.format === "pretty" || (opts.format !== "json" && Boolean(destination.isTTY));
  const options: pino.LoggerOptions = {
    level: opts.level ?? "info",
    base: { name: "amlcert" },
    redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
    serializers: { err: serializeError, error: serializeError },
    formatters: { log: (obj) => scrubDeep(obj) as Record<string, unknown> },
    hooks: {
      logMethod(args, method) {
        const scrubbed = args.map((a) => (typeof a === "string" ? scrub(a) : a)) as Parameters<typeof method>;
        method.apply(this, scrubbed);
      },
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (usePretty) {
    const stream = pretty({
      destination,
      colorize: Boolean(destination.isTTY),
      sync: true,
      ignore: "pid,hostname,name",
      translateTime: "HH:MM:ss",
      messageFormat: "{if stage}[{stage}] {end}{if fqdn}{fqdn}: {end}{msg}",
      singleLine: true,
    });
    return pino(options, stream);
  }
  // Synchronous writes to fd 2, so nothing is lost when the CLI exits right after a failure.
  if (destination === process.stderr) return pino(options, pino.destination({ dest: 2, sync: true }));
  return pino(options, destination as pino.DestinationStream);
}
