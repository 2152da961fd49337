/**
 * Load the configuration: YAML file, then environment overrides (with X_FILE indirection), then one validation
 * that reports every problem at once, each naming its field (and the variable it came from).
 */
import { readFileSync } from "node:fs";
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { AmlcertError } from "../errors.js";
import { configSchema, type Config } from "./schema.js";
import { fields, type Field } from "./fields.js";

export type Env = Record<string, string | undefined>;

export interface LoadedConfig {
  config: Config;
  /** the EAB HMAC key, read from its file or variable; kept out of `config` so that config can be printed */
  eabHmacKey?: string;
  /** where each overridden field came from, for messages */
  sources: Record<string, string>;
}

export class ConfigError extends AmlcertError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super("CONFIG_INVALID", "config", `invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

type ReadFile = (path: string) => string;
const defaultReadFile: ReadFile = (p) => readFileSync(p, "utf8");

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

function getPath(obj: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), obj);
}

function coerce(field: Field, raw: string): unknown {
  switch (field.kind) {
    case "number":
      return /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : raw;
    case "boolean":
      return raw === "true" ? true : raw === "false" ? false : raw;
    case "list":
      return raw.split(",").map((s) => s.trim()).filter(Boolean);
    default:
      return raw.trim();
  }
}

/** Read variable `name`, or the file named by `name_FILE`. Problems are pushed, not thrown. */
function readEnv(env: Env, name: string, readFile: ReadFile, problems: string[]): string | undefined {
  const file = env[`${name}_FILE`];
  if (file !== undefined && file !== "") {
    try {
      return readFile(file).trim();
    } catch (err) {
      problems.push(`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return undefined;
    }
  }
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * Anchors and aliases are ordinary YAML (one zone reference used by every target), but an alias expands to a copy of
 * its anchor's value, and aliases of aliases grow exponentially (the "billion laughs"). yaml's own guard counts
 * alias uses (100), which refuses a legitimate file with many targets. Instead, count the values the document would
 * expand to, in one pass in document order (an alias means the latest anchor of its name before it, as YAML says),
 * and refuse a document beyond MAX_EXPANDED_VALUES, or an alias inside the value it names (a cycle).
 */
export const MAX_EXPANDED_VALUES = 100_000;

function aliasProblem(doc: Document): string | undefined {
  const anchored = new Map<string, { size?: number }>();
  let problem: string | undefined;
  const sizeOf = (node: unknown): number => {
    if (problem !== undefined || node === null || node === undefined) return 0;
    if (isAlias(node)) {
      const target = anchored.get(node.source);
      if (target === undefined) {
        problem = `the alias *${node.source} names no anchor defined before it`;
        return 0;
      }
      if (target.size === undefined) {
        problem = `the alias *${node.source} is inside the value anchored &${node.source} (a cycle)`;
        return 0;
      }
      return target.size;
    }
    const anchor = (node as { anchor?: string }).anchor;
    const entry: { size?: number } = {};
    if (anchor) anchored.set(anchor, entry);
    let size = 1;
    if (isMap(node) || isSeq(node)) for (const item of node.items) size += sizeOf(item);
    else if (isPair(node)) size = sizeOf(node.key) + sizeOf(node.value);
    else if (!isScalar(node)) size = 1;
    if (size > MAX_EXPANDED_VALUES && problem === undefined) {
      problem = `its aliases expand to more than ${MAX_EXPANDED_VALUES} values; this looks like an alias bomb, not a configuration`;
    }
    entry.size = size;
    return size;
  };
  sizeOf(doc.contents);
  return problem;
}

function formatIssue(issue: z.core.$ZodIssue, sources: Record<string, string>): string {
  const path = issue.path
    .map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`))
    .join("");
  const from = sources[path] ? ` (from ${sources[path]})` : "";
  let message = issue.message;
  if (issue.code === "invalid_type" && /received undefined/.test(message)) message = "is required";
  if (issue.code === "unrecognized_keys") message = `unknown setting(s) ${issue.keys.join(", ")}`;
  return `${path || "(top level)"}${from}: ${message}`;
}

export function loadConfig(opts: { path?: string; env: Env; readFile?: ReadFile }): LoadedConfig {
  const readFile = opts.readFile ?? defaultReadFile;
  const problems: string[] = [];
  const sources: Record<string, string> = {};
  let raw: Record<string, unknown> = {};

  const path = opts.path ?? opts.env.AMLCERT_CONFIG;
  if (path) {
    let text: string | undefined;
    try {
      text = readFile(path);
    } catch (err) {
      problems.push(`config file ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (text !== undefined) {
      // merge keys (`<<: *defaults`) as YAML 1.1 and Kubernetes manifests use them
      const doc = parseDocument(text, { uniqueKeys: true, merge: true });
      const bomb = doc.errors.length > 0 ? undefined : aliasProblem(doc);
      if (doc.errors.length > 0) {
        for (const e of doc.errors) problems.push(`config file ${path}: ${e.message.split("\n")[0]}`);
      } else if (bomb !== undefined) {
        problems.push(`config file ${path}: ${bomb}`);
      } else {
        // expanded once into plain data (bounded above), so no two settings share an object that a variable could change
        const js = JSON.parse(JSON.stringify(doc.toJS({ maxAliasCount: -1 }) ?? null)) as unknown;
        if (js !== null && js !== undefined && (typeof js !== "object" || Array.isArray(js))) {
          problems.push(`config file ${path}: must be a YAML mapping with acme, azure, dns, ... and targets`);
        } else raw = (js as Record<string, unknown>) ?? {};
      }
    }
  }

  for (const field of fields) {
    const v = readEnv(opts.env, field.env, readFile, problems);
    if (v === undefined) continue;
    setPath(raw, field.path, coerce(field, v));
    sources[field.path] = field.env;
  }

  // The EAB HMAC key is a secret: read it from hmacKeyFile here and keep it out of the validated, printable config.
  let eabHmacKey = getPath(raw, "acme.eab.hmacKey") as string | undefined;
  const hmacKeyFile = getPath(raw, "acme.eab.hmacKeyFile") as string | undefined;
  if (!eabHmacKey && typeof hmacKeyFile === "string") {
    try {
      eabHmacKey = readFile(hmacKeyFile).trim();
      if (!eabHmacKey) problems.push(`acme.eab.hmacKeyFile: ${hmacKeyFile} is empty`);
    } catch (err) {
      problems.push(`acme.eab.hmacKeyFile: cannot read ${hmacKeyFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) problems.push(...parsed.error.issues.map((i) => formatIssue(i, sources)));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);

  const config = parsed.data;
  if (config.acme.eab) delete config.acme.eab.hmacKey;
  return { config, eabHmacKey, sources };
}
