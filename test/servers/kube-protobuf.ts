/**
 * Decoding of the Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`) for the request bodies
 * kubectl's typed clients send: `kubectl create secret|configmap|namespace` and `kubectl auth can-i`. The body is the
 * magic "k8s\0" followed by a runtime.Unknown envelope whose `raw` field holds the object. Objects come out in their
 * JSON form (Secret data as base64 strings, times as RFC 3339), so the rest of the server sees one representation.
 * Responses are always JSON: clients offer `application/json` as their second choice.
 */
import { statusErrors } from "./kube-status.js";

type Scalar = "string" | "bytes" | "int" | "bool" | "time";
interface Field {
  name: string;
  type: Scalar | Schema | { map: "string" | "bytes" };
  repeated?: boolean;
}
type Schema = { [no: number]: Field };

const TIME = "time" as const;

const objectMeta: Schema = {
  1: { name: "name", type: "string" },
  2: { name: "generateName", type: "string" },
  3: { name: "namespace", type: "string" },
  5: { name: "uid", type: "string" },
  6: { name: "resourceVersion", type: "string" },
  7: { name: "generation", type: "int" },
  8: { name: "creationTimestamp", type: TIME },
  11: { name: "labels", type: { map: "string" } },
  12: { name: "annotations", type: { map: "string" } },
  14: { name: "finalizers", type: "string", repeated: true },
};

const kinds: Record<string, Schema> = {
  "v1/Secret": {
    1: { name: "metadata", type: objectMeta },
    2: { name: "data", type: { map: "bytes" } },
    3: { name: "type", type: "string" },
    4: { name: "stringData", type: { map: "string" } },
    5: { name: "immutable", type: "bool" },
  },
  "v1/ConfigMap": {
    1: { name: "metadata", type: objectMeta },
    2: { name: "data", type: { map: "string" } },
    3: { name: "binaryData", type: { map: "bytes" } },
    4: { name: "immutable", type: "bool" },
  },
  "v1/Namespace": {
    1: { name: "metadata", type: objectMeta },
    2: { name: "spec", type: { 1: { name: "finalizers", type: "string", repeated: true } } },
  },
  "authorization.k8s.io/v1/SelfSubjectAccessReview": {
    1: { name: "metadata", type: objectMeta },
    2: {
      name: "spec",
      type: {
        1: {
          name: "resourceAttributes",
          type: {
            1: { name: "namespace", type: "string" },
            2: { name: "verb", type: "string" },
            3: { name: "group", type: "string" },
            4: { name: "version", type: "string" },
            5: { name: "resource", type: "string" },
            6: { name: "subresource", type: "string" },
            7: { name: "name", type: "string" },
          },
        },
        2: { name: "nonResourceAttributes", type: { 1: { name: "path", type: "string" }, 2: { name: "verb", type: "string" } } },
      },
    },
  },
  "authorization.k8s.io/v1/SelfSubjectRulesReview": {
    1: { name: "metadata", type: objectMeta },
    2: { name: "spec", type: { 1: { name: "namespace", type: "string" } } },
  },
};

const unknownEnvelope: Schema = {
  1: { name: "typeMeta", type: { 1: { name: "apiVersion", type: "string" }, 2: { name: "kind", type: "string" } } },
  2: { name: "raw", type: "bytes" },
  3: { name: "contentEncoding", type: "string" },
  4: { name: "contentType", type: "string" },
};

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  get done() {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error("varint too long");
    }
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw new Error("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function decodeMessage(buf: Buffer, schema: Schema): Record<string, unknown> {
  const r = new Reader(buf);
  const out: Record<string, unknown> = {};
  while (!r.done) {
    const tag = Number(r.varint());
    const no = tag >>> 3;
    const wire = tag & 7;
    const f = schema[no];
    if (!f) {
      r.skip(wire);
      continue;
    }
    let value: unknown;
    const t = f.type;
    if (typeof t === "object" && "map" in t) {
      const entry = decodeMessage(r.bytes(), { 1: { name: "k", type: "string" }, 2: { name: "v", type: t.map } });
      const m = (out[f.name] as Record<string, unknown> | undefined) ?? {};
      m[String(entry.k ?? "")] = entry.v ?? (t.map === "bytes" ? "" : "");
      out[f.name] = m;
      continue;
    }
    if (typeof t === "object") value = decodeMessage(r.bytes(), t);
    else if (t === "string") value = r.bytes().toString("utf8");
    else if (t === "bytes") value = r.bytes().toString("base64");
    else if (t === "int") value = Number(r.varint());
    else if (t === "bool") value = r.varint() !== 0n;
    else {
      const tm = decodeMessage(r.bytes(), { 1: { name: "seconds", type: "int" }, 2: { name: "nanos", type: "int" } });
      value = new Date(((tm.seconds as number | undefined) ?? 0) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    }
    if (f.repeated) out[f.name] = [...((out[f.name] as unknown[] | undefined) ?? []), value];
    else out[f.name] = value;
  }
  return out;
}

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

export const PROTOBUF = "application/vnd.kubernetes.protobuf";

/** JSON form of a protobuf-encoded request body; 415 for kinds this server cannot decode. */
export function decodeKubeProtobuf(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw statusErrors.badRequest("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]");
  let env: Record<string, unknown>;
  try {
    env = decodeMessage(body.subarray(4), unknownEnvelope);
  } catch (e) {
    throw statusErrors.badRequest(`unable to decode protobuf envelope: ${(e as Error).message}`);
  }
  const tm = (env.typeMeta ?? {}) as { apiVersion?: string; kind?: string };
  const schema = kinds[`${tm.apiVersion}/${tm.kind}`];
  if (!schema) throw statusErrors.unsupportedMediaType(`${PROTOBUF} (${tm.apiVersion} ${tm.kind}; send application/json)`);
  try {
    const obj = decodeMessage(Buffer.from(String(env.raw ?? ""), "base64"), schema);
    return { apiVersion: tm.apiVersion, kind: tm.kind, ...obj };
  } catch (e) {
    throw statusErrors.badRequest(`${tm.kind} in version "${tm.apiVersion}" cannot be handled as a ${tm.kind}: ${(e as Error).message}`);
  }
}
