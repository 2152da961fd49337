/**
 * Small helpers for the tests of the shipped PromQL (deploy/prometheus/ rules, deploy/grafana/ dashboard): which
 * metric names an expression reads, the Grafana variables a dashboard expression uses (expanded to sample values
 * so a real Prometheus can parse it), and every query of a dashboard.
 */

/** PromQL's aggregation operators and keywords: identifiers that are not metric names. */
const NOT_METRICS = new Set([
  "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
  "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "atan2",
  "inf", "nan", "start", "end",
]);

/**
 * The metric names an expression selects, sorted and unique. A small lexer, enough for the expressions we ship:
 * strings, comments, label matchers `{...}`, ranges `[...]` and grouping lists `by (...)` are removed first; an
 * identifier followed by `(` is a function or an aggregation; numbers and durations are not identifiers.
 */
export function metricNamesIn(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/#[^\n]*/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " $1 ");
  s = s.replace(/""/g, " ");
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()/g)) {
    const id = m[1]!;
    if (!NOT_METRICS.has(id)) names.add(id);
  }
  return [...names].sort();
}

/**
 * Sample values for the Grafana variables the dashboard uses, so its expressions can be parsed by Prometheus.
 * Multi-value variables with "All" expand to a regex; interval variables to durations.
 */
export const GRAFANA_SAMPLE_VALUES: Readonly<Record<string, string>> = {
  job: ".+",
  target: ".+",
  window: "1d",
  __interval: "1m",
  __rate_interval: "2m",
  __range: "1d",
};

/** `expr` with `$var` and `${var}` replaced by GRAFANA_SAMPLE_VALUES; throws on a variable it does not know. */
export function expandGrafanaVariables(expr: string): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    const v = GRAFANA_SAMPLE_VALUES[name];
    if (v === undefined) throw new Error(`unknown Grafana variable ${whole} in ${expr}`);
    return v;
  });
}

export interface DashboardPanel {
  id?: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: { refId: string; expr?: string; datasource?: { type?: string; uid?: string }; instant?: boolean; format?: string; legendFormat?: string }[];
  panels?: DashboardPanel[];
  [k: string]: unknown;
}

export interface TemplateVariable {
  name: string;
  type: string;
  query?: string | { query: string };
  datasource?: { type?: string; uid?: string };
  [k: string]: unknown;
}

export interface Dashboard {
  title: string;
  uid: string;
  panels: DashboardPanel[];
  templating: { list: TemplateVariable[] };
  [k: string]: unknown;
}

/** Every panel, rows' nested panels included, in order. */
export function allPanels(d: Dashboard): DashboardPanel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

export interface PanelQuery {
  panel: string;
  refId: string;
  expr: string;
}

/** Every PromQL expression of the dashboard's panels. */
export function dashboardQueries(d: Dashboard): PanelQuery[] {
  return allPanels(d).flatMap((p) => (p.targets ?? []).filter((t) => t.expr !== undefined).map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr! })));
}

/** The series selector inside each query variable's `label_values(<selector>, <label>)`. */
export function variableSelectors(d: Dashboard): { variable: string; selector: string }[] {
  return d.templating.list
    .filter((v) => v.type === "query")
    .map((v) => {
      const q = typeof v.query === "string" ? v.query : v.query?.query ?? "";
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
      if (!m) throw new Error(`variable ${v.name}: "${q}" is not label_values(<selector>, <label>)`);
      return { variable: v.name, selector: m[1]! };
    });
}
