/**
 * Azure RBAC for the ARM stand-in: deny rules, and role assignments made from custom role definition files (the
 * ones shipped in deploy/azure). A principal without any role assignment may do everything, so tests that are not
 * about permissions stay simple; once a principal has an assignment, only its roles' Actions are allowed.
 */
import { readFileSync } from "node:fs";
import { ArmHttpError } from "./arm-http.js";

export interface DenyRule {
  /** only this principal (default: everyone) */
  principalOid?: string;
  /** action, `*` wildcards allowed, case-insensitive (e.g. "Microsoft.Network/dnszones/TXT/write") */
  action: string;
  /** only requests whose resource path contains this (case-insensitive) */
  scopeIncludes?: string;
}

/** The fields of an Azure custom role definition (`az role definition create --role-definition <file>`). */
export interface RoleDefinitionFile {
  Name?: string;
  Actions: string[];
  NotActions?: string[];
}

export interface RoleAssignment {
  principalOid: string;
  /** path of a role definition file */
  roleFile: string;
  /** ARM scope (default "/": everything) */
  scope?: string;
}

export interface ArmRbac {
  deny(rule: DenyRule): void;
  assignRole(assignment: RoleAssignment): void;
  clear(): void;
  /**
   * What ARM's permissions API answers `principal` at `scope`: the Actions/NotActions of each of its role assignments
   * at the scope or above it (a principal without assignments may do everything here: one set of `*`). Deny rules are
   * not in that answer, as deny assignments are not in ARM's.
   */
  permissionsAt(principalOid: string, scope: string): { actions: string[]; notActions: string[] }[];
  /** throws 403 AuthorizationFailed in ARM's words when `principal` may not do `action` on `scope` */
  authorize(principal: { oid: string; appid: string }, action: string, scope: string): void;
}

const globToRegExp = (glob: string) =>
  new RegExp(`^${glob.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, "\\$&")).join(".*")}$`, "i");

export function createArmRbac(): ArmRbac {
  const denies: Array<{ principalOid?: string; action: RegExp; scopeIncludes?: string }> = [];
  const assignments: Array<{ principalOid: string; scope: string; actions: RegExp[]; notActions: RegExp[]; raw: { actions: string[]; notActions: string[] } }> = [];
  const covers = (assigned: string, scopeLc: string) => assigned === "/" || scopeLc === assigned || scopeLc.startsWith(`${assigned}/`);
  return {
    deny(rule) {
      denies.push({ principalOid: rule.principalOid, action: globToRegExp(rule.action), scopeIncludes: rule.scopeIncludes?.toLowerCase() });
    },
    assignRole({ principalOid, roleFile, scope = "/" }) {
      const role = JSON.parse(readFileSync(roleFile, "utf8")) as RoleDefinitionFile;
      if (!Array.isArray(role.Actions)) throw new Error(`${roleFile} has no Actions array`);
      assignments.push({
        principalOid,
        scope: scope.toLowerCase().replace(/\/$/, "") || "/",
        actions: role.Actions.map(globToRegExp),
        notActions: (role.NotActions ?? []).map(globToRegExp),
        raw: { actions: [...role.Actions], notActions: [...(role.NotActions ?? [])] },
      });
    },
    clear() {
      denies.length = 0;
      assignments.length = 0;
    },
    permissionsAt(principalOid, scope) {
      const mine = assignments.filter((a) => a.principalOid === principalOid);
      if (mine.length === 0) return [{ actions: ["*"], notActions: [] }];
      const scopeLc = scope.toLowerCase().replace(/\/$/, "");
      return mine.filter((a) => covers(a.scope, scopeLc)).map((a) => ({ actions: [...a.raw.actions], notActions: [...a.raw.notActions] }));
    },
    authorize(principal, action, scope) {
      const scopeLc = scope.toLowerCase();
      const denied = denies.some(
        (d) => (!d.principalOid || d.principalOid === principal.oid) && d.action.test(action) && (!d.scopeIncludes || scopeLc.includes(d.scopeIncludes)),
      );
      const mine = assignments.filter((a) => a.principalOid === principal.oid);
      const allowed =
        mine.length === 0 ||
        mine.some(
          (a) =>
            covers(a.scope, scopeLc) &&
            a.actions.some((r) => r.test(action)) &&
            !a.notActions.some((r) => r.test(action)),
        );
      if (denied || !allowed) {
        throw new ArmHttpError(
          403,
          "AuthorizationFailed",
          `The client '${principal.appid}' with object id '${principal.oid}' does not have authorization to perform action '${action}' over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
        );
      }
    },
  };
}
