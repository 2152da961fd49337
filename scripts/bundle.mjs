// The shipped CLI, bundled (issue 10, bench/README.md "Bundling"): esbuild turns src/cli.ts and every production
// dependency into dist/bin/amlcert.js plus chunks, one per dynamic import, so each command loads only the code it
// uses and Node reads a few large files instead of ~2,000 small ones. The image copies dist/bin and nothing from
// node_modules. tsc still type-checks and builds dist/src and dist/test (tests, harness, demo).
import { build } from "esbuild";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";

const benchOnly = process.argv.includes("--bench-only");
// Built aside, then moved in: the chunks first (content-hashed names, so a name never changes its content), the entry
// last, in one rename. A CLI started before the build keeps finding the chunks its entry names (its lazy imports run
// later); chunks no build has named for an hour are removed.
const out = `dist/bin.new-${process.pid}`;
const result = benchOnly ? undefined : await build({
  entryPoints: { amlcert: "src/cli.ts" },
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node24",
  chunkNames: "chunks/[name]-[hash]",
  // CommonJS dependencies call require() for Node's built-ins; an ES module has no require of its own
  banner: { js: 'import { createRequire as __amlcertRequire } from "node:module"; const require = __amlcertRequire(import.meta.url);' },
  // smaller files parse faster; names stay, so stack traces stay readable
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  // no source maps in what ships (they would triple its size); names are kept, and dist/src is there to debug with
  sourcemap: false,
  // the licence notices of the bundled packages, beside the chunks that carry their code
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
  // the demo lives in the source checkout's dist/test, never in the bundle
  external: ["../test/harness/demo.js"],
});
if (result) {
  // what went into which chunk, for `npx esbuild --analyze`-style questions; not shipped
  writeFileSync("dist/bundle-meta.json", JSON.stringify(result.metafile));
  mkdirSync("dist/bin/chunks", { recursive: true });
  const fresh = new Set(readdirSync(`${out}/chunks`));
  for (const f of fresh) renameSync(`${out}/chunks/${f}`, `dist/bin/chunks/${f}`);
  for (const f of readdirSync(out)) if (f !== "chunks") renameSync(`${out}/${f}`, `dist/bin/${f}`);
  rmSync(out, { recursive: true, force: true });
  const hourAgo = Date.now() - 3_600_000;
  for (const f of readdirSync("dist/bin/chunks")) {
    if (!fresh.has(f) && statSync(`dist/bin/chunks/${f}`).mtimeMs < hourAgo) rmSync(`dist/bin/chunks/${f}`, { force: true });
  }
}

// `--bench` (or `--bench-only`): also (only) the benchmark's daemon driver, bundled the same way, so the daemon's
// memory is measured on the code the image ships (scripts/bench.sh runs this)
if (process.argv.includes("--bench") || benchOnly) {
  await build({
    entryPoints: { "daemon-cycles": "bench/daemon-cycles.ts" },
    outdir: "dist/bench-bin",
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node24",
    banner: { js: 'import { createRequire as __amlcertRequire } from "node:module"; const require = __amlcertRequire(import.meta.url);' },
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: true,
    logLevel: "warning",
  });
}
