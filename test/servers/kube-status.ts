/**
 * metav1.Status failures exactly as the real API server words them (k8s.io/apimachinery/pkg/api/errors), so that
 * kubectl prints the same lines and clients see the same `reason`, `code` and `details`.
 */

export interface GroupResource {
  group: string;
  /** plural resource, e.g. "secrets" */
  resource: string;
}

export interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[]; retryAfterSeconds?: number };
  code: number;
}

/** A failed request: thrown inside the server, turned into a Status response. */
export class KubeApiError extends Error {
  constructor(readonly status: KubeStatus) {
    super(status.message ?? status.reason ?? String(status.code));
  }
  get code(): number {
    return this.status.code;
  }
}

/** "secrets" for the core group, "leases.coordination.k8s.io" otherwise (GroupResource.String()). */
export function qualified(gr: GroupResource): string {
  return gr.group === "" ? gr.resource : `${gr.resource}.${gr.group}`;
}

function failure(code: number, reason: string, message: string, details?: KubeStatus["details"]): KubeApiError {
  const status: KubeStatus = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details) status.details = details;
  return new KubeApiError(status);
}

function grDetails(gr: GroupResource, name: string): NonNullable<KubeStatus["details"]> {
  const d: NonNullable<KubeStatus["details"]> = {};
  if (name) d.name = name;
  if (gr.group) d.group = gr.group;
  d.kind = gr.resource;
  return d;
}

export const statusErrors = {
  notFound(gr: GroupResource, name: string): KubeApiError {
    return failure(404, "NotFound", `${qualified(gr)} "${name}" not found`, grDetails(gr, name));
  },
  alreadyExists(gr: GroupResource, name: string): KubeApiError {
    return failure(409, "AlreadyExists", `${qualified(gr)} "${name}" already exists`, grDetails(gr, name));
  },
  conflict(gr: GroupResource, name: string, why: string): KubeApiError {
    return failure(409, "Conflict", `Operation cannot be fulfilled on ${qualified(gr)} "${name}": ${why}`, grDetails(gr, name));
  },
  /** the optimistic-concurrency conflict of a PUT with a stale resourceVersion */
  modified(gr: GroupResource, name: string): KubeApiError {
    return statusErrors.conflict(
      gr,
      name,
      "the object has been modified; please apply your changes to the latest version and try again",
    );
  },
  forbidden(gr: GroupResource | undefined, name: string, why: string): KubeApiError {
    if (!gr) return failure(403, "Forbidden", `forbidden: ${why}`, {});
    const what = name ? `${qualified(gr)} "${name}"` : qualified(gr);
    return failure(403, "Forbidden", `${what} is forbidden: ${why}`, grDetails(gr, name));
  },
  /** `kind` is the Kind ("Secret"), qualified with its group when not core */
  invalid(kind: { group: string; kind: string }, name: string, causes: StatusCause[]): KubeApiError {
    const qk = kind.group === "" ? kind.kind : `${kind.kind}.${kind.group}`;
    const parts = causes.map((c) => `${c.field}: ${c.message}`);
    const list = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
    const details: NonNullable<KubeStatus["details"]> = { name, kind: kind.kind, causes };
    if (kind.group) details.group = kind.group;
    return failure(422, "Invalid", `${qk} "${name}" is invalid: ${list}`, details);
  },
  unprocessable(message: string): KubeApiError {
    return failure(422, "Invalid", message);
  },
  badRequest(message: string): KubeApiError {
    return failure(400, "BadRequest", message);
  },
  unauthorized(): KubeApiError {
    return failure(401, "Unauthorized", "Unauthorized");
  },
  methodNotAllowed(): KubeApiError {
    return failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  },
  unsupportedMediaType(contentType: string): KubeApiError {
    return failure(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType})`);
  },
  pathNotFound(): KubeApiError {
    return failure(404, "NotFound", "the server could not find the requested resource", {});
  },
  /** a status code injected by a test: reason and message as the real server would give for that code */
  injected(code: number, gr: GroupResource | undefined, name: string, reason?: string, message?: string, retryAfterSeconds?: number): KubeApiError {
    if (code === 409 && gr && name && !reason && !message) return statusErrors.modified(gr, name);
    if (code === 404 && gr && name && !reason && !message) return statusErrors.notFound(gr, name);
    const r = reason ?? defaultReason(code);
    const m = message ?? defaultMessage(code);
    const details: NonNullable<KubeStatus["details"]> = gr ? grDetails(gr, name) : {};
    if (code === 429 || code === 503) details.retryAfterSeconds = retryAfterSeconds ?? 1;
    return failure(code, r, m, details);
  },
};

function defaultReason(code: number): string {
  switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 409: return "Conflict";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    default: return code >= 500 ? "InternalError" : "BadRequest";
  }
}

function defaultMessage(code: number): string {
  switch (code) {
    case 429: return "Too many requests, please try again later.";
    case 503: return "the server is currently unable to handle the request";
    case 504: return "the server was unable to return a response in the time allotted, but may still be processing the request";
    default: return code >= 500 ? "Internal error occurred: injected fault" : `injected fault (HTTP ${code})`;
  }
}
