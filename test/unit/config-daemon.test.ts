import { describe, expect, it } from "vitest";
import { configSchema } from "../../src/config/schema.js";

const daemon = configSchema.shape.daemon;
const problems = (input: unknown) => {
  const r = daemon.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
};

describe("daemon settings", () => {
  it("default to every 6 hours, a 30-minute jitter, a check at start and 0.0.0.0:9464", () => {
    expect(daemon.parse({})).toEqual({ schedule: "0 */6 * * *", jitter: 1_800_000, listen: "0.0.0.0:9464", runAtStart: true });
  });

  it("when listen has no port, the setting is refused naming it (it would otherwise bind DNS's port 53)", () => {
    expect(problems({ listen: "0.0.0.0" })).toEqual(["listen: must be host:port or [ipv6]:port (the port is required)"]);
    expect(problems({ listen: "[::1]" })).toEqual(["listen: must be host:port or [ipv6]:port (the port is required)"]);
  });

  it("accepts host:port and [ipv6]:port", () => {
    expect(problems({ listen: "127.0.0.1:9464" })).toEqual([]);
    expect(problems({ listen: "[::]:9464" })).toEqual([]);
  });

  it("when the schedule is not a cron expression, the setting is refused with node-cron's reason and an example", () => {
    const [p] = problems({ schedule: "every day" });
    expect(p).toMatch(/^schedule: "every day" is not a cron expression \(.+\); e\.g\. "0 \*\/6 \* \* \*"$/);
  });
});
