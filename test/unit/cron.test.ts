import { describe, expect, it } from "vitest";
import { AmlcertError } from "../../src/errors.js";
import { cronMatches, cronProblem, nextCronTime } from "../../src/schedule/cron.js";

const next = (expression: string, after: string, timezone?: string) => nextCronTime(expression, new Date(after), timezone).toISOString();

/** The reference: node-cron's matcher asked about every whole minute (or second) of a window, in turn. */
function allMatches(expression: string, from: Date, timezone: string, stepMs: number, steps: number): Date[] {
  const out: Date[] = [];
  const first = Math.floor(from.getTime() / stepMs) * stepMs + stepMs;
  for (let i = 0; i < steps; i++) {
    const t = new Date(first + i * stepMs);
    if (cronMatches(expression, t, timezone)) out.push(t);
  }
  return out;
}

/** The first `expected.length` times nextCronTime finds, each from the one before, starting at `from`. */
function chain(expression: string, from: Date, timezone: string, expected: Date[]): string[] {
  const found: string[] = [];
  let after = from;
  for (let i = 0; i < expected.length; i++) {
    after = nextCronTime(expression, after, timezone);
    found.push(after.toISOString());
  }
  return found;
}

describe("nextCronTime", () => {
  it("when the default schedule is asked at a slot, answers the next slot (strictly after), in UTC", () => {
    expect(next("0 */6 * * *", "2026-05-01T12:00:00.000Z")).toBe("2026-05-01T18:00:00.000Z");
    expect(next("0 */6 * * *", "2026-05-01T11:59:59.999Z")).toBe("2026-05-01T12:00:00.000Z");
    expect(next("0 */6 * * *", "2026-05-01T18:00:00.001Z")).toBe("2026-05-02T00:00:00.000Z");
  });

  it("when the expression has six fields, matches on seconds", () => {
    expect(next("*/10 * * * * *", "2026-05-01T12:00:05Z")).toBe("2026-05-01T12:00:10.000Z");
    expect(next("30 0 12 * * *", "2026-05-01T12:00:30Z")).toBe("2026-05-02T12:00:30.000Z");
  });

  it("when a day of the week, a last day of month or a month is given, skips to the first day that fits", () => {
    expect(next("0 9 * * 1", "2026-05-01T12:00:00Z")).toBe("2026-05-04T09:00:00.000Z"); // 1 May 2026 is a Friday
    expect(next("0 0 L * *", "2026-02-10T00:00:00Z")).toBe("2026-02-28T00:00:00.000Z");
    expect(next("0 0 1 1 *", "2026-05-01T00:00:00Z")).toBe("2027-01-01T00:00:00.000Z");
    expect(next("@daily", "2026-05-01T00:00:00Z")).toBe("2026-05-02T00:00:00.000Z");
  });

  it("when a time zone is given, matches its wall clock, including half-hour offsets", () => {
    expect(next("0 0 * * *", "2026-05-01T00:00:00Z", "Asia/Kolkata")).toBe("2026-05-01T18:30:00.000Z");
    expect(next("0 6 * * *", "2026-07-01T00:00:00Z", "America/New_York")).toBe("2026-07-01T10:00:00.000Z");
  });

  it("when daylight saving time starts or ends, follows node-cron's matcher: a missing local time does not match, a repeated one matches twice", () => {
    // Europe/Berlin: 29 March 2026 02:00 CET -> 03:00 CEST; 25 October 2026 03:00 CEST -> 02:00 CET
    expect(next("30 1 * * *", "2026-03-29T00:31:00Z", "Europe/Berlin")).toBe("2026-03-29T23:30:00.000Z");
    expect(next("0 2 * * *", "2026-03-28T12:00:00Z", "Europe/Berlin")).toBe("2026-03-30T00:00:00.000Z");
    expect(next("30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin")).toBe("2026-10-25T00:30:00.000Z");
    expect(next("30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin")).toBe("2026-10-25T01:30:00.000Z");
    // Lord Howe Island moves its clock by 30 minutes (5 April 2026 02:00 +11 -> 01:30 +10:30)
    expect(next("0 0 * * *", "2026-04-04T12:00:00Z", "Australia/Lord_Howe")).toBe("2026-04-04T13:00:00.000Z");
    expect(next("45 1 * * *", "2026-04-04T14:00:00Z", "Australia/Lord_Howe")).toBe("2026-04-04T14:45:00.000Z");
  });

  it("when compared with asking node-cron about every minute across time-zone changes, finds the same times", () => {
    const expressions = ["*/7 * * * *", "15,45 1-3 * * *", "30 2 * * *", "30 3 * * *", "0 4 * * 0", "0 */2 * * *", "0 0 * * *", "59 23 * * *"];
    // eight hours around a change of the UTC offset (or the year), minute by minute
    const windows: [string, string][] = [
      ["Europe/Berlin", "2026-03-28T21:00:00Z"], // 02:00 CET -> 03:00 CEST at 01:00Z
      ["Europe/Berlin", "2026-10-24T21:00:00Z"], // 03:00 CEST -> 02:00 CET at 01:00Z
      ["America/New_York", "2026-03-08T03:00:00Z"], // 02:00 EST -> 03:00 EDT at 07:00Z
      ["Australia/Lord_Howe", "2026-04-04T11:00:00Z"], // 02:00 +11 -> 01:30 +10:30 at 15:00Z
      ["Asia/Kolkata", "2026-04-30T16:00:00Z"],
      ["UTC", "2026-12-31T20:00:00Z"],
    ];
    let compared = 0;
    for (const [tz, start] of windows) {
      for (const expression of expressions) {
        const expected = allMatches(expression, new Date(start), tz, 60_000, 8 * 60);
        const label = `${tz} ${expression} from ${start}`;
        expect([label, ...chain(expression, new Date(start), tz, expected)]).toEqual([label, ...expected.map((d) => d.toISOString())]);
        compared += expected.length;
      }
    }
    expect(compared).toBeGreaterThan(100);
  });

  it("when compared with asking node-cron about every second, finds the same times for six-field expressions", () => {
    const start = new Date("2026-05-01T11:58:07.250Z");
    for (const expression of ["*/13 * * * * *", "5,50 */2 * * * *", "0 */3 * * * *", "59 59 * * * *"]) {
      const expected = allMatches(expression, start, "UTC", 1000, 20 * 60);
      expect(expected.length).toBeGreaterThan(0);
      expect([expression, ...chain(expression, start, "UTC", expected)]).toEqual([expression, ...expected.map((d) => d.toISOString())]);
    }
  });

  it("when the expression matches nothing within 366 days, throws CONFIG_INVALID naming the bound", () => {
    // 29 February: the next one after May 2026 is in 2028
    const err = (() => {
      try {
        nextCronTime("0 0 29 2 *", new Date("2026-05-01T00:00:00Z"));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(AmlcertError);
    expect((err as AmlcertError).code).toBe("CONFIG_INVALID");
    expect((err as AmlcertError).message).toBe(
      'the cron expression "0 0 29 2 *" matches nothing in the 366 days after 2026-05-01T00:00:00.000Z (timezone UTC)',
    );
    // within the bound it is found
    expect(next("0 0 29 2 *", "2027-05-01T00:00:00Z")).toBe("2028-02-29T00:00:00.000Z");
  });

  it("when the expression or the time zone is not valid, throws CONFIG_INVALID saying which", () => {
    expect(() => nextCronTime("0 0 * *", new Date())).toThrow('"0 0 * *" is not a cron expression (expression: expected 5 or 6 fields but got 4)');
    expect(() => nextCronTime("0 0 * * *", new Date(), "Mars/Olympus")).toThrow('"Mars/Olympus" is not a time zone');
  });
});

describe("cronProblem", () => {
  it("when the expression is valid, is undefined; otherwise names the field", () => {
    expect(cronProblem("0 */6 * * *")).toBeUndefined();
    expect(cronProblem("61 * * * *")).toMatch(/^minute: /);
  });
});
