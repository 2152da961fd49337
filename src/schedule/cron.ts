/**
 * Cron expressions, through node-cron (the only module that imports it): validation with a message naming what is
 * wrong, and the next matching time after a given instant (so the scheduler runs on an injected clock).
 */
import { validateDetailed } from "node-cron";

/** undefined when `expression` is a valid cron expression, otherwise why not. */
export function cronProblem(expression: string): string | undefined {
  const v = validateDetailed(expression);
  if (v.valid) return undefined;
  return v.errors.map((e) => `${e.field}: ${e.message}`).join("; ") || "not a cron expression";
}
