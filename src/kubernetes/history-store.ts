/**
 * The durable renewal history (src/history/history.ts) in one ConfigMap of amlcert's own, `amlcert-history` in the
 * extension's namespace: one data key per target FQDN, its value the JSON of that target's TargetHistory.
 *
 * Every write is a read-modify-replace carrying the resourceVersion that was read, so two targets (or two amlcert
 * processes) updating at once both land: the loser of a race gets 409, reads again and re-applies its change to the
 * winner's state, a bounded number of times. The ConfigMap is created on the first update when it does not exist
 * (a 409 on create means another run created it first: read it and replace). The calls are get and update on the
 * ConfigMap by name (the manifests in deploy/ create it, so the default Role has no create); create on configmaps
 * only when it is missing (self-hosted), and a 403 there says to apply the manifests. Never list, patch, watch or delete.
 *
 * A stored value that is not a history (hand-edited, truncated) is logged as a warning and read as no history; the
 * next update overwrites it. It never fails a run.
 */
import type { V1ConfigMap } from "@kubernetes/client-node";
import { AmlcertError } from "../errors.js";
import type { HistoryStore, TargetHistory } from "../history/history.js";
import { decodeHistory, encodeHistory } from "../history/record.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../labels.js";
import { systemClock, type Clock, type RequestObserver } from "../ports.js";
import { apiFailure, kubeError, lazyKubeApis, type KubeCall, type KubeLogger, type KubeSource } from "./kube-client.js";

/** An object the manifests create is missing, and amlcert may not create it (403): say which, and how to fix it. */
export function missingObject(kind: string, name: string, namespace: string, resource: string, cause: unknown): AmlcertError {
  return new AmlcertError(
    "KUBE_FORBIDDEN",
    "preflight",
    `${kind} "${name}" does not exist in namespace "${namespace}", and amlcert may not create it (403 Forbidden on create ${resource}). ` +
      `Apply the manifests in deploy/ (they create it, e.g. kubectl apply -k deploy/overlays/cronjob), or grant create on ${resource} in namespace "${namespace}"`,
    { cause, details: { kind, name, namespace } },
  );
}

/** the name deploy/base/rbac.yaml allows get/update on (config `history.configMap`) */
export const DEFAULT_HISTORY_CONFIGMAP = "amlcert-history";

export interface HistoryStoreOptions {
  source: KubeSource;
  /** the Azure ML extension's namespace, `azureml` */
  namespace: string;
  /** the ConfigMap's name (config `history.configMap`) */
  name: string;
  logger: KubeLogger;
  clock?: Clock;
  /** bound of each API request; default 30 s */
  requestTimeoutMs?: number;
  /** named in 403 messages; default the Role shipped in deploy/base/rbac.yaml */
  rbacHint?: string;
  /** how many times an update is retried after a 409; default 5 */
  conflictRetries?: number;
  /** pause before retry n is n × this; default 50 ms */
  retryDelayMs?: number;
  /** told of every API server response (amlcert_requests_total{system="kubernetes"}) */
  requests?: RequestObserver;
}

/** A ConfigMap data key: `[-._a-zA-Z0-9]+`, at most 253 characters. An FQDN amlcert accepts is one. */
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

export function historyKey(fqdn: string): string {
  const key = fqdn.toLowerCase().replace(/\.$/, "");
  if (!CONFIGMAP_KEY.test(key)) {
    throw new AmlcertError("INTERNAL", "preflight", `cannot keep a history for ${JSON.stringify(fqdn)}: it is not a valid ConfigMap key`);
  }
  return key;
}

export function createHistoryStore(opts: HistoryStoreOptions): HistoryStore {
  const { namespace, name, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const conflictRetries = opts.conflictRetries ?? 5;
  const retryDelayMs = opts.retryDelayMs ?? 50;
  const shipped = `Role "amlcert" in namespace "${namespace}" (deploy/base/rbac.yaml)`;
  const rbacHint =
    opts.rbacHint ??
    (name === DEFAULT_HISTORY_CONFIGMAP
      ? `${shipped}, the configmaps rule with resourceNames ["${name}"]`
      : `${shipped}: its configmaps rule allows only resourceNames ["${DEFAULT_HISTORY_CONFIGMAP}"]; add "${name}" (history.configMap) there`);
  const apis = lazyKubeApis(opts.source, opts.requestTimeoutMs, opts.requests);

  const fail = (err: unknown, verb: string): AmlcertError => {
    if (verb === "create" && apiFailure(err)?.code === 403) return missingObject("ConfigMap", name, namespace, "configmaps", err);
    const a = apis();
    const c: KubeCall = { verb, resource: "configmaps", name, namespace, stage: "preflight" };
    return kubeError(err, c, { server: a.server, context: a.context, rbacHint });
  };

  const readMap = async (): Promise<V1ConfigMap | undefined> => {
    try {
      return await apis().core.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      const f = apiFailure(err);
      if (f?.code === 404 && f.status.details?.kind !== "namespaces") return undefined;
      throw fail(err, "get");
    }
  };

  const historyIn = (map: V1ConfigMap | undefined, fqdn: string, key: string): TargetHistory | undefined => {
    const text = map?.data?.[key];
    if (text === undefined) return undefined;
    const decoded = decodeHistory(key, text);
    if ("history" in decoded) return decoded.history;
    logger.warn(
      { configMap: name, namespace, key, fqdn, problem: decoded.problem },
      `the stored history of ${fqdn} is unreadable (${decoded.problem}); treating it as no history, the next update replaces it`,
    );
    return undefined;
  };

  const read = async (fqdn: string): Promise<TargetHistory | undefined> => {
    const key = historyKey(fqdn);
    return historyIn(await readMap(), fqdn, key);
  };

  const update: HistoryStore["update"] = async (fqdn, apply) => {
    const key = historyKey(fqdn);
    const attempts = conflictRetries + 1;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await clock.sleep(retryDelayMs * (attempt - 1));
      const map = await readMap();
      const next: TargetHistory = { ...apply(historyIn(map, fqdn, key)), fqdn: key };
      const data = { ...(map?.data ?? {}), [key]: encodeHistory(next) };
      const verb = map ? "update" : "create";
      try {
        if (!map) {
          const labels = { "app.kubernetes.io/name": "amlcert", [LABEL_MANAGED_BY]: MANAGED_BY };
          const created = await apis().core.createNamespacedConfigMap({
            namespace,
            body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data },
          });
          logger.info({ configMap: name, namespace, key, resourceVersion: created.metadata?.resourceVersion }, "created the history ConfigMap");
        } else {
          // keep everything else on the object (others' labels, other targets' keys, binaryData) as read
          const body: V1ConfigMap = { ...map, apiVersion: "v1", kind: "ConfigMap", data };
          const replaced = await apis().core.replaceNamespacedConfigMap({ name, namespace, body });
          logger.debug({ configMap: name, namespace, key, from: map.metadata?.resourceVersion, resourceVersion: replaced.metadata?.resourceVersion }, "history updated");
        }
        return next;
      } catch (err) {
        const failure = apiFailure(err);
        if (failure?.code === 409) {
          logger.debug({ configMap: name, namespace, key, attempt, attempts, reason: failure.status.reason ?? "Conflict" }, `history ConfigMap changed during ${verb}; reading it again`);
          continue;
        }
        throw fail(err, verb);
      }
    }
    throw new AmlcertError(
      "KUBE_CONFLICT",
      "preflight",
      `could not update the history of ${fqdn} in ConfigMap "${name}" in namespace "${namespace}": ${attempts} attempts each ended in 409 because the ConfigMap kept changing between read and write`,
      { details: { configMap: name, namespace, key, attempts } },
    );
  };

  return { read, update };
}
