/**
 * With several targets the CLI exits with the worst of their exit codes. README "Exit codes": 1 (a bug) outranks
 * 2 (configuration), which outranks 3 (renewal failed, the old certificate still served), which outranks 4 (the new
 * certificate is out but a check afterwards failed), which outranks 0.
 */
import { describe, expect, it } from "vitest";
import { worstExitCode } from "../../src/app/run.js";
import { ExitCode } from "../../src/errors.js";

describe("worstExitCode", () => {
  it("when there are no targets' codes, is 0", () => {
    expect(worstExitCode([])).toBe(0);
  });

  it("when every target succeeded, is 0", () => {
    expect(worstExitCode([0, 0, 0])).toBe(0);
  });

  it("when one target failed to renew and another failed its check after rollout, is 3 in either order (3 outranks 4)", () => {
    expect(worstExitCode([ExitCode.VerificationFailed, ExitCode.RenewalFailed])).toBe(3);
    expect(worstExitCode([ExitCode.RenewalFailed, ExitCode.VerificationFailed])).toBe(3);
    expect(worstExitCode([0, 4, 0, 3, 4])).toBe(3);
  });

  it("when the only failure is a check after rollout, is 4, not 0", () => {
    expect(worstExitCode([0, 4])).toBe(4);
    expect(worstExitCode([4, 0])).toBe(4);
  });

  it("a configuration problem outranks a failed renewal, and an internal error outranks everything", () => {
    expect(worstExitCode([3, 2, 4])).toBe(2);
    expect(worstExitCode([2, 3])).toBe(2);
    expect(worstExitCode([2, 1, 3])).toBe(1);
    expect(worstExitCode([1, 2])).toBe(1);
    expect(worstExitCode([4, 3, 2, 1, 0])).toBe(1);
  });

  it("each code alone is itself", () => {
    for (const code of [0, 1, 2, 3, 4]) expect(worstExitCode([code])).toBe(code);
  });
});
