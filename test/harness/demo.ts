/**
 * The sandbox demo (`npm run demo`, `scripts/demo.sh`, or `amlcert demo` from a checkout): start Pebble and every
 * loopback stand-in, seed a cluster whose azureml-fe serves a hand-made certificate that expires in 5 days, then run
 * the built CLI — `amlcert plan`, `amlcert renew` — exactly as a user would. Each stage is printed as it happens;
 * the last line on stdout is one JSON object with the result.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { freshPki, ROOT, startHarness } from "./harness.js";
import { days, makeLeaf, makeTestCa } from "../support/certs.js";

const say = (s: string) => process.stderr.write(`\n== ${s}\n`);

export async function runDemo(_argv: string[] = []): Promise<number> {
  const started = Date.now();
  const pki = freshPki(join(ROOT, ".cache/demo-pki"));
  const fqdn = "ml.contoso.test";
  const { intermediate } = await makeTestCa("Contoso manual");
  const now = Date.now();
  const manual = await makeLeaf(intermediate, [fqdn], new Date(now - days(360)), new Date(now + days(5)));

  say("starting Pebble, Azure DNS (ARM + authoritative DNS), Entra ID, Kubernetes API and azureml-fe on loopback");
  const h = await startHarness({
    pki,
    clusters: [{ name: "aks-ml", fqdn, initialSecret: { name: "aml-tls-manual", certPem: manual.chainPem, keyPem: manual.keyPem } }],
  });
  try {
    const c = h.clusters[0]!;
    process.stderr.write(
      [
        `   ACME directory   ${h.pebble.directoryUrl} (Pebble, -strict, nonce rejection on)`,
        `   ARM              ${h.arm.url}`,
        `   Entra ID         ${h.entra.url} (workload identity: AZURE_FEDERATED_TOKEN_FILE)`,
        `   DNS              ${h.dns.address} (authoritative for ${h.zone}, UDP+TCP)`,
        `   Kubernetes API   ${c.kube.url} (RBAC: the Role deploy/overlays/cronjob renders)`,
        `   azureml-fe       ${c.fe.host}:${c.fe.port} (TLS 1.2) serving serial ${c.fe.servedSerial()} (hand-made, expires in 5 days)`,
        "",
      ].join("\n"),
    );
    const config = h.writeConfig({ log: { format: "pretty" } });
    // as README "The first run over a secret you made" says: the Role may read the hand-made secret (get, by name)
    const role = c.kube.store.peek("roles", "azureml", "amlcert")!;
    const rules = [...((role.rules as object[] | undefined) ?? []), { apiGroups: [""], resources: ["secrets"], resourceNames: ["aml-tls-manual"], verbs: ["get"] }];
    c.kube.putObject({ ...(role as object), apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", rules } as never);
    process.stderr.write("   the Role also allows get on secret aml-tls-manual (the hand-made one), so the first run can plan on it\n\n");

    say("amlcert plan");
    const plan = await h.runCli(["plan", "--config", config], { onStderr: (s) => process.stderr.write(s) });
    if (plan.code !== 0) return plan.code;

    say("amlcert renew");
    const renew = await h.runCli(["renew", "--config", config], { onStderr: (s) => process.stderr.write(s) });
    const r = renew.lines.find((l) => l.fqdn === fqdn);
    if (!r) {
      process.stderr.write(`amlcert renew printed no result (exit ${renew.code})\n`);
      return renew.code || 1;
    }
    say(`done in ${Date.now() - started} ms: azureml-fe now serves serial ${c.fe.servedSerial()}`);
    const line = {
      fqdn: r.fqdn,
      serial: r.serial,
      notAfter: r.notAfter,
      secret: r.secret,
      extensionUpdated: r.extensionUpdated,
      dnsOk: r.dnsOk,
      servingOk: r.servingOk,
      durationMs: r.durationMs,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    return renew.code;
  } finally {
    await h.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDemo(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
