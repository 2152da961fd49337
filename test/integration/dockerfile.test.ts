/**
 * The Dockerfile, without a container engine (none runs here): a lint of what the image promises (every base pinned
 * by digest, no `latest`, a numeric non-root USER, an exec-form entrypoint, no RUN and so no shell in the runtime
 * stage, a .dockerignore that lets in only what is copied), and a replay of its steps. The replay reads the COPY and
 * RUN lines from the Dockerfile itself (so they are listed in one place): it copies the build context's files that
 * each stage copies into a clean directory, runs the stage's RUN lines there (`npm ci --omit=dev` for the production
 * dependencies; the compile, on a clean copy of src/ against the project's installed compiler), assembles the runtime
 * stage's /app from its COPY --from lines, makes it read-only, and runs the entrypoint's `version` and `--help` as
 * the image's non-root user (setpriv, as root; directly when the test already runs as a non-root user).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../harness/harness.js";

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Dockerfile instructions by stage: comments dropped, `\` continuations joined, the parser directive ignored. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = "";
  let startLine = 0;
  text.split("\n").forEach((raw, i) => {
    if (!pending && /^\s*(#.*)?$/.test(raw)) return;
    if (!pending) startLine = i + 1;
    pending += raw.replace(/\\\s*$/, " ");
    if (/\\\s*$/.test(raw)) return;
    const m = /^\s*(\w+)\s+(.*)$/.exec(pending);
    pending = "";
    if (!m) throw new Error(`Dockerfile line ${startLine}: cannot parse`);
    const ins = { op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: startLine };
    if (ins.op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      stages.push({ from: f[1]!, name: f[2], instructions: [] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile line ${startLine}: ${ins.op} before FROM`);
      stages.at(-1)!.instructions.push(ins);
    }
  });
  return stages;
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}
function parseCopy(args: string): Copy {
  const words = args.split(/\s+/);
  const from = words.find((w) => w.startsWith("--from="))?.slice("--from=".length);
  const rest = words.filter((w) => !w.startsWith("--"));
  return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** Every way the Dockerfile breaks the image's promises, each naming the line. */
export function lintDockerfile(text: string): string[] {
  const problems: string[] = [];
  const stages = parseDockerfile(text);
  if (stages.length < 2) problems.push("not multi-stage: build and runtime must be separate stages");
  for (const s of stages) {
    if (!/@sha256:[0-9a-f]{64}$/.test(s.from)) problems.push(`FROM ${s.from}: not pinned by digest (@sha256:<64 hex>)`);
    const tag = /^[^@]*?:([^/@]+)(@|$)/.exec(s.from)?.[1];
    if (tag === "latest") problems.push(`FROM ${s.from}: the latest tag`);
  }
  if (/:latest\b/.test(text.replace(/^\s*#.*$/gm, ""))) problems.push("a latest tag");
  const runtime = stages.at(-1);
  if (!runtime) return [...problems, "no FROM"];
  if (!/nodejs24|node:24/.test(runtime.from)) problems.push(`runtime ${runtime.from}: not Node.js 24`);
  const ops = runtime.instructions;
  const user = ops.filter((i) => i.op === "USER").at(-1);
  if (!user) problems.push("runtime stage: no USER (it would run as root)");
  else {
    const m = /^(\d+)(?::(\d+))?$/.exec(user.args);
    if (!m) problems.push(`USER ${user.args}: not numeric uid:gid (runAsNonRoot cannot check a name)`);
    else if (m[1] === "0" || m[2] === "0") problems.push(`USER ${user.args}: root`);
  }
  for (const i of ops) {
    if (i.op === "RUN") problems.push(`line ${i.line}: RUN in the runtime stage (the runtime has no shell)`);
    if (i.op === "COPY" && !parseCopy(i.args).from) problems.push(`line ${i.line}: runtime COPY from the build context (only built stages go in)`);
    if (i.op === "ADD") problems.push(`line ${i.line}: ADD (use COPY)`);
  }
  const entry = ops.find((i) => i.op === "ENTRYPOINT");
  if (!entry || !entry.args.startsWith("[")) problems.push("ENTRYPOINT: missing or not in exec form (a shell would be PID 1)");
  if (user && entry && entry.line < user.line) problems.push("USER comes after ENTRYPOINT");
  return problems;
}

const DOCKERFILE = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const stages = parseDockerfile(DOCKERFILE);
const UID = 65532;
/** util-linux's setpriv (Debian: always installed): drops to the image's uid and gid, no supplementary groups */
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p)) ?? "setpriv";

describe("Dockerfile: lint", () => {
  it("every base is pinned by digest, no latest tag, a numeric non-root USER, an exec-form entrypoint, no RUN in the runtime stage", () => {
    expect(lintDockerfile(DOCKERFILE)).toEqual([]);
    expect(stages.map((s) => s.name ?? "(runtime)")).toEqual(["deps", "build", "(runtime)"]);
    expect(stages.at(-1)!.instructions.find((i) => i.op === "USER")!.args).toBe(`${UID}:${UID}`);
  });

  it("the lint finds each problem it looks for", () => {
    const runtime = "FROM gcr.io/distroless/nodejs24-debian12@sha256:" + "a".repeat(64);
    const build = "FROM node:24-bookworm-slim@sha256:" + "b".repeat(64) + " AS build\nRUN true";
    const entry = 'ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]';
    expect(lintDockerfile(`${build}\n${runtime}\nUSER 65532:65532\n${entry}`)).toEqual([]);
    expect(lintDockerfile(`FROM node:24-bookworm-slim AS build\n${runtime}\nUSER 65532\n${entry}`)).toEqual(["FROM node:24-bookworm-slim: not pinned by digest (@sha256:<64 hex>)"]);
    expect(lintDockerfile(`FROM node:latest AS build\n${runtime}\nUSER 65532\n${entry}`)).toEqual(["FROM node:latest: not pinned by digest (@sha256:<64 hex>)", "FROM node:latest: the latest tag", "a latest tag"]);
    expect(lintDockerfile(`${build}\n${runtime}\n${entry}`)).toEqual(["runtime stage: no USER (it would run as root)"]);
    expect(lintDockerfile(`${build}\n${runtime}\nUSER node\n${entry}`)).toEqual(["USER node: not numeric uid:gid (runAsNonRoot cannot check a name)"]);
    expect(lintDockerfile(`${build}\n${runtime}\nUSER 0:0\n${entry}`)).toEqual(["USER 0:0: root"]);
    expect(lintDockerfile(`${build}\n${runtime}\nRUN rm -rf /tmp\nUSER 65532\n${entry}`)).toEqual(["line 4: RUN in the runtime stage (the runtime has no shell)"]);
    expect(lintDockerfile(`${build}\n${runtime}\nUSER 65532\nENTRYPOINT node /app/dist/src/cli.js`)).toEqual(["ENTRYPOINT: missing or not in exec form (a shell would be PID 1)"]);
    expect(lintDockerfile(`${runtime}\nUSER 65532\n${entry}`)).toEqual(["not multi-stage: build and runtime must be separate stages"]);
  });

  it(".dockerignore lets in exactly what the stages copy from the build context, and nothing else", () => {
    const fromContext = stages.flatMap((s) => s.instructions.filter((i) => i.op === "COPY").map((i) => parseCopy(i.args)).filter((c) => !c.from).flatMap((c) => c.sources));
    expect([...new Set(fromContext)].sort()).toEqual(["package-lock.json", "package.json", "src", "tsconfig.json"]);
    const lines = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    expect(lines).toEqual(["*", "!package.json", "!package-lock.json", "!tsconfig.json", "!src/"]);
  });
});

describe("Dockerfile: its steps replayed without a container engine", () => {
  let dir = "";
  let app = "";
  const asImageUser = (args: string[]) => {
    const node = process.execPath;
    const asRoot = process.getuid?.() === 0;
    const cmd = asRoot ? SETPRIV : node;
    const argv = asRoot ? [`--reuid=${UID}`, `--regid=${UID}`, "--clear-groups", "--", node, ...args] : args;
    return spawnSync(cmd, argv, { cwd: app, env: { NODE_ENV: "production", PATH: dirname(node) }, encoding: "utf8", timeout: 60_000 });
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "amlcert-image-"));
    chmodSync(dir, 0o755);
    const stageDirs = new Map<string, string>();
    for (const s of stages.slice(0, -1)) {
      const work = join(dir, s.name!);
      mkdirSync(work, { recursive: true });
      stageDirs.set(s.name!, work);
      for (const i of s.instructions) {
        if (i.op === "COPY") {
          const c = parseCopy(i.args);
          for (const src of c.sources) cpSync(join(ROOT, src), join(work, c.dest.endsWith("/") ? src : c.dest.replace(/^\.\//, "")), { recursive: true });
        } else if (i.op === "RUN") {
          if (s.name === "build" && /^npm ci\b/.test(i.args)) {
            // the compiler and the types, from the project's own install of the same lockfile (no second full install)
            symlinkSync(join(ROOT, "node_modules"), join(work, "node_modules"));
            continue;
          }
          const run = spawnSync("sh", ["-c", i.args], { cwd: work, env: { ...process.env, NODE_ENV: "" }, encoding: "utf8", timeout: 300_000 });
          if (run.status !== 0) throw new Error(`Dockerfile line ${i.line} (RUN ${i.args}) failed with ${run.status}:\n${run.stdout}\n${run.stderr}`);
        }
      }
    }
    app = join(dir, "image", "app");
    for (const i of stages.at(-1)!.instructions.filter((x) => x.op === "COPY")) {
      const c = parseCopy(i.args);
      for (const src of c.sources) cpSync(join(stageDirs.get(c.from!)!, src.replace(/^\/app\//, "")), join(app, c.dest.replace(/^\.\//, "")), { recursive: true });
    }
    // a read-only working copy: nothing in /app is writable, by anyone
    execFileSync("chmod", ["-R", "a-w,a+rX", app]);
  }, 360_000);

  afterAll(() => {
    if (dir) {
      execFileSync("chmod", ["-R", "u+w", dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the runtime /app holds package.json, the compiled CLI and production dependencies only", () => {
    expect(readdirSync(app).sort()).toEqual(["dist", "node_modules", "package.json"]);
    expect(existsSync(join(app, "dist/src/cli.js"))).toBe(true);
    expect(existsSync(join(app, "dist/test"))).toBe(false);
    // the lockfile marks what only dev dependencies need ("dev": true): none of it, and all of the rest
    const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
    const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith("node_modules/"));
    const devOnly = installed.filter(([, p]) => p.dev).map(([path]) => path);
    const production = installed.filter(([, p]) => !p.dev && !p.optional).map(([path]) => path);
    expect(devOnly).toContain("node_modules/vitest");
    expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);
    expect(production.filter((path) => !existsSync(join(app, path, "package.json")))).toEqual([]);
    expect(statSync(join(app, "dist/src/cli.js")).mode & 0o222).toBe(0);
  });

  it(`as uid ${UID} on the read-only copy, \`version\` prints package.json's version and \`--help\` the usage, both exit 0`, () => {
    const version = asImageUser(["dist/src/cli.js", "version"]);
    expect(version.stderr).toBe("");
    expect({ status: version.status, stdout: version.stdout }).toEqual({ status: 0, stdout: `${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}\n` });
    const help = asImageUser(["dist/src/cli.js", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^amlcert: certificate renewal for Azure ML Kubernetes online endpoints\n/);
    expect(help.stdout).toContain("amlcert renew");
    // it ran as that user (setpriv as root; otherwise the test's own non-root user)
    const id = asImageUser(["-e", "process.stdout.write(String(process.getuid()))"]);
    expect(Number(id.stdout)).toBe(process.getuid?.() === 0 ? UID : process.getuid?.());
    expect(Number(id.stdout)).not.toBe(0);
  });

  it("the image user cannot write to /app (the read-only copy holds)", () => {
    const w = asImageUser(["-e", "require('node:fs').writeFileSync('dist/x', 'x')"]);
    expect(w.status).not.toBe(0);
    expect(w.stderr).toContain("EACCES");
  });
});
