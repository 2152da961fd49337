/**
 * What the signed-in identity may do at an ARM scope, read from ARM's permissions API
 * (`{scope}/providers/Microsoft.Authorization/permissions`, api-version 2022-04-01) through @azure/arm-authorization:
 * the Actions and NotActions of every role assignment that applies at the scope (inherited ones included). Used by
 * `amlcert doctor` to check access without writing anything. Deny assignments are not part of that answer, so a
 * "may" here is necessary, not sufficient; the first renewal still proves it.
 */
import { AuthorizationManagementClient } from "@azure/arm-authorization";
import type { TokenCredential } from "@azure/identity";
import type { RequestObserver } from "../ports.js";
import { toAmlcertError } from "./arm-error.js";
import { armClientOptions, type ArmRetryOptions } from "./request-policy.js";

/** One role assignment's permissions at a scope. */
export interface PermissionSet {
  actions: string[];
  notActions: string[];
}

export interface AzurePermissions {
  /** The permissions at `resourceId` (a resource or resource group ID), or an AmlcertError naming the scope. */
  at(resourceId: string): Promise<PermissionSet[]>;
}

export interface AzurePermissionsOptions {
  credential: TokenCredential;
  endpoint: string;
  scope: string;
  requests?: RequestObserver;
  /** per-try timeout, retries and the Retry-After cap, as for every ARM client (azure.requestTimeout, ...) */
  retry?: Partial<ArmRetryOptions>;
}

/** The parts of a resource ID the permissions API takes: `/subscriptions/s/resourceGroups/rg[/providers/ns/...]`. */
export interface ParsedScope {
  subscriptionId: string;
  resourceGroup: string;
  resource?: { namespace: string; parentPath: string; type: string; name: string };
}

export function parseScope(resourceId: string): ParsedScope | undefined {
  const m = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)(?:\/providers\/([^/]+)\/(.+))?$/i.exec(resourceId.replace(/\/$/, ""));
  if (!m) return undefined;
  const [, subscriptionId, resourceGroup, namespace, rest] = m as unknown as [string, string, string, string | undefined, string | undefined];
  if (!namespace || !rest) return { subscriptionId, resourceGroup };
  const parts = rest.split("/");
  if (parts.length < 2) return undefined;
  const name = parts.pop()!;
  const type = parts.pop()!;
  return { subscriptionId, resourceGroup, resource: { namespace, parentPath: parts.join("/"), type, name } };
}

export function createAzurePermissions(opts: AzurePermissionsOptions): AzurePermissions {
  const clients = new Map<string, AuthorizationManagementClient>();
  const client = (subscriptionId: string) => {
    let c = clients.get(subscriptionId);
    if (!c) {
      c = new AuthorizationManagementClient(opts.credential, subscriptionId, {
        endpoint: opts.endpoint,
        credentialScopes: [opts.scope],
        ...armClientOptions(opts.retry, opts.requests),
      });
      clients.set(subscriptionId, c);
    }
    return c;
  };
  return {
    async at(resourceId) {
      const parsed = parseScope(resourceId);
      if (!parsed) throw new Error(`not an ARM resource ID: ${resourceId}`);
      const c = client(parsed.subscriptionId);
      const r = parsed.resource;
      const pages = r
        ? c.permissions.listForResource(parsed.resourceGroup, r.namespace, r.parentPath, r.type, r.name)
        : c.permissions.listForResourceGroup(parsed.resourceGroup);
      const sets: PermissionSet[] = [];
      try {
        // bounded: ARM pages a principal's role assignments, a handful per scope
        for await (const p of pages) {
          sets.push({ actions: p.actions ?? [], notActions: p.notActions ?? [] });
          if (sets.length > 1000) break;
        }
      } catch (err) {
        throw toAmlcertError(err, {
          stage: "preflight",
          doing: `read the permissions at ${resourceId}`,
          action: "Microsoft.Authorization/permissions/read",
          scope: resourceId,
          roleHint: "any role on the scope (every principal may read its own permissions)",
          notFound: `${resourceId} was not found`,
        });
      }
      return sets;
    },
  };
}
