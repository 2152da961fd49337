/**
 * The renewal use case for one endpoint, top to bottom (every state a run can leave, and what the next run does from
 * it: docs/state-machine.md):
 *
 *   preflight read-only, before the Lease: the extension is the Azure ML one with TLS on (a refusal writes nothing:
 *             no Lease, no Event, no history); a busy extension is waited for, bounded, or the run is skipped
 *   lock      the cluster's Lease, so no other run changes what we plan on
 *   inspect   the extension, the secret it serves (slots mode: which of <secretName>-a/-b, and the other one, where
 *             the next certificate goes), azureml-fe; the renewal decision with a named reason (./plan.ts)
 *   dns       does the FQDN resolve to azureml-fe? (a warning before issuing; manageRecord fixes it)
 *   in place  nothing to renew: re-drive a failed extension operation, confirm azureml-fe serves the certificate
 *   obtain    the version in place again when its rollout failed, a stored version never rolled out, or a new
 *             certificate from the source, validated, stored (slots mode: into the slot not served)
 *   roll out  point sslSecret and scoringFe.sslSecret at it and wait for the operation; only a Succeeded
 *             operation is a rollout (a rejected one points the extension back at the certificate served)
 *   verify    the FQDN resolves to azureml-fe; azureml-fe serves the new serial over TLS 1.2
 *   prune     only after both checks pass (versioned mode; slots keep the other slot as the rollback target)
 *
 * Nothing before `store` writes anything but our own TXT values (always removed again). A failure up to and
 * including the rollout leaves the previous certificate in place and served. The run never throws: it returns a
 * typed outcome, folded from the events its subscribers saw. Stopped through `stop`, it ends at the next step or
 * wait, removes what it placed, releases the lock and reports itself skipped ("Stopped").
 */
import type { RenewDeps, RenewSettings } from "./deps.js";
import type { EventSink, RenewalEvent, TargetOutcome } from "./events.js";
import { AmlcertError } from "../errors.js";
import { inspectTarget, preflightExtension, waitWhileBusy } from "./inspect.js";
import { obtainVersion, storedForFailedExtension } from "./obtain.js";
import { operationFailed } from "./policies.js";
import { pruneVersions } from "./prune.js";
import { certificateFacts, RunRecorder } from "./recorder.js";
import { confirmRolledOut, redriveFailedExtension, rollOut } from "./rollout.js";
import { precheckDns } from "./verify-dns.js";
import { journaledSource, journalStored, reconcile, settleStored } from "./reconcile.js";
import { verifyInPlace, verifyRollout } from "./verify-rollout.js";

/**
 * The subscribers see a run only once it got past the read-only preflight: a target amlcert refuses (TLS off, not the
 * Azure ML extension) leaves no Kubernetes Event and no history, as it takes no Lease. Until then events are held.
 */
function gated(sinks: EventSink[]): { sink: EventSink; open(): void; drop(): void } {
  let state: "holding" | "open" | "dropped" = "holding";
  let held: RenewalEvent[] = [];
  // each subscriber is called at once and in order, as the bus does; what they return is awaited together
  const deliver = (e: RenewalEvent): Promise<void>[] =>
    sinks.flatMap((k) => {
      try {
        const p = k(e);
        return p ? [p] : [];
      } catch (err) {
        return [Promise.reject(err)];
      }
    });
  return {
    sink: (e) => {
      if (state === "dropped") return undefined;
      if (state === "holding") {
        held.push(e);
        return undefined;
      }
      const work = [...held.flatMap(deliver), ...deliver(e)];
      held = [];
      if (work.length === 0) return undefined;
      return Promise.allSettled(work).then((results) => {
        const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed) throw failed.reason;
      });
    },
    open: () => {
      if (state === "holding") state = "open";
    },
    drop: () => {
      state = "dropped";
      held = [];
    },
  };
}

const REFUSALS = new Set(["EXTENSION_INSECURE", "EXTENSION_WRONG_TYPE"]);

export async function renewTarget(deps: RenewDeps, s: RenewSettings, stop?: AbortSignal): Promise<TargetOutcome> {
  const gate = gated(deps.events ?? []);
  const run = new RunRecorder(s.fqdn, deps.clock, [gate.sink], deps.logger);
  let signal = stop;
  try {
    if (deps.ready) await run.stage("preflight", deps.ready);
    // read-only, before the Lease: a refusal writes nothing; a busy extension is waited for before anything is placed
    const idle = await run.stage("preflight", async () => {
      const extension = await preflightExtension(deps, s).catch((err: unknown) => {
        if (err instanceof AmlcertError && REFUSALS.has(err.code)) gate.drop();
        throw err;
      });
      gate.open();
      return waitWhileBusy(deps, s, extension, stop);
    });
    if (!idle) return await run.skipped("ExtensionBusy");
    if (deps.lock) {
      signal = await run.stage("preflight", () => deps.lock!.acquire(stop));
      if (!signal) return await run.skipped();
    }
  } catch (err) {
    gate.open(); // a failure that is not a refusal is reported as ever (a dropped gate stays dropped)
    return await run.interrupted(err, stop);
  }
  try {
    // what a crashed run left (its journal): TXT values removed, a stored secret handed on; a CA's "not before" kept
    const recovered = await reconcile(deps, s); // never throws: a journal it cannot read or write is a warning
    if (recovered.rateLimitedUntil) return await run.skipped("RateLimited");
    deps = { ...deps, source: journaledSource(deps, s) };
    const inspection = await run.stage("preflight", () => inspectTarget(deps, s));
    for (const w of inspection.warnings) deps.logger.warn({ stage: "preflight", fqdn: s.fqdn }, w);
    run.planned(inspection.decision, inspection.currentSecretName, s.renewBeforeMs);
    const dns = await run.stage("preflight", () => precheckDns(deps, s, inspection.expected));
    run.emit("dns-checked", { ok: dns.ok, problems: dns.problems });

    // nothing to renew, the extension failed naming the certificate in place: a stored one is the real change to make
    const redriveWith = operationFailed(inspection.extension.provisioningState) ? await run.stage("store", () => storedForFailedExtension(deps, s, inspection)) : undefined;
    if (!inspection.decision.renew && !inspection.pendingRollout && !redriveWith) {
      const redriven = await run.stage("extension", () => redriveFailedExtension(deps, s, inspection, signal));
      if (redriven) run.emit("rolled-out", redriven);
      await verifyInPlace(run, deps, s, inspection, dns.ok, redriven?.changed ?? false, signal);
      await confirmRolledOut(deps, s, inspection);
      if (recovered.stored) await run.stage("prune", () => settleStored(deps, s, inspection, recovered));
      return await run.succeeded(false);
    }

    const version = redriveWith ?? (await obtainVersion(run, deps, s, inspection, signal));
    run.emit("stored", { secret: version.name, reused: version.reused, certificate: certificateFacts(version.leaf, s.renewBeforeMs) });
    await journalStored(deps, s, inspection, { name: version.name, serial: version.leaf.serialNumber });
    const rollout = await run.stage("extension", () => rollOut(deps, s, inspection, version, signal));
    run.emit("rolled-out", rollout);
    await verifyRollout(run, deps, s, inspection, version, rollout.changed, signal);
    await run.stage("prune", () => pruneVersions(deps, s, inspection, version.name));
    return await run.succeeded(true);
  } catch (err) {
    return await run.interrupted(err, stop);
  } finally {
    await deps.lock?.release();
  }
}
