/**
 * HTTP plumbing shared by the modules of the ARM stand-in: ARM's error shape, JSON replies, the request context
 * and the route a handler module returns.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** One request as the ARM stand-in saw it (for assertions; never a credential). */
export interface ArmRequestRecord {
  method: string;
  /** path without the query string */
  path: string;
  apiVersion?: string;
  status: number;
  /** object id of the caller, when the token was valid */
  principalOid?: string;
  /** the RBAC action the request needed */
  action?: string;
  ifMatch?: string;
  ifNoneMatch?: string;
  /** parsed JSON request body (PUT/PATCH) */
  body?: unknown;
}

/** An ARM error answer: `{ "error": { "code", "message" } }` with this status and headers. */
export class ArmHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ArmContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  apiVersion: string;
  body: unknown;
  record: ArmRequestRecord;
  /** the server's base URL, https://127.0.0.1:<port> */
  baseUrl: string;
}

export interface ArmRoute {
  /** the RBAC action the request needs */
  action: string;
  /** the ARM scope the action is checked on */
  scope: string;
  /** every authenticated principal may call it (ARM's permissions API): no role assignment is checked */
  anyPrincipal?: boolean;
  handle(ctx: ArmContext): Promise<void> | void;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { "content-type": "application/json; charset=utf-8" }),
    "content-length": String(Buffer.byteLength(text)),
    "x-ms-request-id": randomUUID(),
    "x-ms-correlation-request-id": randomUUID(),
    "cache-control": "no-cache",
    ...headers,
  });
  res.end(text);
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export const methodNotAllowed = (method: string) =>
  new ArmHttpError(405, "MethodNotAllowed", `The requested resource does not support http method '${method}'.`);
