/**
 * KubeCluster on @kubernetes/client-node: the certificate secret (read, create-or-replace with optimistic
 * concurrency, list by label, delete), the azureml-fe service's load balancer ingress, and Events about the secret.
 * Slots mode (the default) only gets and updates the two slot secrets the manifests in deploy/ create; it creates one
 * only when it is missing (a 403 then says to apply the manifests). Versioned mode also lists, creates and deletes
 * (its own RBAC overlay). Never patch, never watch.
 */
import { type CoreV1Event, type V1Secret } from "@kubernetes/client-node";
import { AmlcertError, type Stage } from "../errors.js";
import { systemClock, type Clock, type KubeCluster, type SecretWrite, type StoredSecret } from "../ports.js";
import type { RequestObserver } from "../ports.js";
import { apiFailure, kubeError, lazyKubeApis, type KubeCall, type KubeLogger, type KubeSource } from "./kube-client.js";

export type { KubeLogger, KubeSource } from "./kube-client.js";

export interface KubeClusterOptions {
  source: KubeSource;
  /** the Azure ML extension's namespace, `azureml` */
  namespace: string;
  logger: KubeLogger;
  /** how many times a write is retried after a 409 (the secret changed between read and write); default 5 */
  conflictRetries?: number;
  /** pause before retry n is n × this; default 50 ms */
  retryDelayMs?: number;
  /** bound of each API request; default 30 s */
  requestTimeoutMs?: number;
  /** told of every API server response (amlcert_requests_total) */
  requests?: RequestObserver;
  /** named in 403 messages; default the Role shipped in deploy/base/rbac.yaml */
  rbacHint?: string;
  /** `reportingInstance` of Events (e.g. the pod name); default "amlcert" */
  instance?: string;
  clock?: Clock;
}

const SECRET_TYPE = "Opaque";
const LIST_PAGE = 100;
const MAX_EVENT_MESSAGE = 1024;

function toStored(s: V1Secret): StoredSecret {
  const out: StoredSecret = {
    name: s.metadata?.name ?? "",
    type: s.type ?? SECRET_TYPE,
    data: Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")])),
    labels: { ...(s.metadata?.labels ?? {}) },
    annotations: { ...(s.metadata?.annotations ?? {}) },
  };
  if (s.metadata?.resourceVersion) out.resourceVersion = s.metadata.resourceVersion;
  const created = s.metadata?.creationTimestamp as unknown;
  if (created) out.creationTimestamp = created instanceof Date ? created.toISOString() : String(created);
  return out;
}

export function createKubeCluster(opts: KubeClusterOptions): KubeCluster {
  const { namespace, logger } = opts;
  const conflictRetries = opts.conflictRetries ?? 5;
  const retryDelayMs = opts.retryDelayMs ?? 50;
  const clock = opts.clock ?? systemClock;
  const rbacHint = opts.rbacHint ?? `Role "amlcert" in namespace "${namespace}" (deploy/base/rbac.yaml)`;
  const apis = lazyKubeApis(opts.source, opts.requestTimeoutMs, opts.requests);
  /** uid of secrets seen, so that Events reference the secret as `kubectl describe` expects */
  const uids = new Map<string, string>();
  let eventSeq = 0;

  const call = async <T>(c: Omit<KubeCall, "namespace">, fn: () => Promise<T>): Promise<T> => {
    const a = apis();
    try {
      return await fn();
    } catch (err) {
      throw kubeError(err, { ...c, namespace }, { server: a.server, context: a.context, rbacHint });
    }
  };

  const remember = (s: V1Secret) => {
    if (s.metadata?.name && s.metadata.uid) uids.set(s.metadata.name, s.metadata.uid);
  };

  const readSecret = async (name: string, stage: Stage): Promise<V1Secret | undefined> => {
    try {
      const s = await call({ verb: "get", resource: "secrets", name, stage }, () => apis().core.readNamespacedSecret({ name, namespace }));
      remember(s);
      return s;
    } catch (err) {
      if (err instanceof AmlcertError && err.code === "KUBE_NOT_FOUND" && err.details.status === 404) return undefined;
      throw err;
    }
  };

  const writeSecret = async (w: SecretWrite): Promise<StoredSecret> => {
    const data = Object.fromEntries(Object.entries(w.data).map(([k, v]) => [k, v.toString("base64")]));
    const attempts = conflictRetries + 1;
    const conflicts: string[] = [];
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await clock.sleep(retryDelayMs * (attempt - 1));
      const current = await readSecret(w.name, "store");
      const verb = current ? "update" : "create";
      const changedSince = () =>
        new AmlcertError(
          "KUBE_CONFLICT",
          "store",
          `secret "${w.name}" in namespace "${namespace}" changed since amlcert read it (resourceVersion ${w.expectedResourceVersion}); not overwriting another writer's change`,
          { details: { secret: w.name, namespace, expected: w.expectedResourceVersion, found: current?.metadata?.resourceVersion } },
        );
      if (w.expectedResourceVersion !== undefined && (current?.metadata?.resourceVersion ?? "") !== w.expectedResourceVersion) throw changedSince();
      try {
        if (!current) {
          const body: V1Secret = {
            apiVersion: "v1",
            kind: "Secret",
            metadata: { name: w.name, namespace, labels: { ...w.labels }, annotations: { ...w.annotations } },
            type: SECRET_TYPE,
            data,
          };
          const created = await apis().core.createNamespacedSecret({ namespace, body });
          remember(created);
          logger.info({ secret: w.name, namespace, resourceVersion: created.metadata?.resourceVersion }, "created secret");
          return toStored(created);
        }
        if ((current.type ?? SECRET_TYPE) !== SECRET_TYPE) {
          throw new AmlcertError(
            "KUBE_ERROR",
            "store",
            `secret "${w.name}" in namespace "${namespace}" exists with type ${current.type}; the Azure ML extension needs an ${SECRET_TYPE} secret and the type of a secret cannot change: delete it or choose another secret name`,
            { details: { secret: w.name, namespace, type: current.type } },
          );
        }
        const body: V1Secret = {
          apiVersion: "v1",
          kind: "Secret",
          metadata: {
            name: w.name,
            namespace,
            // keep labels and annotations others put on the secret (amlcert's own keys win), unless restoring
            labels: w.replaceMetadata ? { ...w.labels } : { ...(current.metadata?.labels ?? {}), ...w.labels },
            annotations: w.replaceMetadata ? { ...w.annotations } : { ...(current.metadata?.annotations ?? {}), ...w.annotations },
            resourceVersion: current.metadata?.resourceVersion,
          },
          type: SECRET_TYPE,
          data,
        };
        const replaced = await apis().core.replaceNamespacedSecret({ name: w.name, namespace, body });
        remember(replaced);
        logger.info(
          { secret: w.name, namespace, from: current.metadata?.resourceVersion, resourceVersion: replaced.metadata?.resourceVersion },
          "replaced secret",
        );
        return toStored(replaced);
      } catch (err) {
        const failure = apiFailure(err);
        if (failure?.code === 409) {
          if (w.expectedResourceVersion !== undefined) throw changedSince();
          const reason = failure.status.reason ?? "Conflict";
          conflicts.push(reason);
          logger.debug({ secret: w.name, namespace, attempt, attempts, reason }, `secret changed during ${verb}; reading it again`);
          continue;
        }
        const a = apis();
        const e = kubeError(err, { verb, resource: "secrets", name: w.name, namespace, stage: "store" }, { server: a.server, context: a.context, rbacHint });
        if (verb === "create" && e.code === "KUBE_FORBIDDEN") {
          throw new AmlcertError(
            "KUBE_FORBIDDEN",
            "store",
            `secret "${w.name}" does not exist in namespace "${namespace}" and amlcert may not create it (403 Forbidden): apply the manifests in deploy/ (kubectl apply -k deploy/...), which create it empty, then run again. ${e.message}`,
            { cause: err, details: { ...e.details, secret: w.name, namespace, verb } },
          );
        }
        throw e;
      }
    }
    throw new AmlcertError(
      "KUBE_CONFLICT",
      "store",
      `could not write secret "${w.name}" in namespace "${namespace}": ${attempts} attempts each ended in 409 (${[...new Set(conflicts)].join(", ")}) because the secret kept changing between read and write; is another writer updating it?`,
      { details: { secret: w.name, namespace, attempts, conflicts } },
    );
  };

  const listSecrets = async (labelSelector: string): Promise<StoredSecret[]> => {
    const out: StoredSecret[] = [];
    let cont: string | undefined;
    // bounded: a page per LIST_PAGE secrets, at most 100 pages
    for (let page = 0; page < 100; page++) {
      const list = await call({ verb: "list", resource: "secrets", stage: "prune" }, () =>
        apis().core.listNamespacedSecret({ namespace, labelSelector, limit: LIST_PAGE, _continue: cont }),
      );
      for (const s of list.items) {
        remember(s);
        out.push(toStored(s));
      }
      cont = list.metadata?._continue;
      if (!cont) break;
    }
    return out;
  };

  const deleteSecret = async (name: string): Promise<void> => {
    try {
      await call({ verb: "delete", resource: "secrets", name, stage: "prune" }, () => apis().core.deleteNamespacedSecret({ name, namespace }));
      uids.delete(name);
      logger.info({ secret: name, namespace }, "deleted secret");
    } catch (err) {
      if (err instanceof AmlcertError && err.code === "KUBE_NOT_FOUND") {
        logger.debug({ secret: name, namespace }, "secret to delete was already gone");
        return;
      }
      throw err;
    }
  };

  const getServiceIngress: KubeCluster["getServiceIngress"] = async (name) => {
    try {
      const svc = await call({ verb: "get", resource: "services", name, stage: "preflight" }, () => apis().core.readNamespacedService({ name, namespace }));
      const ingress = svc.status?.loadBalancer?.ingress ?? [];
      const out: { type: string; ips: string[]; hostnames: string[]; clusterIP?: string } = {
        type: svc.spec?.type ?? "ClusterIP",
        ips: ingress.map((i) => i.ip).filter((ip): ip is string => !!ip),
        hostnames: ingress.map((i) => i.hostname).filter((h): h is string => !!h),
      };
      if (svc.spec?.clusterIP && svc.spec.clusterIP !== "None") out.clusterIP = svc.spec.clusterIP;
      return out;
    } catch (err) {
      if (err instanceof AmlcertError && err.code === "KUBE_NOT_FOUND" && err.details.status === 404) return undefined;
      throw err;
    }
  };

  const recordEvent: KubeCluster["recordEvent"] = async (e) => {
    try {
      const now = clock.now();
      // client-go names events "<object>.<unix nanos in hex>"; the sequence keeps two events of one millisecond apart
      const nanos = BigInt(now.getTime()) * 1_000_000n + BigInt(eventSeq++ % 1_000_000);
      const message = e.message.length > MAX_EVENT_MESSAGE ? `${e.message.slice(0, MAX_EVENT_MESSAGE - 3)}...` : e.message;
      const uid = uids.get(e.secretName);
      const body: CoreV1Event = {
        apiVersion: "v1",
        kind: "Event",
        metadata: { name: `${e.secretName}.${nanos.toString(16)}`, namespace },
        involvedObject: { apiVersion: "v1", kind: "Secret", name: e.secretName, namespace, ...(uid ? { uid } : {}) },
        type: e.type,
        reason: e.reason,
        message,
        source: { component: "amlcert" },
        reportingComponent: "amlcert",
        reportingInstance: opts.instance ?? "amlcert",
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      await call({ verb: "create", resource: "events", stage: "store" }, () => apis().core.createNamespacedEvent({ namespace, body }));
      logger.debug({ secret: e.secretName, reason: e.reason, type: e.type }, "recorded Kubernetes event");
    } catch (err) {
      const code = err instanceof AmlcertError ? err.code : "KUBE_ERROR";
      const message = err instanceof Error ? err.message : String(err);
      logger.warn({ secret: e.secretName, reason: e.reason, code, error: message }, "could not record Kubernetes event (continuing)");
    }
  };

  return {
    getSecret: async (name) => {
      const s = await readSecret(name, "plan");
      return s ? toStored(s) : undefined;
    },
    writeSecret,
    listSecrets,
    deleteSecret,
    getServiceIngress,
    recordEvent,
  };
}
