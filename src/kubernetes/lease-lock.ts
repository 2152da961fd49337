/**
 * A coordination.k8s.io/v1 Lease as a lock between amlcert runs (an overlapping CronJob, two daemons), in the way
 * client-go's leader election uses it: the holder writes holderIdentity, leaseDurationSeconds and renewTime; another
 * holder may take the lease over only once renewTime + leaseDurationSeconds has passed; every write carries the
 * resourceVersion that was read, so of two runs racing for the lease exactly one wins (the other gets 409 and
 * backs off). Needs get/update on the Lease (by name): the manifests in deploy/ create it; create on leases only when
 * it is missing (self-hosted), and a 403 there says to apply the manifests.
 */
import { V1MicroTime, type V1Lease, type V1LeaseSpec } from "@kubernetes/client-node";
import { AmlcertError } from "../errors.js";
import { systemClock, type Clock } from "../ports.js";
import type { RequestObserver } from "../ports.js";
import { missingObject } from "./history-store.js";
import { apiFailure, kubeError, lazyKubeApis, type KubeCall, type KubeLogger, type KubeSource } from "./kube-client.js";

export interface LeaseAttempt {
  acquired: boolean;
  /** when not acquired: who holds it and when their lease lapses unless renewed (ms since the epoch) */
  holder?: string;
  expiresAt?: number;
}

export interface LeaseLock {
  readonly name: string;
  /** Take or renew the lease for `holder`. Not acquired when another holder's lease has not expired, or another run won a race.
   * `takeOverFrom`: that holder is known to be dead (a crashed process on this host), so its lease is taken over unexpired. */
  tryAcquire(holder: string, ttlSeconds: number, opts?: { takeOverFrom?: string }): Promise<LeaseAttempt>;
  /** tryAcquire, as a yes or no */
  acquire(holder: string, ttlSeconds: number): Promise<boolean>;
  /** Give the lease up if this lock still holds it (best effort: logs and never throws). */
  release(): Promise<void>;
}

export interface LeaseLockOptions {
  source: KubeSource;
  namespace: string;
  /** the Lease's name; deploy/base/rbac.yaml allows get/update on "amlcert" only */
  name?: string;
  logger: KubeLogger;
  clock?: Clock;
  requestTimeoutMs?: number;
  /** told of every API server response (amlcert_requests_total) */
  requests?: RequestObserver;
  rbacHint?: string;
}

/** client-node returns MicroTime fields as the server's string; it sends them as V1MicroTime (six fractional digits). */
function timeOf(v: unknown): number | undefined {
  if (v instanceof Date) return v.getTime();
  if (typeof v === "string") {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

export function createLeaseLock(opts: LeaseLockOptions): LeaseLock {
  const name = opts.name ?? "amlcert";
  const { namespace, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const rbacHint = opts.rbacHint ?? `Role "amlcert" in namespace "${namespace}" (deploy/base/rbac.yaml)`;
  const apis = lazyKubeApis(opts.source, opts.requestTimeoutMs, opts.requests);
  let heldBy: string | undefined;

  const fail = (err: unknown, verb: string): AmlcertError => {
    if (verb === "create" && apiFailure(err)?.code === 403) return missingObject("Lease", name, namespace, "leases (coordination.k8s.io)", err);
    const a = apis();
    const c: KubeCall = { verb, resource: "leases", group: "coordination.k8s.io", name, namespace, stage: "preflight" };
    return kubeError(err, c, { server: a.server, context: a.context, rbacHint });
  };

  const read = async (): Promise<V1Lease | undefined> => {
    try {
      return await apis().coordination.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (apiFailure(err)?.code === 404) return undefined;
      throw fail(err, "get");
    }
  };

  const micro = (ms: number) => new V1MicroTime(ms);

  const tryAcquire = async (holder: string, ttlSeconds: number, opts: { takeOverFrom?: string; raced?: boolean } = {}): Promise<LeaseAttempt> => {
    if (!holder) throw new AmlcertError("INTERNAL", "preflight", "lease holder identity must not be empty");
    const duration = Math.max(1, Math.ceil(ttlSeconds));
    const now = clock.now().getTime();
    let lease = await read();
    if (!lease) {
      const spec: V1LeaseSpec = { holderIdentity: holder, leaseDurationSeconds: duration, acquireTime: micro(now), renewTime: micro(now), leaseTransitions: 0 };
      try {
        await apis().coordination.createNamespacedLease({ namespace, body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec } });
        heldBy = holder;
        logger.info({ lease: name, namespace, holder, ttlSeconds: duration }, "acquired lease");
        return { acquired: true };
      } catch (err) {
        if (apiFailure(err)?.code !== 409) throw fail(err, "create");
        lease = await read(); // someone created it first: judge their lease like any other
        if (!lease) return { acquired: false };
      }
    }
    const spec = lease.spec ?? {};
    const current = spec.holderIdentity ?? "";
    const renewed = timeOf(spec.renewTime) ?? timeOf(spec.acquireTime);
    const expiresAt = renewed === undefined ? 0 : renewed + (spec.leaseDurationSeconds ?? 0) * 1000;
    if (current && current !== holder && expiresAt > now && current !== opts.takeOverFrom) {
      logger.info({ lease: name, namespace, holder: current, expiresAt: new Date(expiresAt).toISOString() }, "lease is held by another run");
      return { acquired: false, holder: current, expiresAt };
    }
    const takeover = current !== holder;
    const next: V1LeaseSpec = {
      holderIdentity: holder,
      leaseDurationSeconds: duration,
      acquireTime: takeover ? micro(now) : micro(timeOf(spec.acquireTime) ?? now),
      renewTime: micro(now),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (takeover ? 1 : 0),
    };
    try {
      await apis().coordination.replaceNamespacedLease({
        name,
        namespace,
        body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion }, spec: next },
      });
    } catch (err) {
      if (apiFailure(err)?.code === 409) {
        logger.info({ lease: name, namespace }, "another run changed the lease first");
        // judge the winner's lease (its holder and when it lapses, so the caller can wait for it); one more read only
        return opts.raced ? { acquired: false } : tryAcquire(holder, ttlSeconds, { ...opts, raced: true });
      }
      throw fail(err, "update");
    }
    heldBy = holder;
    if (takeover) logger.info({ lease: name, namespace, holder, previous: current || undefined, ttlSeconds: duration }, current ? "took over expired lease" : "acquired lease");
    else logger.debug({ lease: name, namespace, holder }, "renewed lease");
    return { acquired: true };
  };
  const acquire = async (holder: string, ttlSeconds: number) => (await tryAcquire(holder, ttlSeconds)).acquired;


  const release = async (): Promise<void> => {
    const holder = heldBy;
    if (!holder) return;
    heldBy = undefined;
    try {
      const lease = await read();
      if (!lease || lease.spec?.holderIdentity !== holder) {
        logger.debug({ lease: name, namespace, holder }, "lease no longer ours; nothing to release");
        return;
      }
      const now = clock.now().getTime();
      // as client-go releases: no holder, a 1 s duration, the transition count kept
      const spec: V1LeaseSpec = { leaseDurationSeconds: 1, acquireTime: micro(now), renewTime: micro(now), leaseTransitions: lease.spec.leaseTransitions ?? 0 };
      await apis().coordination.replaceNamespacedLease({
        name,
        namespace,
        body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion }, spec },
      });
      logger.info({ lease: name, namespace, holder }, "released lease");
    } catch (err) {
      const e = apiFailure(err) ? fail(err, "update") : err;
      logger.warn({ lease: name, namespace, error: e instanceof Error ? e.message : String(e) }, "could not release lease; it expires by itself");
    }
  };

  return { name, tryAcquire, acquire, release };
}
