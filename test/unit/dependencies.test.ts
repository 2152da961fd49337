/**
 * Every production dependency is listed in the README's "Dependencies" section with why amlcert needs it, and the
 * section lists nothing that is not a dependency: adding one to package.json without saying why fails here.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { dependencies?: Record<string, string> };
const readme = readFileSync(new URL("README.md", root), "utf8");

/** The entries of the README's Dependencies section: "- `name`: why", one a line. */
function listedDependencies(markdown: string): Map<string, string> {
  const section = markdown.split(/^## /m).find((s) => s.startsWith("Dependencies\n"));
  if (section === undefined) throw new Error("README.md has no '## Dependencies' section");
  const entries = new Map<string, string>();
  for (const m of section.matchAll(/^- `([^`]+)`: (.*)$/gm)) entries.set(m[1]!, m[2]!.trim());
  return entries;
}

describe("README Dependencies", () => {
  const listed = listedDependencies(readme);
  const deps = Object.keys(pkg.dependencies ?? {}).sort();

  it("lists every production dependency", () => {
    expect(deps.filter((d) => !listed.has(d))).toEqual([]);
  });

  it("lists nothing that is not a production dependency", () => {
    expect([...listed.keys()].filter((d) => !deps.includes(d))).toEqual([]);
  });

  it("says for each why it is needed, in a sentence, and where it is used", () => {
    for (const [name, why] of listed) {
      expect(why.split(/\s+/).length, name).toBeGreaterThanOrEqual(8);
      expect(why, name).toMatch(/\(src\/[^)]+\)/);
    }
  });

  it("listedDependencies reads the section's entries, and fails on a README without the section", () => {
    const md = "# x\n\n## Dependencies\n\n- `a`: why a (src/a.ts).\n- `@s/b`: why b.\nnot an entry\n\n## Next\n\n- `c`: other section\n";
    expect([...listedDependencies(md)]).toEqual([
      ["a", "why a (src/a.ts)."],
      ["@s/b", "why b."],
    ]);
    expect(() => listedDependencies("# x\n")).toThrow("README.md has no '## Dependencies' section");
  });
});
