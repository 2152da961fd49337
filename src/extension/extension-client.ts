/**
 * ExtensionClient on Microsoft.KubernetesConfiguration/extensions through @azure/arm-kubernetesconfiguration.
 * The PATCH carries only `configurationSettings` (merged by ARM); `configurationProtectedSettings` are never sent,
 * because ARM replaces them as a whole and would drop the ones amlcert cannot read back. The long-running operation
 * is followed through Azure-AsyncOperation within `lroTimeoutMs`; whether ARM changed anything is read from the
 * status of the PATCH itself (202 = accepted change, 200 = nothing to do).
 */
import { SourceControlConfigurationClient, type Extension } from "@azure/arm-kubernetesconfiguration";
import type { TokenCredential } from "@azure/identity";
import type { Logger } from "pino";
import { AmlcertError, type Stage } from "../errors.js";
import { systemClock, type Clock, type ExtensionClient, type ExtensionState, type RequestObserver } from "../ports.js";
import { toAmlcertError } from "../azure/arm-error.js";
import { armClientOptions, type ArmRetryOptions } from "../azure/request-policy.js";

export interface ExtensionClientOptions {
  credential: TokenCredential;
  /** ARM endpoint, e.g. https://management.azure.com */
  endpoint: string;
  /** token scope, e.g. https://management.azure.com/.default */
  scope: string;
  subscriptionId: string;
  resourceGroup: string;
  clusterType: "managedClusters" | "connectedClusters";
  clusterName: string;
  extensionName: string;
  logger: Logger;
  /** bound on the whole update: the PATCH and every poll */
  lroTimeoutMs: number;
  /** the deadline and the elapsed time in the log go through it (default: the system clock) */
  clock?: Clock;
  /** interval between operation polls when ARM sends no Retry-After; default the SDK's (2 s) */
  pollIntervalMs?: number;
  /** bound and retries of every ARM request (the PATCH and each poll): per-try timeout, retries of 408/429/5xx,
   * Retry-After honoured up to a cap (src/azure/request-policy.ts) */
  retry?: Partial<ArmRetryOptions>;
  /** stage errors are attributed to; default "extension" */
  stage?: Stage;
  /** told the status of every ARM response (operation polls and retries included) or "error"
   * (amlcert_requests_total{system="arm"}) */
  requests?: RequestObserver;
}

const CLUSTER_RP = { managedClusters: "Microsoft.ContainerService", connectedClusters: "Microsoft.Kubernetes" } as const;
const ROLE_HINT = '"Kubernetes Extension Contributor" or the custom role in deploy/azure/amlcert-extension-role.json';

/** What the extension says of its health: its statuses (code, display status, message) and ARM's errorInfo. */
function healthOf(ext: Extension): string[] {
  const line = (code?: string, display?: string, message?: string) => [[code, display].filter(Boolean).join(" "), message].filter(Boolean).join(": ");
  const statuses = (ext.statuses ?? []).filter((st) => st.level !== "Information").map((st) => line(st.code, st.displayStatus, st.message));
  const info = ext.errorInfo ? [line(ext.errorInfo.code, undefined, ext.errorInfo.message)] : [];
  return [...new Set([...statuses, ...info].filter((l) => l.length > 0))];
}

function toState(ext: Extension): ExtensionState {
  const health = healthOf(ext);
  return {
    id: ext.id,
    extensionType: ext.extensionType ?? "",
    provisioningState: ext.provisioningState,
    configurationSettings: { ...(ext.configurationSettings ?? {}) },
    protectedSettingKeys: Object.keys(ext.configurationProtectedSettings ?? {}),
    ...(health.length > 0 ? { health } : {}),
  };
}

const FAILED = /^(failed|canceled|cancelled)$/i;
const healthText = (health: string[] | undefined) => (health && health.length > 0 ? `; the extension reports: ${health.join("; ")}` : "");

interface RawResponse {
  status: number;
  parsedBody?: unknown;
}

export function createExtensionClient(opts: ExtensionClientOptions): ExtensionClient {
  const stage = opts.stage ?? "extension";
  const clock = opts.clock ?? systemClock;
  const rp = CLUSTER_RP[opts.clusterType];
  const { resourceGroup: rg, clusterType, clusterName, extensionName } = opts;
  const client = new SourceControlConfigurationClient(opts.credential, opts.subscriptionId, {
    endpoint: opts.endpoint,
    credentialScopes: [opts.scope],
    ...armClientOptions(opts.retry, opts.requests),
  });
  const resourceId = `/subscriptions/${opts.subscriptionId}/resourceGroups/${rg}/providers/${rp}/${clusterType}/${clusterName}/providers/Microsoft.KubernetesConfiguration/extensions/${extensionName}`;
  const log = opts.logger.child({ component: "extension", extension: extensionName, cluster: clusterName });
  const notFound = `extension ${extensionName} was not found on ${clusterType}/${clusterName} in resource group ${rg} of subscription ${opts.subscriptionId}; check the extension settings (subscriptionId, resourceGroup, clusterType, clusterName, name)`;

  const fail = (err: unknown, doing: string, action: string) =>
    toAmlcertError(err, { stage, doing, action, scope: resourceId, roleHint: ROLE_HINT, notFound });

  /** After a failed operation: what the extension now says of its health (best effort: a failed read adds nothing). */
  const healthAfterFailure = async (): Promise<string[] | undefined> => {
    try {
      return toState(await client.extensions.get(rg, rp, clusterType, clusterName, extensionName)).health;
    } catch {
      return undefined;
    }
  };

  return {
    async get() {
      try {
        return toState(await client.extensions.get(rg, rp, clusterType, clusterName, extensionName));
      } catch (err) {
        throw fail(err, `read extension ${extensionName}`, "Microsoft.KubernetesConfiguration/extensions/read");
      }
    },

    async updateSettings(settings, signal) {
      signal?.throwIfAborted();
      const abort = new AbortController();
      const stop = () => abort.abort(signal?.reason);
      signal?.addEventListener("abort", stop, { once: true });
      const deadline = new AbortController();
      void clock.sleep(opts.lroTimeoutMs, deadline.signal).then(() => abort.abort(), () => undefined);
      let initialStatus: number | undefined;
      let lroError: { code?: string; message?: string } | undefined;
      const onResponse = (raw: RawResponse) => {
        initialStatus ??= raw.status;
        const body = raw.parsedBody;
        if (body && typeof body === "object" && "status" in body && typeof body.status === "string" && /^(failed|canceled|cancelled)$/i.test(body.status)) {
          const e = (body as { error?: { code?: string; message?: string } | null }).error;
          lroError = { code: e?.code ?? body.status, message: e?.message ?? `the operation ended ${body.status}` };
        }
      };
      const started = clock.now().getTime();
      try {
        const poller = await client.extensions.beginUpdate(
          rg,
          rp,
          clusterType,
          clusterName,
          extensionName,
          { configurationSettings: { ...settings } },
          { abortSignal: abort.signal, onResponse, ...(opts.pollIntervalMs !== undefined ? { updateIntervalInMs: opts.pollIntervalMs } : {}) },
        );
        const changed = initialStatus === 202 || initialStatus === 201;
        if (changed) log.info({ keys: Object.keys(settings) }, "extension update accepted; waiting for the operation");
        const result = await poller.pollUntilDone({ abortSignal: abort.signal });
        const state = toState(result);
        if (FAILED.test(state.provisioningState ?? "")) {
          // ARM's 200 "no update is done" on an extension whose last operation failed: the settings are stored, but
          // the release running is the previous one (Helm rolled back): not a rollout
          const why = changed ? "the operation ended but the extension shows" : "ARM made no change (200: no update is done) and the extension's last operation is";
          throw new AmlcertError("EXTENSION_LRO_FAILED", stage, `the update of extension ${extensionName} did not take effect: ${why} ${state.provisioningState}${healthText(state.health)}`, {
            details: { extension: resourceId, armCode: state.provisioningState, changed, ...(state.health ? { health: state.health } : {}) },
          });
        }
        log.info({ changed, provisioningState: state.provisioningState, ms: clock.now().getTime() - started }, changed ? "extension updated" : "extension already had these settings");
        return { changed, state };
      } catch (err) {
        if (err instanceof AmlcertError && err.code === "EXTENSION_LRO_FAILED") throw err;
        if (signal?.aborted) throw signal.reason;
        if (abort.signal.aborted) {
          throw new AmlcertError(
            "EXTENSION_TIMEOUT",
            stage,
            `the update of extension ${extensionName} did not finish within ${Math.round(opts.lroTimeoutMs / 1000)} s (extension.lroTimeout); ARM may still complete it: check its provisioningState with az k8s-extension show`,
            { cause: err, details: { extension: resourceId, accepted: initialStatus === 202 } },
          );
        }
        if (lroError || (err instanceof Error && /long-running operation has (failed|been canceled)|operation was canceled/i.test(err.message))) {
          const code = lroError?.code ?? "Failed";
          const message = lroError?.message ?? (err as Error).message;
          // what the extension adds to ARM's error (its statuses), without repeating the error itself
          const health = (await healthAfterFailure())?.filter((h) => h !== `${code}: ${message}`);
          throw new AmlcertError("EXTENSION_LRO_FAILED", stage, `the update of extension ${extensionName} failed in Azure: ${code}: ${message}${healthText(health)}`, {
            cause: err,
            details: { extension: resourceId, armCode: code, ...(health && health.length > 0 ? { health } : {}) },
          });
        }
        throw fail(err, `update extension ${extensionName}`, "Microsoft.KubernetesConfiguration/extensions/write");
      } finally {
        deadline.abort();
        signal?.removeEventListener("abort", stop);
      }
    },
  };
}
