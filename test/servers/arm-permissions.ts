/**
 * ARM's permissions API for the stand-in: `GET {scope}/providers/Microsoft.Authorization/permissions` at a resource
 * group or a resource (api-version 2022-04-01), answered from the stand-in's role assignments (arm-rbac.ts) for the
 * calling principal. Any authenticated principal may ask about itself, as in ARM; there is no action to deny.
 */
import type { ArmRbac } from "./arm-rbac.js";
import { methodNotAllowed, sendJson, type ArmRoute } from "./arm-http.js";

const PERMISSIONS_RE = /^(\/subscriptions\/[^/]+\/resourcegroups\/[^/]+(?:\/providers\/.+?)?)\/providers\/Microsoft\.Authorization\/permissions$/i;

export function createPermissionsRoutes(rbac: ArmRbac): { route(method: string, path: string): ArmRoute | undefined } {
  return {
    route(method, path) {
      // the SDK sends an empty parentResourcePath as `//`; ARM reads it as one slash
      const m = PERMISSIONS_RE.exec(path.replace(/\/{2,}/g, "/"));
      if (!m) return undefined;
      if (method !== "GET") throw methodNotAllowed(method);
      const scope = m[1]!;
      return {
        action: "Microsoft.Authorization/permissions/read",
        scope,
        anyPrincipal: true,
        handle: ({ res, record }) => {
          const value = rbac.permissionsAt(record.principalOid ?? "", scope).map((p) => ({ ...p, dataActions: [], notDataActions: [] }));
          sendJson(res, 200, { value });
        },
      };
    },
  };
}
