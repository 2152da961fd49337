/**
 * The API server's validation of names, labels, annotations and the fields amlcert writes (Secret data, Lease
 * MicroTime, Event references), with the real messages (k8s.io/apimachinery/pkg/util/validation).
 */
import type { StatusCause } from "./kube-status.js";
import { statusErrors } from "./kube-status.js";

const DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE = `(${QUALIFIED_NAME})?`;
const CONFIG_KEY = "[-._a-zA-Z0-9]+";

const full = (re: string) => new RegExp(`^(?:${re})$`);

export function dns1123SubdomainProblem(name: string): string | undefined {
  if (name.length > 253) return "must be no more than 253 characters";
  if (!full(DNS1123_SUBDOMAIN).test(name)) {
    return `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${DNS1123_SUBDOMAIN}')`;
  }
  return undefined;
}

/** label and annotation keys: optional DNS subdomain prefix, '/', name of at most 63 characters */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split("/");
  let name = key;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (prefix.length === 0) return "prefix part must be non-empty";
    const p = dns1123SubdomainProblem(prefix);
    if (p) return `prefix part ${p}`;
  } else if (parts.length > 2) {
    return `a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`;
  }
  if (name.length === 0) return "name part must be non-empty";
  if (name.length > 63) return "name part must be no more than 63 characters";
  if (!full(QUALIFIED_NAME).test(name)) {
    return `name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED_NAME}')`;
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return "must be no more than 63 characters";
  if (!full(LABEL_VALUE).test(value)) {
    return `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '${LABEL_VALUE}')`;
  }
  return undefined;
}

const invalid = (field: string, value: unknown, detail: string): StatusCause => ({
  reason: "FieldValueInvalid",
  message: `Invalid value: ${JSON.stringify(value)}: ${detail}`,
  field,
});

export const causes = {
  invalid,
  required: (field: string, detail = ""): StatusCause => ({
    reason: "FieldValueRequired",
    message: detail ? `Required value: ${detail}` : "Required value",
    field,
  }),
  forbidden: (field: string, detail: string): StatusCause => ({ reason: "FieldValueForbidden", message: `Forbidden: ${detail}`, field }),
  tooLong: (field: string, max: number): StatusCause => ({
    reason: "FieldValueTooLong",
    message: `Too long: must have at most ${max} bytes`,
    field,
  }),
  immutable: (field: string, value: unknown): StatusCause => invalid(field, value, "field is immutable"),
};

export interface MetaLike {
  name?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** metadata.name, labels and annotations; returns every problem (the server reports them all at once) */
export function validateObjectMeta(meta: MetaLike): StatusCause[] {
  const out: StatusCause[] = [];
  const name = meta.name ?? "";
  if (name === "") out.push(causes.required("metadata.name", "name or generateName is required"));
  else {
    const p = dns1123SubdomainProblem(name);
    if (p) out.push(invalid("metadata.name", name, p));
  }
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    const kp = qualifiedNameProblem(k);
    if (kp) out.push(invalid("metadata.labels", k, kp));
    if (typeof v !== "string") out.push(invalid(`metadata.labels`, v, "must be a string"));
    else {
      const vp = labelValueProblem(v);
      if (vp) out.push(invalid("metadata.labels", v, vp));
    }
  }
  let annotationBytes = 0;
  for (const [k, v] of Object.entries(meta.annotations ?? {})) {
    const kp = qualifiedNameProblem(k.toLowerCase());
    if (kp) out.push(invalid("metadata.annotations", k, kp));
    annotationBytes += k.length + (typeof v === "string" ? v.length : 0);
  }
  if (annotationBytes > 256 * 1024) out.push(causes.tooLong("metadata.annotations", 256 * 1024));
  return out;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decode a []byte JSON field as Go's encoding/json does (standard base64, padded); 400 like the decoder otherwise. */
export function decodeBase64Strict(kind: string, value: unknown): Buffer {
  if (typeof value !== "string") {
    throw statusErrors.badRequest(`${kind} in version "v1" cannot be handled as a ${kind}: json: cannot unmarshal ${typeof value} into Go struct field ${kind}.data of type []uint8`);
  }
  const s = value.replace(/[\r\n]/g, "");
  if (!BASE64.test(s)) {
    const bad = s.search(/[^A-Za-z0-9+/=]/);
    const at = bad >= 0 ? bad : Math.floor(s.length / 4) * 4;
    throw statusErrors.badRequest(`${kind} in version "v1" cannot be handled as a ${kind}: illegal base64 data at input byte ${at}`);
  }
  return Buffer.from(s, "base64");
}

export function configKeyProblem(key: string): string | undefined {
  if (key.length > 253) return "must be no more than 253 characters";
  if (!full(CONFIG_KEY).test(key)) {
    return `a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '${CONFIG_KEY}')`;
  }
  if (key === "." || key === "..") return `must not be '${key}'`;
  if (key.startsWith("..")) return "must not start with '..'";
  return undefined;
}

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** metav1.MicroTime: Go parses it with layout RFC3339Micro, which wants exactly six fractional digits. */
export function checkMicroTime(kind: string, value: unknown): void {
  if (value === undefined || value === null) return;
  if (typeof value !== "string" || !MICRO_TIME.test(value)) {
    const s = String(value);
    const frac = s.match(/:\d{2}(\.\d*)?(Z|[+-].*)?$/);
    const elem = frac ? s.slice(s.length - frac[0].length + 3) : s;
    throw statusErrors.badRequest(
      `${kind} in version "v1" cannot be handled as a ${kind}: parsing time "${s}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "${elem}" as ".000000"`,
    );
  }
}

/** metav1.Time: RFC 3339; the server keeps whole seconds. Returns the normalized value. */
export function normalizeTime(kind: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !RFC3339.test(value)) {
    throw statusErrors.badRequest(`${kind} in version "v1" cannot be handled as a ${kind}: parsing time "${String(value)}" as "2006-01-02T15:04:05Z07:00": cannot parse "${String(value)}" as "2006"`);
  }
  return rfc3339Seconds(new Date(value));
}

export function rfc3339Seconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
