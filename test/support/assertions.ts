import type { OutcomeError, TargetOutcome } from "../../src/renewal/events.js";
import { expect } from "vitest";
import { AmlcertError } from "../../src/errors.js";

/** Await a promise that must reject with an AmlcertError, and return that error for further assertions. */
export async function amlcertFailure(p: Promise<unknown>): Promise<AmlcertError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AmlcertError);
  return err as AmlcertError;
}

/** A run that must have failed: its outcome's error (code, stage, message, exitCode). */
export async function failedRun(p: Promise<TargetOutcome>): Promise<OutcomeError> {
  const outcome = await p;
  expect(outcome.action).toBe("failed");
  expect(outcome.error).toBeDefined();
  return outcome.error!;
}
