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
