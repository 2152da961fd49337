/**
 * Microsoft.KubernetesConfiguration/extensions for the ARM stand-in: GET, and PATCH as a long-running operation.
 * configurationSettings are merged (a null value removes a key); configurationProtectedSettings are replaced as a
 * whole when a PATCH carries them and are never returned with values. A PATCH that changes something answers 202
 * with Azure-AsyncOperation and Location; the operation answers InProgress for `lro.pollsBeforeDone` polls, then
 * the configured outcome. A PATCH that changes nothing answers 200 without an operation ("no update is done"), also
 * when the extension's last operation failed: ARM keeps the settings of a failed operation, so sending them again
 * changes nothing.
 *
 * Like the real extension, an operation validates the certificate before the Helm release: a seed's `healthCheck`
 * (the harness checks that the secret the settings name holds a matching pair) and `lro.rejectSecrets` can reject the
 * release. The operation then ends Failed with health code E40007 INVALID_SSL_SETTING (in `statuses` and `errorInfo`)
 * and the release rolls back atomically: `deployedSettings`, what azureml-fe runs with, stay as they were.
 */
import { randomUUID } from "node:crypto";
import { ArmHttpError, isObject, methodNotAllowed, sendJson, type ArmContext, type ArmRoute } from "./arm-http.js";

export type ClusterType = "managedClusters" | "connectedClusters";

export interface LroSettings {
  /** how the next extension update operations end */
  outcome: "Succeeded" | "Failed" | "Canceled";
  /** how many status polls answer InProgress before the outcome */
  pollsBeforeDone: number;
  /** the error reported for a Failed outcome */
  error: { code: string; message: string };
  /** Retry-After (seconds) sent with 202 and InProgress polls; unset sends none */
  retryAfterSeconds?: number;
  /** the status a PATCH that starts an operation answers with (default 202 Accepted; 201 Created is also valid) */
  acceptedStatus?: 201 | 202;
  /** a Failed operation's status body carries `error: null` instead of the error */
  omitError?: boolean;
  /** the extension's health check rejects a release whose secret (scoringFe.sslSecret, else sslSecret) is one of these */
  rejectSecrets?: string[];
}

/** Why the extension's health check rejects a release (its certificate), as the extension reports it. */
export interface HealthProblem {
  /** default E40007 */
  code?: string;
  /** default INVALID_SSL_SETTING */
  displayStatus?: string;
  message: string;
}

/** The extension's pre-release health check over the settings of the release about to run (undefined = healthy). */
export type HealthCheck = (settings: Record<string, string>) => HealthProblem | undefined | Promise<HealthProblem | undefined>;

export interface ExtensionStatusRecord {
  code: string;
  displayStatus: string;
  level: "Error" | "Warning" | "Information";
  message: string;
}

export interface ExtensionRef {
  subscriptionId: string;
  resourceGroup: string;
  clusterType: ClusterType;
  clusterName: string;
  name: string;
}

export interface ExtensionSeed extends ExtensionRef {
  extensionType?: string;
  configurationSettings?: Record<string, string>;
  protectedSettings?: Record<string, string>;
  releaseTrain?: string;
  version?: string | null;
  autoUpgradeMinorVersion?: boolean;
  provisioningState?: string;
  /** the extension's health check (kept across re-seeding of the same extension until replaced) */
  healthCheck?: HealthCheck;
}

export interface ExtensionRecord extends ExtensionRef {
  id: string;
  extensionType: string;
  provisioningState: string;
  configurationSettings: Record<string, string>;
  /** values included: for test assertions only; ARM never returns them */
  protectedSettings: Record<string, string>;
  releaseTrain: string;
  version: string | null;
  autoUpgradeMinorVersion: boolean;
  errorInfo?: { code: string; message: string };
  /** what the extension reports of its health (ARM's `statuses`) */
  statuses: ExtensionStatusRecord[];
  /** the settings of the Helm release running (what azureml-fe uses): those of the last operation that succeeded */
  deployedSettings: Record<string, string>;
  /** completed updates (Succeeded) */
  updates: number;
}

/** Knobs the server exposes; read on every request. */
export interface ExtensionKnobs {
  lro: LroSettings;
  /** how GET shows configurationProtectedSettings: keys with empty values (default) or omitted */
  protectedSettingsView: "keys" | "omit";
}

export interface ExtensionRoutes {
  route(method: string, path: string): ArmRoute | undefined;
  addExtension(seed: ExtensionSeed): ExtensionRecord;
  getExtension(ref: ExtensionRef): ExtensionRecord | undefined;
  onExtensionUpdated(cb: (ext: ExtensionRecord) => void | Promise<void>): () => void;
  settleOperations(): Promise<void>;
}

const CLUSTER_RP: Record<ClusterType, string> = {
  managedClusters: "Microsoft.ContainerService",
  connectedClusters: "Microsoft.Kubernetes",
};

const EXT_RE =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/(Microsoft\.ContainerService\/managedClusters|Microsoft\.Kubernetes\/connectedClusters)\/([^/]+)\/providers\/Microsoft\.KubernetesConfiguration\/extensions(?:\/([^/]+)(?:\/(operations|operationResults)\/([^/]+))?)?$/i;

interface Operation {
  id: string;
  extKey: string;
  status: "InProgress" | "Succeeded" | "Failed" | "Canceled";
  pollsLeft: number;
  outcome: LroSettings["outcome"];
  error: { code: string; message: string };
  retryAfterSeconds?: number;
  omitError?: boolean;
}

function sameStringMap(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

const extKey = (r: ExtensionRef) => [r.subscriptionId, r.resourceGroup, r.clusterType, r.clusterName, r.name].map((s) => s.toLowerCase()).join("/");
const extId = (r: ExtensionRef) =>
  `/subscriptions/${r.subscriptionId}/resourceGroups/${r.resourceGroup}/providers/${CLUSTER_RP[r.clusterType]}/${r.clusterType}/${r.clusterName}/providers/Microsoft.KubernetesConfiguration/extensions/${r.name}`;
const snapshot = (e: ExtensionRecord): ExtensionRecord => structuredClone(e);

export function createExtensionRoutes(knobs: ExtensionKnobs): ExtensionRoutes {
  const extensions = new Map<string, ExtensionRecord>();
  const operations = new Map<string, Operation>();
  const listeners = new Set<(ext: ExtensionRecord) => void | Promise<void>>();
  const healthChecks = new Map<string, HealthCheck>();

  function findExtension(ref: ExtensionRef): ExtensionRecord {
    const ext = extensions.get(extKey(ref));
    if (!ext) {
      throw new ArmHttpError(
        404,
        "ResourceNotFound",
        `The Resource 'Microsoft.KubernetesConfiguration/extensions/${ref.name}' under resource group '${ref.resourceGroup}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
      );
    }
    return ext;
  }

  function extensionJson(ext: ExtensionRecord) {
    const props: Record<string, unknown> = {
      extensionType: ext.extensionType,
      autoUpgradeMinorVersion: ext.autoUpgradeMinorVersion,
      releaseTrain: ext.releaseTrain,
      version: ext.version,
      scope: { cluster: { releaseNamespace: "azureml" } },
      configurationSettings: { ...ext.configurationSettings },
      provisioningState: ext.provisioningState,
      statuses: ext.statuses.map((st) => ({ ...st })),
      currentVersion: ext.version ?? "1.1.69",
      isSystemExtension: false,
      customLocationSettings: null,
      packageUri: null,
      aksAssignedIdentity: null,
      errorInfo: ext.errorInfo ?? null,
    };
    if (knobs.protectedSettingsView === "keys") {
      props.configurationProtectedSettings = Object.fromEntries(Object.keys(ext.protectedSettings).map((k) => [k, ""]));
    }
    return {
      id: ext.id,
      name: ext.name,
      type: "Microsoft.KubernetesConfiguration/extensions",
      systemData: {
        createdBy: "amlcert-test",
        createdByType: "Application",
        createdAt: "2024-01-01T00:00:00Z",
        lastModifiedBy: "amlcert-test",
        lastModifiedByType: "Application",
        lastModifiedAt: new Date().toISOString(),
      },
      properties: props,
    };
  }

  function listExtensions(ctx: ArmContext, cluster: ExtensionRef): void {
    const prefix = extKey({ ...cluster, name: "" });
    const value = [...extensions.entries()].filter(([k]) => k.startsWith(prefix)).map(([, e]) => extensionJson(e));
    sendJson(ctx.res, 200, { value });
  }

  function getExtensionRoute(ctx: ArmContext, ref: ExtensionRef): void {
    sendJson(ctx.res, 200, extensionJson(findExtension(ref)));
  }

  function stringMap(v: unknown, what: string): Record<string, string | null> {
    if (!isObject(v) || !Object.values(v).every((x) => typeof x === "string" || x === null)) {
      throw new ArmHttpError(400, "InvalidRequestContent", `'properties.${what}' must map setting names to strings.`);
    }
    return v as Record<string, string | null>;
  }

  function patchExtension(ctx: ArmContext, ref: ExtensionRef): void {
    const ext = findExtension(ref);
    if (!isObject(ctx.body)) throw new ArmHttpError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.");
    const p = isObject(ctx.body.properties) ? ctx.body.properties : {};
    if ([...operations.values()].some((o) => o.extKey === extKey(ref) && o.status === "InProgress")) {
      throw new ArmHttpError(409, "Conflict", `An operation is already in progress on extension '${ext.name}'. Retry after it completes.`);
    }
    const settings = { ...ext.configurationSettings };
    if (p.configurationSettings !== undefined && p.configurationSettings !== null) {
      for (const [k, v] of Object.entries(stringMap(p.configurationSettings, "configurationSettings"))) {
        if (v === null) delete settings[k];
        else settings[k] = v;
      }
    }
    let protectedSettings = ext.protectedSettings;
    const protectedSent = p.configurationProtectedSettings !== undefined && p.configurationProtectedSettings !== null;
    if (protectedSent) {
      protectedSettings = Object.fromEntries(
        Object.entries(stringMap(p.configurationProtectedSettings, "configurationProtectedSettings")).filter((e): e is [string, string] => e[1] !== null),
      );
    }
    const releaseTrain = typeof p.releaseTrain === "string" ? p.releaseTrain : ext.releaseTrain;
    const autoUpgrade = typeof p.autoUpgradeMinorVersion === "boolean" ? p.autoUpgradeMinorVersion : ext.autoUpgradeMinorVersion;
    const version = typeof p.version === "string" ? p.version : ext.version;
    const changed =
      !sameStringMap(settings, ext.configurationSettings) ||
      // protected values cannot be compared by the service (stored encrypted): sending them is a change
      protectedSent ||
      releaseTrain.toLowerCase() !== ext.releaseTrain.toLowerCase() ||
      autoUpgrade !== ext.autoUpgradeMinorVersion ||
      version !== ext.version;
    if (!changed) {
      sendJson(ctx.res, 200, extensionJson(ext));
      return;
    }
    Object.assign(ext, {
      configurationSettings: settings,
      protectedSettings,
      releaseTrain,
      autoUpgradeMinorVersion: autoUpgrade,
      version,
      provisioningState: "Updating",
      errorInfo: undefined,
    });
    const op: Operation = {
      id: randomUUID(),
      extKey: extKey(ref),
      status: "InProgress",
      pollsLeft: Math.max(0, knobs.lro.pollsBeforeDone),
      outcome: knobs.lro.outcome,
      error: { ...knobs.lro.error },
      retryAfterSeconds: knobs.lro.retryAfterSeconds,
      omitError: knobs.lro.omitError,
    };
    operations.set(op.id, op);
    const q = `?api-version=${encodeURIComponent(ctx.apiVersion)}`;
    sendJson(ctx.res, knobs.lro.acceptedStatus ?? 202, extensionJson(ext), {
      "azure-asyncoperation": `${ctx.baseUrl}${ext.id}/operations/${op.id}${q}`,
      location: `${ctx.baseUrl}${ext.id}/operationResults/${op.id}${q}`,
      "x-ms-async-operation-timeout": "PT48H",
      ...(op.retryAfterSeconds !== undefined ? { "retry-after": String(op.retryAfterSeconds) } : {}),
    });
  }

  /** The extension's check of the release about to run: a configured rejection, then the seed's health check. */
  async function healthProblem(ext: ExtensionRecord): Promise<HealthProblem | undefined> {
    const secret = ext.configurationSettings["scoringFe.sslSecret"] ?? ext.configurationSettings.sslSecret;
    if (secret !== undefined && (knobs.lro.rejectSecrets ?? []).includes(secret)) {
      return { message: `the certificate in secret ${secret} was rejected by the extension's health check` };
    }
    try {
      return await healthChecks.get(extKey(ext))?.(ext.configurationSettings);
    } catch (err) {
      return { message: `health check failed: ${(err as Error).message}` };
    }
  }

  async function finish(op: Operation): Promise<void> {
    const ext = extensions.get(op.extKey);
    let outcome = op.outcome;
    const problem = ext && outcome === "Succeeded" ? await healthProblem(ext) : undefined;
    if (problem) {
      outcome = "Failed";
      const code = problem.code ?? "E40007";
      const displayStatus = problem.displayStatus ?? "INVALID_SSL_SETTING";
      op.error = { code: "ExtensionOperationFailed", message: `Helm release validation failed and was rolled back: ${code} ${displayStatus}: ${problem.message}` };
      ext!.statuses = [{ code, displayStatus, level: "Error", message: problem.message }];
    }
    op.status = outcome;
    if (!ext) return;
    ext.provisioningState = outcome;
    if (outcome === "Failed") ext.errorInfo = problem ? { code: problem.code ?? "E40007", message: `${problem.displayStatus ?? "INVALID_SSL_SETTING"}: ${problem.message}` } : { ...op.error };
    if (outcome === "Succeeded") {
      ext.deployedSettings = { ...ext.configurationSettings };
      ext.statuses = [];
      ext.updates += 1;
      await Promise.all([...listeners].map(async (cb) => {
        try {
          await cb(snapshot(ext));
        } catch {
          // a failing listener (the harness) must not break ARM's answer
        }
      }));
    }
  }

  async function operationStatus(ctx: ArmContext, ref: ExtensionRef, opId: string, asLocation: boolean): Promise<void> {
    const op = operations.get(opId);
    if (!op || op.extKey !== extKey(ref)) {
      throw new ArmHttpError(404, "ResourceNotFound", `The operation '${opId}' was not found.`);
    }
    if (op.status === "InProgress") {
      if (op.pollsLeft > 0) op.pollsLeft -= 1;
      else await finish(op);
    }
    const retry: Record<string, string> = op.retryAfterSeconds !== undefined && op.status === "InProgress" ? { "retry-after": String(op.retryAfterSeconds) } : {};
    const ext = extensions.get(op.extKey);
    if (asLocation) {
      if (op.status === "InProgress") sendJson(ctx.res, 202, undefined, { location: `${ctx.baseUrl}${ctx.record.path}?api-version=${ctx.apiVersion}`, ...retry });
      else if (op.status === "Succeeded" && ext) sendJson(ctx.res, 200, extensionJson(ext));
      else sendJson(ctx.res, 400, { error: op.status === "Failed" ? op.error : { code: "OperationCanceled", message: "The operation was canceled." } });
      return;
    }
    sendJson(
      ctx.res,
      200,
      {
        id: `${ext?.id ?? ""}/operations/${op.id}`,
        name: op.id,
        status: op.status,
        properties: {},
        error: op.status === "Failed" && !op.omitError ? op.error : null,
      },
      retry,
    );
  }

  return {
    route(method, path) {
      const e = EXT_RE.exec(path);
      if (!e) return undefined;
      const [, sub, rg, rpAndType, cluster, name, opKind, opId] = e as unknown as [string, string, string, string, string, string | undefined, string | undefined, string | undefined];
      const clusterType: ClusterType = rpAndType.toLowerCase().endsWith("managedclusters") ? "managedClusters" : "connectedClusters";
      if (name === undefined) {
        if (method !== "GET") throw methodNotAllowed(method);
        return {
          action: "Microsoft.KubernetesConfiguration/extensions/read",
          scope: path,
          handle: (ctx) => listExtensions(ctx, { subscriptionId: sub, resourceGroup: rg, clusterType, clusterName: cluster, name: "" }),
        };
      }
      const ref: ExtensionRef = { subscriptionId: sub, resourceGroup: rg, clusterType, clusterName: cluster, name: decodeURIComponent(name) };
      if (opKind !== undefined && opId !== undefined) {
        if (method !== "GET") throw methodNotAllowed(method);
        return {
          action: "Microsoft.KubernetesConfiguration/extensions/operations/read",
          scope: path,
          handle: (ctx) => operationStatus(ctx, ref, opId, opKind.toLowerCase() === "operationresults"),
        };
      }
      if (method === "GET") return { action: "Microsoft.KubernetesConfiguration/extensions/read", scope: path, handle: (ctx) => getExtensionRoute(ctx, ref) };
      if (method === "PATCH") return { action: "Microsoft.KubernetesConfiguration/extensions/write", scope: path, handle: (ctx) => patchExtension(ctx, ref) };
      throw methodNotAllowed(method);
    },
    addExtension(seed) {
      const rec: ExtensionRecord = {
        subscriptionId: seed.subscriptionId,
        resourceGroup: seed.resourceGroup,
        clusterType: seed.clusterType,
        clusterName: seed.clusterName,
        name: seed.name,
        id: extId(seed),
        extensionType: seed.extensionType ?? "Microsoft.AzureML.Kubernetes",
        provisioningState: seed.provisioningState ?? "Succeeded",
        configurationSettings: { ...(seed.configurationSettings ?? {}) },
        protectedSettings: { ...(seed.protectedSettings ?? {}) },
        releaseTrain: seed.releaseTrain ?? "stable",
        version: seed.version ?? null,
        autoUpgradeMinorVersion: seed.autoUpgradeMinorVersion ?? true,
        statuses: [],
        deployedSettings: { ...(seed.configurationSettings ?? {}) },
        updates: 0,
      };
      extensions.set(extKey(seed), rec);
      if (seed.healthCheck) healthChecks.set(extKey(seed), seed.healthCheck);
      return snapshot(rec);
    },
    getExtension(ref) {
      const e = extensions.get(extKey(ref));
      return e && snapshot(e);
    },
    onExtensionUpdated(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    async settleOperations() {
      for (const op of operations.values()) if (op.status === "InProgress") await finish(op);
    },
  };
}
