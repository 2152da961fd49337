/**
 * The per-target offset added to every scheduled time, so a fleet of daemons on the same cron schedule does not
 * call the CA, ARM and the cluster at the same second. It is fixed by a hash of the FQDN, not drawn at random:
 * a target keeps its time across restarts, in every process and on every replica, and `amlcert status` can say
 * when the next run is without asking the daemon.
 */
import { createHash } from "node:crypto";

/** An offset in [0, jitterMs), whole milliseconds, spread evenly across FQDNs. 0 when jitterMs is 0. */
export function targetOffsetMs(fqdn: string, jitterMs: number): number {
  if (!(jitterMs > 0)) return 0;
  // the name as amlcert compares it (lower case, no trailing dot), so "ML.contoso.test." gets the same time
  const name = fqdn.toLowerCase().replace(/\.$/, "");
  // 48 bits of SHA-256: uniform, and far more than enough resolution for any jitter a schedule needs
  const u = createHash("sha256").update(`amlcert-offset:${name}`).digest().readUIntBE(0, 6) / 2 ** 48;
  return Math.floor(u * jitterMs);
}
