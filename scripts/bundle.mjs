// The shipped CLI, bundled (issue 10, bench/README.md "Bundling"): esbuild turns src/cli.ts and every production
// dependency into dist/bin/amlcert.js plus chunks, one per dynamic import, so each command loads only the code it
// uses and Node reads a few large files instead of ~2,000 small ones. The image copies dist/bin and nothing from
// node_modules. tsc still type-checks and builds dist/src and dist/test (tests, harness, demo).
import { build } from "esbuild";
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";

const benchOnly = process.argv.includes("--bench-only");
// built aside and swapped in, so a CLI started meanwhile (another build, a running benchmark) never finds half a bundle
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
  sourcemap: "linked",
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
  // the demo lives in the source checkout's dist/test, never in the bundle
  external: ["../test/harness/demo.js"],
});
if (result) {
  writeFileSync(`${out}/meta.json`, JSON.stringify(result.metafile));
  const old = `dist/bin.old-${process.pid}`;
  if (existsSync("dist/bin")) renameSync("dist/bin", old);
  renameSync(out, "dist/bin");
  rmSync(old, { recursive: true, force: true });
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
