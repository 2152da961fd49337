/**
 * Reading the Prometheus text exposition format back in tests: samples keyed by their series exactly as written
 * (`name{label="value",...}`), plus the HELP and TYPE of each family.
 */
export interface Exposition {
  /** series -> value, e.g. `amlcert_runs_total{target="a.test",result="renewed"}` -> 1 */
  samples: Map<string, number>;
  types: Map<string, string>;
  helps: Map<string, string>;
}

export function parseExposition(text: string): Exposition {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? helps : types).set(meta[2]!, meta[3]!);
      continue;
    }
    if (line.startsWith("#")) continue;
    // the value is the last field; label values may hold spaces, so split at the last space outside braces
    const close = line.lastIndexOf("}");
    const rest = close >= 0 ? line.slice(close + 1).trim() : line.slice(line.indexOf(" ") + 1).trim();
    const series = close >= 0 ? line.slice(0, close + 1) : line.slice(0, line.indexOf(" "));
    const value = rest.split(" ")[0]!;
    samples.set(series, value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value));
  }
  return { samples, types, helps };
}

/** The series of one metric name (a histogram's _bucket/_sum/_count are names of their own). */
export function seriesOf(exp: Exposition, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [series, value] of exp.samples) {
    if (series === name || series.startsWith(`${name}{`)) out.set(series, value);
  }
  return out;
}
