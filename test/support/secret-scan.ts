/**
 * The secret scan: every line a CLI child writes during the test suite is kept (the harness tees stdout and stderr
 * into the log directory) and, after the suite, searched for what must never reach a log: private keys (PEM blocks,
 * base64 DER keys, base64-wrapped PEM as in kubeconfig `client-key-data` or a Secret's `data`), bearer tokens and
 * JWTs, Azure client secrets, credential fields with a value (`"token": "..."`), and the exact secrets the harness
 * handed out (Kubernetes tokens, the workload-identity token, EAB HMAC keys), which it lists in the same directory.
 *
 * A finding names the file, the line and the kind, and shows only the first characters of what it found.
 */
import { createPrivateKey } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export type FindingKind = "pem-private-key" | "der-private-key" | "base64-pem-private-key" | "jwt" | "bearer-token" | "azure-client-secret" | "credential-field" | "known-secret";

export interface Finding {
  kind: FindingKind;
  /** the file it was found in (scanLogDir) */
  file?: string;
  /** 1-based line number in that file */
  line?: number;
  /** the first characters only, never the secret */
  excerpt: string;
}

/** Where CLI children's output is kept: $AMLCERT_TEST_LOG_DIR (scripts/test.sh sets it), else .cache/cli-logs. */
export function cliLogDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AMLCERT_TEST_LOG_DIR) return env.AMLCERT_TEST_LOG_DIR;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6 && !existsSync(join(dir, "package.json")); i++) dir = dirname(dir);
  return join(dir, ".cache/cli-logs");
}

const KNOWN_DIR = "known-secrets";
let counter = 0;
const runId = () => `${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

/**
 * Files for one CLI child's output: call stdout/stderr with each chunk as it arrives (synchronous appends, so the
 * output is on disk even when a test fails or is killed mid-run).
 */
export function teeCliOutput(args: string[], dir = cliLogDir()): { stdout(chunk: string): void; stderr(chunk: string): void } {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${runId()}-${(args[0] ?? "none").replace(/[^a-z0-9-]/gi, "_")}`);
  writeFileSync(`${base}.cmd`, `${args.join(" ")}\n`);
  return {
    stdout: (chunk) => appendFileSync(`${base}.stdout.log`, chunk),
    stderr: (chunk) => appendFileSync(`${base}.stderr.log`, chunk),
  };
}

/** Record secrets the harness handed out, so the scan looks for them verbatim. Values shorter than 8 characters are ignored. */
export function recordKnownSecrets(values: (string | undefined)[], dir = cliLogDir()): void {
  const list = values.filter((v): v is string => typeof v === "string" && v.length >= 8);
  if (list.length === 0) return;
  mkdirSync(join(dir, KNOWN_DIR), { recursive: true });
  writeFileSync(join(dir, KNOWN_DIR, `${runId()}.json`), JSON.stringify(list));
}

export function knownSecrets(dir = cliLogDir()): string[] {
  const d = join(dir, KNOWN_DIR);
  if (!existsSync(d)) return [];
  return [...new Set(readdirSync(d).flatMap((f) => JSON.parse(readFileSync(join(d, f), "utf8")) as string[]))];
}

const PEM_KEY = /-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----/g;
const JWT = /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g;
const BEARER = /\bBearer\s+(?!\[REDACTED)[A-Za-z0-9._~+/=-]{16,}/gi;
/** Entra client secrets: three characters, a digit, "Q~", then 31-34 more */
const AZURE_CLIENT_SECRET = /(?<![A-Za-z0-9_~.-])[A-Za-z0-9_.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])/g;
/** a credential-named field with a value that is not a redaction marker: 16+ token characters, a digit among them (not prose) */
const CREDENTIAL_FIELD = /["']?\b(token|access_token|refresh_token|password|client-key-data|client_secret|clientSecret|hmacKey|keyPem|privateKey)\b["']?\s*[:=]\s*["']?(?=[A-Za-z0-9+/=_.~-]*\d)([A-Za-z0-9+/=_.~-]{16,})/gi;
/** base64 text long enough to hold a key, possibly wrapped in lines */
const BASE64_RUN = /[A-Za-z0-9+/]{40,}={0,2}/g;
/** where a base64 DER key can start: SEQUENCE with a one- or two-byte length (MI, MH, MG, MC, ...) */
const DER_START = /M[A-Za-z0-9+/]{3}/g;
/** "-----BEGIN" in base64, at each of its three alignments */
const BASE64_PEM = /LS0tLS1CRUdJTi|0tLS0tQkVHSU4g|tLS0tLUJFR0lO/;

const excerpt = (s: string) => `${s.slice(0, 6)}... (${s.length} chars)`;

/** The DER key that starts at the beginning of `b64`, when there is one. */
function derKeyAt(b64: string): string | undefined {
  const buf = Buffer.from(b64, "base64");
  if (buf.length < 32 || buf[0] !== 0x30) return undefined;
  let len: number;
  let header: number;
  const first = buf[1]!;
  if (first < 0x80) [len, header] = [first, 2];
  else if (first === 0x81) [len, header] = [buf[2]!, 3];
  else if (first === 0x82) [len, header] = [(buf[2]! << 8) | buf[3]!, 4];
  else return undefined;
  const der = buf.subarray(0, header + len);
  if (der.length < header + len) return undefined;
  for (const type of ["pkcs8", "pkcs1", "sec1"] as const) {
    try {
      createPrivateKey({ key: der, format: "der", type });
      return b64.slice(0, Math.ceil(((header + len) * 4) / 3));
    } catch {
      // not this encoding
    }
  }
  return undefined;
}

/** Every string inside a JSON value (keys too), so that escaped newlines in a logged PEM become real ones. */
function jsonStrings(value: unknown, out: string[] = [], depth = 0): string[] {
  if (depth > 20) return out;
  if (typeof value === "string") out.push(value);
  else if (Array.isArray(value)) for (const v of value) jsonStrings(v, out, depth + 1);
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      jsonStrings(v, out, depth + 1);
      // a field named like a credential, with a value that is not redacted
      if (typeof v === "string" && /^(token|access_token|refresh_token|password|client-key-data|client_secret|clientSecret|hmacKey|keyPem|privateKey)$/i.test(k)) out.push(`${k}=${v}`);
    }
  }
  return out;
}

function scanOne(text: string, known: string[], findings: Finding[]): void {
  for (const m of text.matchAll(PEM_KEY)) findings.push({ kind: "pem-private-key", excerpt: m[0] });
  for (const m of text.matchAll(JWT)) findings.push({ kind: "jwt", excerpt: excerpt(m[0]) });
  for (const m of text.matchAll(BEARER)) findings.push({ kind: "bearer-token", excerpt: excerpt(m[0]) });
  for (const m of text.matchAll(AZURE_CLIENT_SECRET)) findings.push({ kind: "azure-client-secret", excerpt: excerpt(m[0]) });
  for (const m of text.matchAll(CREDENTIAL_FIELD)) findings.push({ kind: "credential-field", excerpt: `${m[1]}: ${excerpt(m[2]!)}` });
  for (const k of known) if (text.includes(k)) findings.push({ kind: "known-secret", excerpt: excerpt(k) });
  // base64: join lines (a PEM body, or one a logger wrapped), then look for DER keys and base64-wrapped PEM keys
  const joined = text.replace(/\\r|\\n|\r|\n/g, "");
  for (const m of joined.matchAll(BASE64_RUN)) {
    const run = m[0];
    for (const s of run.matchAll(DER_START)) {
      const key = derKeyAt(run.slice(s.index));
      if (key) {
        findings.push({ kind: "der-private-key", excerpt: excerpt(key) });
        break;
      }
    }
    const at = run.search(BASE64_PEM);
    if (at >= 0) {
      // try the three alignments a PEM's base64 can start at
      for (const start of [at, at - 1, at - 2, at - 3].filter((i) => i >= 0)) {
        if (/-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----/.test(Buffer.from(run.slice(start), "base64").toString("latin1"))) {
          findings.push({ kind: "base64-pem-private-key", excerpt: excerpt(run.slice(start)) });
          break;
        }
      }
    }
  }
}

/** Findings in one text (a log line, a whole file). A JSON line is also searched string by string. */
export function scanText(text: string, known: string[] = []): Finding[] {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  const push = (fs: Finding[]) => {
    for (const f of fs) {
      const key = `${f.kind}:${f.excerpt}`;
      if (!seen.has(key)) {
        seen.add(key);
        findings.push(f);
      }
    }
  };
  const found: Finding[] = [];
  scanOne(text, known, found);
  push(found);
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      const strings = jsonStrings(JSON.parse(trimmed));
      const inner: Finding[] = [];
      for (const s of strings) scanOne(s, known, inner);
      push(inner);
    } catch {
      // not JSON after all
    }
  }
  return findings;
}

/** Scan every kept log file, line by line (and each file whole, for a key split over lines). */
export function scanLogDir(dir = cliLogDir()): { files: number; lines: number; findings: Finding[] } {
  if (!existsSync(dir)) return { files: 0, lines: 0, findings: [] };
  const known = knownSecrets(dir);
  const files = readdirSync(dir).filter((f) => f.endsWith(".log")).sort();
  const findings: Finding[] = [];
  let lines = 0;
  for (const file of files) {
    const text = readFileSync(join(dir, file), "utf8");
    const perLine = text.split("\n");
    lines += perLine.length;
    const here = new Set<string>();
    perLine.forEach((l, i) => {
      for (const f of scanText(l, known)) {
        here.add(`${f.kind}:${f.excerpt}`);
        findings.push({ ...f, file, line: i + 1 });
      }
    });
    for (const f of scanText(text, known)) if (!here.has(`${f.kind}:${f.excerpt}`)) findings.push({ ...f, file });
  }
  return { files: files.length, lines, findings };
}

export function formatFindings(findings: Finding[]): string {
  return findings.map((f) => `${f.file ?? "(text)"}${f.line ? `:${f.line}` : ""}: ${f.kind}: ${f.excerpt}`).join("\n");
}
