import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BEGIN, END, configReference } from "../support/config-docs.js";

describe("README", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

  it("carries the configuration reference generated from the schema (run npm run docs:config after changing it)", () => {
    const block = readme.slice(readme.indexOf(BEGIN), readme.indexOf(END) + END.length);
    expect(block).toBe(configReference());
  });

  it("documents every exit code the CLI uses", () => {
    for (const code of ["0", "1", "2", "3", "4"]) expect(readme).toMatch(new RegExp(`^\\| \`${code}\` \\|`, "m"));
  });
});
