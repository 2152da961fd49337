/** The log as a subscriber: one line when a target's run starts planning, one with its outcome when it ends. */
import type { Logger } from "./logger.js";
import type { EventSink } from "../renewal/events.js";

const SUMMARY = { renewed: "renewed, rolled out and verified", none: "nothing to do", skipped: "skipped", failed: "failed" } as const;

export function runLogSink(logger: Logger): EventSink {
  return (e) => {
    const log = logger.child({ fqdn: e.fqdn });
    switch (e.type) {
      case "planned":
        log.info({ stage: "plan", reason: e.reason, renewAt: e.current?.renewAt }, e.renew ? `renewal needed: ${e.message}` : `nothing to do: ${e.message}`);
        break;
      case "run-finished": {
        const { outcome } = e;
        // a failure was logged with its cause where it happened (src/renewal/recorder.ts)
        if (outcome.error) log.info({ result: outcome }, SUMMARY.failed);
        else if (outcome.action === "skipped") log.warn({ stage: "preflight", result: outcome }, "another amlcert run holds the lease on this cluster; skipping this target");
        else log.info({ result: outcome }, SUMMARY[outcome.action]);
        break;
      }
      default:
        break;
    }
  };
}
