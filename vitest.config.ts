import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // e2e and integration suites start real servers on loopback; two cores, so keep files sequential-ish.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
