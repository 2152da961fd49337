/**
 * `amlcert status`: read-only. Per target, what is in place (the extension, the secret it names, azureml-fe), whether
 * DNS points at azureml-fe and azureml-fe serves that certificate (one TLS handshake, no waiting), and the durable
 * history. No writes, no ACME calls, no Lease.
 */
import type { TargetConfig } from "../config/schema.js";
import type { Logger } from "../observability/logger.js";
import { inspectTarget, type Inspection } from "../renewal/inspect.js";
import { otherSlot, rolloutOf, slotHoldsCertificate } from "../renewal/certificate-version.js";
import { describe, parseChain } from "../certs/certificate.js";
import { checkDns } from "../renewal/verify-dns.js";
import { servingHint, waitForServing } from "../renewal/verify-serving.js";
import { outcomeError } from "../renewal/recorder.js";
import type { TargetHistory } from "../history/history.js";
import { statusLine, type StatusFacts, type StatusLine, type StatusSlots } from "./status-view.js";
import type { App } from "./compose.js";

/**
 * Slots mode: the slot served (resolveSlots' view, when it is one of the two slots) and the rollback certificate:
 * the other slot, when it holds a certificate that was rolled out before (annotated done). A free slot, or one
 * holding a certificate never rolled out (stored for the next rollout, or rejected), is no rollback.
 */
export function statusSlots(base: string, slots: Inspection["slots"]): StatusSlots | undefined {
  if (!slots) return undefined;
  const served = otherSlot(base, slots.served) === undefined ? undefined : slots.served;
  const other = served === undefined ? undefined : otherSlot(base, served)!;
  const held = other === undefined ? undefined : slots.secrets[other];
  let rollback: StatusSlots["rollback"];
  if (other !== undefined && held && slotHoldsCertificate(held) && rolloutOf(held).state === "done") {
    let leaf: { serialNumber: string; notAfter: Date } | undefined;
    try {
      leaf = describe(parseChain(held.data["cert.pem"]!.toString("utf8"))[0]!);
    } catch {
      leaf = undefined; // an unreadable chain: the slot is still named, without serial and expiry
    }
    rollback = { secret: other, ...(leaf ? { serial: leaf.serialNumber, notAfter: leaf.notAfter } : {}) };
  }
  return { ...(served ? { served } : {}), ...(rollback ? { rollback } : {}) };
}

async function factsOf(app: App, t: TargetConfig): Promise<StatusFacts> {
  const { deps, settings } = app.target(t);
  try {
    await app.ready();
    const i = await inspectTarget(deps, settings);
    const dns = await checkDns(deps, settings, i.expected);
    const current = i.decision.current;
    const problems = [...i.warnings, ...dns.problems.map((p) => `DNS: ${p}`)];
    let servingOk: boolean | undefined;
    const probeHost = settings.probe.host ?? i.expected[0];
    if (current && probeHost) {
      // one handshake: status reports what is served now, it does not wait for pods to roll
      servingOk = await waitForServing(deps, { ...settings, verifyTimeoutMs: 0 }, probeHost, current.serialNumber, servingHint(settings, false)).then(
        () => true,
        (err: unknown) => (problems.push(`TLS: ${(err as Error).message}`), false),
      );
    }
    return {
      fqdn: t.fqdn,
      source: deps.source.origin ?? deps.source.kind,
      secret: i.currentSecretName,
      ...(i.slots ? { slots: statusSlots(settings.secretName, i.slots) } : {}),
      serial: current?.serialNumber,
      notAfter: current?.notAfter,
      renewAt: i.decision.renewAt,
      ...(i.decision.renewAtSource ? { renewAtSource: i.decision.renewAtSource } : {}),
      reason: i.decision.reason,
      dnsOk: dns.ok,
      servingOk,
      problems,
    };
  } catch (err) {
    const error = outcomeError(err, "preflight");
    return { fqdn: t.fqdn, reason: error.code, problems: [], error };
  }
}

export async function runStatus(app: App, targets: TargetConfig[], logger: Logger, now: () => Date): Promise<StatusLine[]> {
  const lines: StatusLine[] = [];
  for (const t of targets) {
    const [facts, history] = await Promise.all([
      factsOf(app, t),
      app
        .history(t)
        .read(t.fqdn)
        .catch((err: unknown): TargetHistory | undefined => {
          logger.warn({ fqdn: t.fqdn, err }, "could not read the renewal history");
          return undefined;
        }),
    ]);
    lines.push(statusLine(facts, history, now()));
  }
  return lines;
}
