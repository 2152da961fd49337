/**
 * Label and field selectors with the API server's grammar: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
 * `a`, `!a` (and `a>1`, `a<1`) for labels; `path=v`, `path==v`, `path!=v` for fields.
 */
import { statusErrors } from "./kube-status.js";
import { labelValueProblem, qualifiedNameProblem } from "./kube-validation.js";

type Op = "=" | "!=" | "in" | "notin" | "exists" | "!" | ">" | "<";

export interface Requirement {
  key: string;
  op: Op;
  values: string[];
}

export type Selector = (labels: Record<string, string>) => boolean;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;

function parseRequirement(term: string): Requirement {
  const t = term.trim();
  let m: RegExpMatchArray | null;
  if ((m = t.match(new RegExp(`^!\\s*(${KEY})$`)))) return { key: m[1]!, op: "!", values: [] };
  if ((m = t.match(new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\((.*)\\)$`)))) {
    const values = m[3]!.split(",").map((v) => v.trim());
    return { key: m[1]!, op: m[2] as Op, values };
  }
  if ((m = t.match(new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*([^=!<>\\s]*)$`)))) {
    return { key: m[1]!, op: m[2] === "!=" ? "!=" : "=", values: [m[3]!] };
  }
  if ((m = t.match(new RegExp(`^(${KEY})\\s*([<>])\\s*(-?\\d+)$`)))) return { key: m[1]!, op: m[2] as Op, values: [m[3]!] };
  if ((m = t.match(new RegExp(`^(${KEY})$`)))) return { key: m[1]!, op: "exists", values: [] };
  throw statusErrors.badRequest(`unable to parse requirement: found '${t}', expected: ',', '!=', '==', '=', 'in', 'notin'`);
}

export function parseLabelSelector(selector: string | null | undefined): Selector {
  if (!selector || selector.trim() === "") return () => true;
  const reqs = splitTopLevel(selector).map(parseRequirement);
  for (const r of reqs) {
    const keyProblem = qualifiedNameProblem(r.key);
    if (keyProblem) throw statusErrors.badRequest(`unable to parse requirement: key: Invalid value: "${r.key}": ${keyProblem}`);
    if (r.op === ">" || r.op === "<") continue;
    for (const v of r.values) {
      const p = labelValueProblem(v);
      if (p) throw statusErrors.badRequest(`unable to parse requirement: values[0][${r.key}]: Invalid value: "${v}": ${p}`);
    }
  }
  return (labels) => reqs.every((r) => matches(r, labels));
}

function matches(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const v = labels[r.key];
  switch (r.op) {
    case "=": return has && v === r.values[0];
    case "in": return has && r.values.includes(v!);
    case "!=": return !has || v !== r.values[0];
    case "notin": return !has || !r.values.includes(v!);
    case "exists": return has;
    case "!": return !has;
    case ">": return has && /^-?\d+$/.test(v!) && Number(v) > Number(r.values[0]);
    case "<": return has && /^-?\d+$/.test(v!) && Number(v) < Number(r.values[0]);
  }
}

/** `fields` are the selectable fields of the resource with their value for one object */
export type FieldSelector = (fields: Record<string, string>) => boolean;

export function parseFieldSelector(selector: string | null | undefined, supported: readonly string[]): FieldSelector {
  if (!selector || selector.trim() === "") return () => true;
  const reqs = selector.split(",").map((term) => {
    const m = term.trim().match(/^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw statusErrors.badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const field = m[1]!;
    if (!supported.includes(field)) throw statusErrors.badRequest(`field label not supported: ${field}`);
    return { field, negate: m[2] === "!=", value: m[3]!.trim() };
  });
  return (fields) => reqs.every((r) => ((fields[r.field] ?? "") === r.value) !== r.negate);
}
