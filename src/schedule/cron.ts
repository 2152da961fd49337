/**
 * Cron expressions, through node-cron (the only module that imports it): validation with a message naming what is
 * wrong, and the next matching time after a given instant (so the scheduler runs on an injected clock).
 *
 * node-cron's own timers (`schedule`, `task.start()`, `getNextRun()`) are NOT used: they read the real clock
 * (`new Date()`, `setTimeout`), which a daemon on an injected clock, and its tests, cannot steer. We only borrow
 * node-cron's parser (`parse`) and its matcher (`task.match(date)`, on a task that is never started, so it holds
 * no timer), and walk time ourselves.
 */
import { createTask, parse, validateDetailed, type ParsedFields, type ScheduledTask } from "node-cron";
import { AmlcertError } from "../errors.js";

/** undefined when `expression` is a valid cron expression, otherwise why not. */
export function cronProblem(expression: string): string | undefined {
  const v = validateDetailed(expression);
  if (v.valid) return undefined;
  return v.errors.map((e) => `${e.field}: ${e.message}`).join("; ") || "not a cron expression";
}

/** How far ahead `nextCronTime` looks before it gives up: an expression that matches less than once a year is a
 * mistake for a renewal schedule (and "0 0 30 2 *" never matches at all). */
export const CRON_SEARCH_HORIZON_MS = 366 * 24 * 60 * 60 * 1000;
/** A second bound on the walk itself, whatever the expression: every step moves at least one second, and a year
 * takes at most a few thousand steps (one per rejected day, hour and minute), so this is never reached by a
 * correct walk. */
const MAX_STEPS = 200_000;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/**
 * The first instant strictly after `after` that `expression` matches in `timezone` (an IANA name; default UTC).
 * Five-field expressions match on whole minutes, six-field ones (seconds first) on whole seconds.
 *
 * node-cron decides every match (`task.match`); the walk between candidates skips ahead using node-cron's parsed
 * fields, so a search costs a handful of steps rather than one per minute (or second) of the gap:
 *   - a month, day or hour that cannot match is skipped to the next local midnight or hour;
 *   - a minute or second that cannot match is skipped to the next allowed one;
 *   - when month, hour, minute and second all fit but node-cron still says no, the day (day of month or of week,
 *     `L`, `1#2`, ...) is what failed, so the walk moves to the next local midnight.
 * A skip is measured on the local clock; when the UTC offset changes inside a skip (daylight saving time), the
 * walk stops at the instant of the change instead and looks again from there, so no local time is ever skipped.
 *
 * Throws CONFIG_INVALID when nothing matches within CRON_SEARCH_HORIZON_MS.
 */
export function nextCronTime(expression: string, after: Date, timezone = "UTC"): Date {
  const { allowed, task } = compiled(expression, timezone);
  const parts = partsReader(timezone);
  const limit = after.getTime() + CRON_SEARCH_HORIZON_MS;
  let t = Math.floor(after.getTime() / SECOND) * SECOND + SECOND;
  for (let step = 0; step < MAX_STEPS && t <= limit; step++) {
    const p = parts(t);
    const toMidnight = (24 - p.hour) * HOUR - p.minute * MINUTE - p.second * SECOND;
    let skip: number;
    if (!allowed.month.has(p.month)) {
      skip = toMidnight;
    } else if (!allowed.hour.includes(p.hour)) {
      const h = allowed.hour.find((x) => x > p.hour);
      skip = h === undefined ? toMidnight : (h - p.hour) * HOUR - p.minute * MINUTE - p.second * SECOND;
    } else if (!allowed.minute.includes(p.minute)) {
      const m = allowed.minute.find((x) => x > p.minute);
      skip = m === undefined ? HOUR - p.minute * MINUTE - p.second * SECOND : (m - p.minute) * MINUTE - p.second * SECOND;
    } else if (!allowed.second.includes(p.second)) {
      const s = allowed.second.find((x) => x > p.second);
      skip = s === undefined ? MINUTE - p.second * SECOND : (s - p.second) * SECOND;
    } else if (task.match(new Date(t))) {
      return new Date(t);
    } else {
      skip = toMidnight;
    }
    t = stepWithinOffset(t, t + skip, parts);
  }
  throw new AmlcertError(
    "CONFIG_INVALID",
    "config",
    `the cron expression "${expression}" matches nothing in the ${CRON_SEARCH_HORIZON_MS / (24 * HOUR)} days after ${after.toISOString()} (timezone ${timezone})`,
    { details: { expression, timezone } },
  );
}

interface LocalParts {
  month: number;
  hour: number;
  minute: number;
  second: number;
  /** local wall-clock time read as if it were UTC, minus the instant: the UTC offset in ms */
  offset: number;
}

/** `to`, unless the UTC offset differs there: then the first whole second at which it changed (found by bisection;
 * every instant before it has the offset of `from`, so its local time lies inside the skipped local range). */
function stepWithinOffset(from: number, to: number, parts: (t: number) => LocalParts): number {
  const offset = parts(from).offset;
  if (parts(to).offset === offset) return to;
  let lo = from;
  let hi = to;
  while (hi - lo > SECOND) {
    const mid = lo + Math.floor((hi - lo) / (2 * SECOND)) * SECOND;
    if (parts(mid).offset === offset) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** Local date parts in `timezone`, read exactly as node-cron reads them (en-US, 24-hour clock, "24" is 0). */
function partsReader(timezone: string): (t: number) => LocalParts {
  if (timezone === "UTC") {
    return (t) => {
      const d = new Date(t);
      return { month: d.getUTCMonth() + 1, hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(), offset: 0 };
    };
  }
  const format = formatter(timezone);
  return (t) => {
    const raw: Record<string, string> = {};
    for (const part of format.formatToParts(new Date(t))) raw[part.type] = part.value;
    const num = (k: string) => Number.parseInt(raw[k] ?? "", 10);
    const hour = num("hour") === 24 ? 0 : num("hour");
    const [year, month, day, minute, second] = [num("year"), num("month"), num("day"), num("minute"), num("second")];
    return { month, hour, minute, second, offset: Date.UTC(year, month - 1, day, hour, minute, second) - Math.floor(t / SECOND) * SECOND };
  };
}

// Compiled expressions and formatters are kept (a daemon asks about one expression, every cycle). Bounded, and a
// task dropped from the cache is destroyed, which also removes it from node-cron's global task registry.
const MAX_CACHED = 8;
interface Compiled {
  /** node-cron's parsed fields that the walk skips by (ascending) */
  allowed: { month: Set<number>; hour: number[]; minute: number[]; second: number[] };
  task: ScheduledTask;
}
const tasks = new Map<string, Compiled>();
const formatters = new Map<string, Intl.DateTimeFormat>();

function compiled(expression: string, timezone: string): Compiled {
  const key = `${timezone}\u0000${expression}`;
  const hit = tasks.get(key);
  if (hit) return hit;
  const problem = cronProblem(expression);
  if (problem) throw new AmlcertError("CONFIG_INVALID", "config", `"${expression}" is not a cron expression (${problem})`);
  formatter(timezone); // an unknown timezone fails here, before a task is registered
  const fields: ParsedFields = parse(expression);
  const ascending = (v: number[]) => [...v].sort((a, b) => a - b);
  const allowed = { month: new Set(fields.month), hour: ascending(fields.hour), minute: ascending(fields.minute), second: ascending(fields.second) };
  // a task that is never started: node-cron's matcher, without its timers
  const task = createTask(expression, () => undefined, { timezone });
  if (tasks.size >= MAX_CACHED) {
    const [oldKey, old] = tasks.entries().next().value!;
    tasks.delete(oldKey);
    void old.task.destroy();
  }
  const entry = { allowed, task };
  tasks.set(key, entry);
  return entry;
}

function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone: timezone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hour12: false,
      });
    } catch (err) {
      throw new AmlcertError("CONFIG_INVALID", "config", `"${timezone}" is not a time zone (an IANA name such as "Europe/Berlin" or "UTC")`, { cause: err });
    }
    if (formatters.size >= MAX_CACHED) formatters.delete(formatters.keys().next().value!);
    formatters.set(timezone, f);
  }
  return f;
}

/** Whether `expression` matches the instant `at` in `timezone` (default UTC): node-cron's matcher, as is. */
export function cronMatches(expression: string, at: Date, timezone = "UTC"): boolean {
  return compiled(expression, timezone).task.match(at);
}
