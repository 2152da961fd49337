/**
 * Turning what the Azure SDK throws into AmlcertError, shared by the ARM adapters (Azure DNS, extension). Reads the
 * SDK's RestError by shape (name, statusCode, code, message, response headers), so no SDK is imported here.
 */
import { AmlcertError, atStage, type ErrorCode, type Stage } from "../errors.js";
import { ArmThrottledError, ArmTimeoutError } from "./request-policy.js";

export interface ArmFailure {
  /** HTTP status, when ARM answered */
  status?: number;
  /** ARM error code (`error.code` of the body), e.g. AuthorizationFailed */
  code?: string;
  message: string;
  retryAfter?: string;
  requestId?: string;
}

interface RestErrorLike extends Error {
  statusCode?: number;
  code?: string;
  response?: { headers?: { get(name: string): string | undefined } };
}

export function isRestError(err: unknown): err is RestErrorLike {
  return err instanceof Error && err.name === "RestError";
}

export function armFailure(err: unknown): ArmFailure {
  if (isRestError(err)) {
    const headers = err.response?.headers;
    return {
      status: err.statusCode,
      code: err.code,
      message: err.message,
      retryAfter: headers?.get("retry-after") ?? undefined,
      requestId: headers?.get("x-ms-request-id") ?? undefined,
    };
  }
  return { message: err instanceof Error ? err.message : String(err) };
}

export function statusOf(err: unknown): number | undefined {
  return isRestError(err) ? err.statusCode : undefined;
}

/** 404 codes that mean "the parent (zone, resource group, subscription) is missing", not "the child is missing". */
const PARENT_MISSING = new Set(["ParentResourceNotFound", "ResourceGroupNotFound", "SubscriptionNotFound"]);

export function isParentMissing(err: unknown): boolean {
  return isRestError(err) && err.statusCode === 404 && PARENT_MISSING.has(err.code ?? "");
}

/** Parse ARM's AuthorizationFailed message: "The client 'X' with object id 'Y' does not have authorization to
 * perform action 'A' over scope 'S' ..." */
export function parseAuthorizationFailed(message: string): { client?: string; objectId?: string; action?: string; scope?: string } {
  const m = (re: RegExp) => re.exec(message)?.[1];
  return {
    client: m(/client '([^']+)'/),
    objectId: m(/object id '([^']+)'/),
    action: m(/perform action '([^']+)'/),
    scope: m(/over scope '([^']+)'/),
  };
}

export interface ArmErrorContext {
  stage: Stage;
  /** what amlcert was doing, e.g. "write TXT record set _acme-challenge.www in zone example.com" */
  doing: string;
  /** the RBAC action the call needs (used when ARM's message does not name it) */
  action: string;
  /** the ARM scope the call targets (used when ARM's message does not name it) */
  scope: string;
  /** which role(s) grant it, e.g. `"DNS Zone Contributor" or the custom role deploy/azure/amlcert-dns-role.json` */
  roleHint: string;
  /** the message for a 404 of the target's parent (zone, extension) */
  notFound: string;
}

/** Map any error from an ARM call to an AmlcertError with a message that says what to do. */
export function toAmlcertError(err: unknown, ctx: ArmErrorContext): AmlcertError {
  if (err instanceof AmlcertError) return atStage(err, ctx.stage);
  if (err instanceof ArmThrottledError) {
    const f = err.facts;
    const retryAt = f.retryAfterMs === undefined ? undefined : new Date(Date.now() + f.retryAfterMs).toISOString();
    return new AmlcertError("AZURE_THROTTLED", ctx.stage, `Azure Resource Manager is throttling requests while trying to ${ctx.doing}: ${err.message}`, {
      cause: err,
      details: {
        status: f.status,
        armCode: f.armCode,
        requestId: f.requestId,
        attempts: f.attempts,
        why: f.why,
        maxRetryAfterSeconds: f.maxRetryAfterMs / 1000,
        ...(f.retryAfterMs === undefined ? {} : { retryAfterSeconds: f.retryAfterMs / 1000, retryAt }),
        resource: ctx.scope,
      },
    });
  }
  if (err instanceof ArmTimeoutError) {
    const f = err.facts;
    return new AmlcertError("AZURE_ERROR", ctx.stage, `could not ${ctx.doing}: ${err.message}`, {
      cause: err,
      details: { timeout: true, timeoutSeconds: f.timeoutMs / 1000, attempts: f.attempts, method: f.method, path: f.url, resource: ctx.scope },
    });
  }
  const f = armFailure(err);
  const details: Record<string, unknown> = { status: f.status, armCode: f.code, requestId: f.requestId };
  const fail = (code: ErrorCode, message: string, extra: Record<string, unknown> = {}) =>
    new AmlcertError(code, ctx.stage, message, { cause: err, details: { ...details, ...extra } });

  if (f.status === undefined) {
    return fail("AZURE_ERROR", `could not ${ctx.doing}: ${f.message}`);
  }
  switch (f.status) {
    case 401:
      return fail("AZURE_AUTH", `Azure Resource Manager rejected the access token while trying to ${ctx.doing} (${f.code ?? "401"}): ${f.message}`);
    case 403: {
      const a = parseAuthorizationFailed(f.message);
      const action = a.action ?? ctx.action;
      const scope = a.scope ?? ctx.scope;
      const who = a.objectId ? `the identity with object id ${a.objectId}${a.client && a.client !== a.objectId ? ` (client ${a.client})` : ""}` : "the identity amlcert signed in with";
      return fail(
        "AZURE_FORBIDDEN",
        `Azure denied ${who} the action ${action} on ${scope} while trying to ${ctx.doing}. Assign it ${ctx.roleHint} on that scope (or a parent). ARM said: ${f.code ?? "Forbidden"}`,
        { action, scope, objectId: a.objectId },
      );
    }
    case 404:
      return fail("AZURE_NOT_FOUND", `${ctx.notFound} (ARM: ${f.code ?? "NotFound"}: ${f.message})`);
    case 409:
    case 412:
      return fail("AZURE_CONFLICT", `could not ${ctx.doing}: a concurrent change conflicted (${f.status} ${f.code ?? ""}): ${f.message}`);
    case 429:
      return fail(
        "AZURE_THROTTLED",
        `Azure Resource Manager is throttling requests (429${f.code ? ` ${f.code}` : ""}) and retries did not get through while trying to ${ctx.doing}${f.retryAfter ? `; it asked to retry after ${f.retryAfter} s` : ""}`,
        { retryAfter: f.retryAfter },
      );
    default:
      return fail("AZURE_ERROR", `could not ${ctx.doing}: ARM answered ${f.status}${f.code ? ` ${f.code}` : ""}: ${f.message}`);
  }
}
