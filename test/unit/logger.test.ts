import { createRequire } from "node:module";
import { hostname } from "node:os";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger, scrub, serializeError, type LoggerOptions } from "../../src/observability/logger.js";
import { AmlcertError } from "../../src/errors.js";

function capture(opts: Omit<LoggerOptions, "destination"> & { tty?: boolean } = { format: "json", level: "debug" }) {
  const chunks: string[] = [];
  const destination = Object.assign(
    new Writable({
      write(chunk, _enc, cb) {
        chunks.push(chunk.toString());
        cb();
      },
    }),
    opts.tty ? { isTTY: true } : {},
  );
  const { tty: _tty, ...rest } = opts;
  return {
    logger: createLogger({ ...rest, destination }),
    text: () => chunks.join(""),
    /** every JSON line written so far, parsed */
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbWxjZXJ0In0.c2lnbmF0dXJlc2lnbmF0dXJl";
const OPAQUE = "x".repeat(40); // a bearer token that is not a JWT

afterEach(() => {
  vi.restoreAllMocks();
});

describe("scrub", () => {
  it("replaces a PEM private key of any label, and a truncated one, leaving the text around it", () => {
    expect(scrub(`before ${KEY}after`)).toBe("before [REDACTED PRIVATE KEY]\nafter");
    expect(scrub("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----")).toBe("[REDACTED PRIVATE KEY]");
    expect(scrub("-----BEGIN RSA PRIVATE KEY-----\nMIIEow... cut here")).toBe("[REDACTED PRIVATE KEY]");
    // a labelled key ends at its own END line: the text after it stays
    expect(scrub("a -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY----- b")).toBe("a [REDACTED PRIVATE KEY] b");
  });

  it("replaces a JWT and a bearer token (any case), keeping the word Bearer", () => {
    expect(scrub(`token ${JWT} refused`)).toBe("token [REDACTED TOKEN] refused");
    expect(scrub(`Authorization: Bearer ${OPAQUE}`)).toBe("Authorization: Bearer [REDACTED]");
    expect(scrub(`authorization: bearer ${OPAQUE}`)).toBe("authorization: bearer [REDACTED]");
    expect(scrub(`Bearer \t ${OPAQUE}`)).toBe("Bearer [REDACTED]");
  });

  it("leaves ordinary text alone, including a certificate and short words after Bearer", () => {
    expect(scrub("serial 0A1B, _acme-challenge.ml.contoso.test")).toBe("serial 0A1B, _acme-challenge.ml.contoso.test");
    const cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    expect(scrub(cert)).toBe(cert);
    expect(scrub("Bearer realm")).toBe("Bearer realm");
  });
});

describe("logger: redaction by field", () => {
  it("when a known secret field is logged, at the top or one level down, its value is replaced by [REDACTED] whatever it looks like", () => {
    const { logger, lines } = capture();
    // values that the text scrub would not recognise: only the path redaction can catch them
    logger.info(
      {
        keyPem: "kp-1",
        privateKey: "pk-1",
        accountKey: "ak-1",
        hmacKey: "hk-1",
        token: "tk-1",
        accessToken: "at-1",
        authorization: "az-1",
        eab: { hmacKey: "hk-2", keyId: "kid-1" },
        pair: { keyPem: "kp-2", privateKey: "pk-2", accountKey: "ak-2", token: "tk-2", accessToken: "at-2", authorization: "az-2" },
        headers: { authorization: "az-3", accept: "application/json" },
        request: { headers: { authorization: "az-4" } },
        data: { "key.pem": "kd-1", "cert.pem": "certificate" },
        secret: { data: { "key.pem": "kd-2" } },
      },
      "issuing",
    );
    const [line] = lines();
    expect(line).toMatchObject({
      keyPem: "[REDACTED]",
      privateKey: "[REDACTED]",
      accountKey: "[REDACTED]",
      hmacKey: "[REDACTED]",
      token: "[REDACTED]",
      accessToken: "[REDACTED]",
      authorization: "[REDACTED]",
      eab: { hmacKey: "[REDACTED]", keyId: "kid-1" },
      pair: { keyPem: "[REDACTED]", privateKey: "[REDACTED]", accountKey: "[REDACTED]", token: "[REDACTED]", accessToken: "[REDACTED]", authorization: "[REDACTED]" },
      headers: { authorization: "[REDACTED]", accept: "application/json" },
      request: { headers: { authorization: "[REDACTED]" } },
      data: { "key.pem": "[REDACTED]", "cert.pem": "certificate" },
      secret: { data: { "key.pem": "[REDACTED]" } },
      msg: "issuing",
    });
    expect(JSON.stringify(line)).not.toMatch(/(kp|pk|ak|hk|tk|at|az|kd)-\d/);
  });
});

describe("logger: scrubbing of every logged string", () => {
  it("when key material or a token hides in a field no redaction path names, however deep, it is scrubbed in place", () => {
    const { logger, lines } = capture();
    logger.info(
      {
        response: { status: 400, body: `unexpected ${KEY}end` },
        attempts: [`Bearer ${OPAQUE}`, { note: `jwt ${JWT}` }],
        a: { b: { c: { d: { detail: `deep ${JWT}` } } } },
      },
      "ARM answered",
    );
    const [line] = lines();
    expect(line!.response).toEqual({ status: 400, body: "unexpected [REDACTED PRIVATE KEY]\nend" });
    expect(line!.attempts).toEqual(["Bearer [REDACTED]", { note: "jwt [REDACTED TOKEN]" }]);
    expect(line!.a).toEqual({ b: { c: { d: { detail: "deep [REDACTED TOKEN]" } } } });
  });

  it("non-string values keep their type: numbers, booleans, null, arrays; a Buffer is replaced by its length", () => {
    const { logger, lines } = capture();
    logger.info({ count: 3, ok: false, none: null, list: [1, "two"], raw: Buffer.from("12345") }, "values");
    expect(lines()[0]).toMatchObject({ count: 3, ok: false, none: null, list: [1, "two"], raw: "[5 bytes]" });
  });

  it("a circular object does not break the logger", () => {
    const { logger, lines } = capture();
    const loop: Record<string, unknown> = { name: "loop" };
    loop.self = loop;
    const ring: unknown[] = ["ring"];
    ring.push(ring);
    logger.info({ loop, ring }, "circular");
    const [line] = lines();
    expect(line!.msg).toBe("circular");
    expect((line!.loop as Record<string, unknown>).name).toBe("loop");
    expect((line!.ring as unknown[])[0]).toBe("ring");
  });

  it("when a private key or a JWT hides inside a message, its format arguments or an error, it is scrubbed", () => {
    const { logger, text, lines } = capture();
    logger.warn(`unexpected body ${KEY}`);
    logger.info("token %s refused", JWT);
    logger.error({ err: new AmlcertError("AZURE_AUTH", "preflight", `token ${JWT} refused`, { cause: new Error(`Bearer ${OPAQUE}`) }) }, "failed");
    const out = text();
    expect(out).not.toContain("MIGHAgEAMBMG");
    expect(out).not.toContain("eyJzdWIi");
    expect(out).not.toContain(OPAQUE);
    const [warn, info, error] = lines();
    expect(warn!.msg).toBe("unexpected body [REDACTED PRIVATE KEY]\n");
    expect(info!.msg).toBe("token [REDACTED TOKEN] refused");
    expect(error!.err).toEqual({ type: "AmlcertError", message: "token [REDACTED TOKEN] refused", code: "AZURE_AUTH", stage: "preflight", details: {}, causes: ["Error: Bearer [REDACTED]"] });
  });
});

describe("serializeError", () => {
  it("an AmlcertError gives its type, message, code, stage and scrubbed details, and no stack", () => {
    const err = new AmlcertError("CERT_INVALID", "validate", "refused", { details: { secret: "aml-tls", body: `x ${KEY}`, serials: ["0A"] } });
    expect(serializeError(err)).toEqual({
      type: "AmlcertError",
      message: "refused",
      code: "CERT_INVALID",
      stage: "validate",
      details: { secret: "aml-tls", body: "x [REDACTED PRIVATE KEY]\n", serials: ["0A"] },
    });
  });

  it("any other Error gives type, message and its scrubbed stack, no code and no causes when there are none", () => {
    const err = new TypeError(`bad ${JWT}`);
    const out = serializeError(err);
    expect(Object.keys(out).sort()).toEqual(["message", "stack", "type"]);
    expect(out.type).toBe("TypeError");
    expect(out.message).toBe("bad [REDACTED TOKEN]");
    expect(out.stack).toBe(scrub(err.stack!));
    expect(String(out.stack)).toMatch(/^TypeError: bad \[REDACTED TOKEN\]\n\s+at /);
  });

  it("an Error without a stack gives an empty stack", () => {
    const err = new Error("no stack");
    err.stack = undefined;
    expect(serializeError(err)).toEqual({ type: "Error", message: "no stack", stack: "" });
  });

  it("the causes are listed by name and message, at most five, and a non-Error cause is given as text", () => {
    let err: Error = new RangeError("cause 6");
    for (let i = 5; i >= 1; i--) err = new Error(`cause ${i}`, { cause: err });
    const top = new AmlcertError("INTERNAL", "plan", "top", { cause: err });
    expect(serializeError(top).causes).toEqual(["Error: cause 1", "Error: cause 2", "Error: cause 3", "Error: cause 4", "Error: cause 5"]);
    expect(serializeError(new AmlcertError("INTERNAL", "plan", "top", { cause: `Bearer ${OPAQUE}` })).causes).toEqual(["Bearer [REDACTED]"]);
    expect(serializeError(new Error("one", { cause: new Error("two") })).causes).toEqual(["Error: two"]);
  });

  it("a thrown non-Error is given as its scrubbed text", () => {
    expect(serializeError(`plain ${JWT}`)).toEqual({ message: "plain [REDACTED TOKEN]" });
    expect(serializeError(42)).toEqual({ message: "42" });
  });

  it("an error serialized already keeps its fields when it is serialized again (an internal error's log line is not [object Object])", () => {
    const once = serializeError(new TypeError("x is undefined"));
    expect(serializeError(once)).toEqual(once);
    const { logger, lines } = capture();
    logger.fatal({ err: once }, "internal error: please report this");
    logger.fatal({ err: new TypeError("y is undefined") }, "internal error: please report this");
    const [twice, direct] = lines();
    expect(twice!.err).toEqual(once);
    expect((direct!.err as Record<string, unknown>).message).toBe("y is undefined");
    expect((direct!.err as Record<string, unknown>).type).toBe("TypeError");
    expect(JSON.stringify(lines())).not.toContain("[object Object]");
  });

  it("a thrown plain object keeps its fields, scrubbed; without a message, its JSON text is the message", () => {
    expect(serializeError({ code: "E1", message: `boom ${JWT}` })).toEqual({ code: "E1", message: "boom [REDACTED TOKEN]" });
    expect(serializeError({ status: 500, body: KEY })).toEqual({ status: 500, body: "[REDACTED PRIVATE KEY]\n", message: '{"status":500,"body":"[REDACTED PRIVATE KEY]\\n"}' });
    const circular: Record<string, unknown> = { status: 502 };
    circular.self = circular;
    expect(serializeError(circular).message).toBe("[object Object]");
    expect(serializeError(circular).status).toBe(502);
  });

  it("`error` is serialized like `err`", () => {
    const { logger, lines } = capture();
    logger.error({ error: new AmlcertError("KUBE_FORBIDDEN", "store", "no") }, "failed");
    expect(lines()[0]!.error).toEqual({ type: "AmlcertError", message: "no", code: "KUBE_FORBIDDEN", stage: "store", details: {} });
  });
});

describe("createLogger", () => {
  it("JSON lines carry name amlcert, an ISO time, the level and the message", () => {
    const { logger, lines } = capture();
    logger.info({ stage: "plan" }, "checking");
    const [line] = lines();
    expect(line).toMatchObject({ name: "amlcert", level: 30, stage: "plan", msg: "checking" });
    expect(String(line!.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("the level defaults to info; a given level is honoured", () => {
    const def = capture({ format: "json" });
    def.logger.debug({}, "hidden");
    def.logger.info({}, "shown");
    expect(def.lines().map((l) => l.msg)).toEqual(["shown"]);
    const debug = capture({ format: "json", level: "debug" });
    debug.logger.debug({}, "detail");
    expect(debug.lines().map((l) => l.msg)).toEqual(["detail"]);
  });

  it("format auto writes JSON to a pipe or file and colourised pretty lines to a terminal", () => {
    const pipe = capture({ format: "auto" });
    pipe.logger.info({}, "to a pipe");
    expect(pipe.lines()[0]!.msg).toBe("to a pipe");
    const tty = capture({ format: "auto", tty: true });
    tty.logger.info({ stage: "plan", fqdn: "ml.contoso.test" }, "checking");
    expect(tty.text()).toContain("\u001b[");
    expect(tty.text()).toContain("[plan] ml.contoso.test: checking");
  });

  it("format json writes JSON even to a terminal", () => {
    const tty = capture({ format: "json", tty: true });
    tty.logger.info({}, "json on a tty");
    expect(tty.lines()[0]!.msg).toBe("json on a tty");
  });

  it("format pretty writes one plain line per entry, synchronously: time, level, [stage] fqdn: message, without pid, host or name", () => {
    const { logger, text } = capture({ format: "pretty" });
    logger.info({ stage: "verify-tls", fqdn: "ml.contoso.test", serial: "0A" }, "served");
    const out = text(); // read right after the call: the pretty stream is synchronous
    expect(out).toMatch(/^\[\d\d:\d\d:\d\d\] INFO: \[verify-tls\] ml\.contoso\.test: served/);
    expect(out).toContain('"serial":"0A"');
    expect(out).not.toContain("\u001b[");
    expect(out.split("\n").filter(Boolean)).toHaveLength(1);
    expect(out).not.toContain(`${process.pid}`);
    expect(out).not.toContain(hostname());
    expect(out).not.toContain("amlcert");
  });

  it("pretty output is scrubbed too", () => {
    const { logger, text } = capture({ format: "pretty" });
    logger.info({ body: `x ${KEY}` }, `token ${JWT}`);
    expect(text()).not.toContain("MIGHAgEAMBMG");
    expect(text()).not.toContain("eyJzdWIi");
    expect(text()).toContain("[REDACTED PRIVATE KEY]");
  });

  it("without a destination, JSON lines are written synchronously to file descriptor 2 (stderr), not stdout", () => {
    const fs = createRequire(import.meta.url)("node:fs") as typeof import("node:fs");
    const writes: { fd: number; text: string }[] = [];
    const real = fs.writeSync;
    vi.spyOn(fs, "writeSync").mockImplementation(((fd: number, buf: unknown, ...rest: unknown[]) => {
      const text = typeof buf === "string" ? buf : Buffer.from(buf as Uint8Array).toString();
      if (text.includes("to-stderr-marker")) {
        writes.push({ fd, text });
        return Buffer.byteLength(text);
      }
      return (real as (...a: unknown[]) => number)(fd, buf, ...rest);
    }) as typeof fs.writeSync);
    createLogger({ format: "json" }).info({}, "to-stderr-marker");
    expect(writes).toHaveLength(1);
    expect(writes[0]!.fd).toBe(2);
    expect(JSON.parse(writes[0]!.text)).toMatchObject({ msg: "to-stderr-marker", name: "amlcert" });
  });
});
