/**
 * "May I?" for the Kubernetes identity amlcert runs as: one SelfSubjectAccessReview per call amlcert needs (the API
 * server answers from the same authorizer that decides the real request, RBAC included). Writes nothing: an access
 * review is not stored. Used by `amlcert doctor`.
 */
import type { RequestObserver } from "../ports.js";
import { kubeError, lazyKubeApis, type KubeSource } from "./kube-client.js";

/** One Kubernetes call, as RBAC sees it. */
export interface KubeAccess {
  verb: string;
  /** "" for the core group */
  group: string;
  resource: string;
  /** undefined: any object of the resource (a create, a list) */
  name?: string;
}

export interface KubeAccessAnswer extends KubeAccess {
  allowed: boolean;
  /** the authorizer's reason, when it gave one */
  reason?: string;
}

export interface AccessReview {
  /** Ask once per access, in namespace `namespace`. Throws (KUBE_*) when the API server cannot be asked at all. */
  canI(accesses: KubeAccess[]): Promise<KubeAccessAnswer[]>;
}

export function createAccessReview(opts: { source: KubeSource; namespace: string; requestTimeoutMs?: number; requests?: RequestObserver }): AccessReview {
  const apis = lazyKubeApis(opts.source, opts.requestTimeoutMs, opts.requests);
  return {
    async canI(accesses) {
      const a = apis();
      const ask = async (x: KubeAccess): Promise<KubeAccessAnswer> => {
        try {
          const review = await a.authorization.createSelfSubjectAccessReview({
            body: {
              apiVersion: "authorization.k8s.io/v1",
              kind: "SelfSubjectAccessReview",
              spec: { resourceAttributes: { namespace: opts.namespace, verb: x.verb, group: x.group, resource: x.resource, ...(x.name ? { name: x.name } : {}) } },
            },
          });
          return { ...x, allowed: review.status?.allowed === true, ...(review.status?.reason ? { reason: review.status.reason } : {}) };
        } catch (err) {
          throw kubeError(
            err,
            { verb: "create", resource: "selfsubjectaccessreviews", group: "authorization.k8s.io", namespace: opts.namespace, stage: "preflight" },
            { server: a.server, context: a.context, rbacHint: "every authenticated identity may create SelfSubjectAccessReviews (the built-in ClusterRole system:basic-user)" },
          );
        }
      };
      return Promise.all(accesses.map(ask));
    },
  };
}
