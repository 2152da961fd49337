import { defineConfig } from "vitest/config";

// The secret scan runs on its own, after the suite (scripts/test.sh): it reads what the suite's CLI children wrote.
export default defineConfig({
  test: {
    include: ["test/scan/**/*.scan.ts"],
    testTimeout: 120_000,
    reporters: ["default"],
  },
});
