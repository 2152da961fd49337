/**
 * The floor: the same ACME DNS-01 flow as every client, in a bare script on acme-client (Node 24), with nothing
 * else. It knows its account URL (no lookup), writes its TXT value with one call to the bench's DNS provider API
 * (an in-memory write, ~1 ms: "already in place"), and then waits exactly the injected propagation delay (plus the
 * settle time the clients are configured with): an oracle no real client can beat, since it knows when the value
 * is served. Then it answers the challenge, polls it and the order at 50 ms .. 1 s, finalizes with a fresh P-256
 * key and downloads the chain.
 *
 *   node dist/bench/floor.js register <directoryUrl> <accountFile>
 *   node dist/bench/floor.js issue <accountFile> <name> <controlUrl> <waitMs> [directoryUrl]
 */
import { readFileSync, writeFileSync } from "node:fs";
import * as acme from "acme-client";

const post = async (url: string, form: Record<string, string>) => {
  const res = await fetch(url, { method: "POST", body: new URLSearchParams(form) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
};

async function main(argv: string[]): Promise<void> {
  const [mode, ...args] = argv;
  if (mode === "register") {
    const [directoryUrl, accountFile] = args as [string, string];
    const accountKey = await acme.crypto.createPrivateEcdsaKey("P-256");
    const client = new acme.Client({ directoryUrl, accountKey });
    await client.createAccount({ termsOfServiceAgreed: true, contact: ["mailto:floor@contoso.test"] });
    writeFileSync(accountFile, JSON.stringify({ directoryUrl, accountKey: accountKey.toString(), accountUrl: client.getAccountUrl() }));
    return;
  }
  if (mode !== "issue") throw new Error(`unknown mode ${mode}`);
  const [accountFile, name, control, waitMs, directoryOverride] = args as [string, string, string, string, string | undefined];
  const account = JSON.parse(readFileSync(accountFile, "utf8")) as { directoryUrl: string; accountKey: string; accountUrl: string };
  const client = new acme.Client({
    directoryUrl: directoryOverride ?? account.directoryUrl,
    accountKey: account.accountKey,
    accountUrl: account.accountUrl,
    backoffAttempts: 40,
    backoffMin: 50,
    backoffMax: 1_000,
  });
  const order = await client.createOrder({ identifiers: [{ type: "dns", value: name }] });
  const [authz] = await client.getAuthorizations(order);
  // Pebble reuses an account's valid authorization (PEBBLE_AUTHZREUSE): no challenge then, as in every client
  if (authz!.status === "valid") {
    const [, csr] = await acme.crypto.createCsr({ altNames: [name] }, await acme.crypto.createPrivateEcdsaKey("P-256"));
    const chain = await client.getCertificate(await client.finalizeOrder(order, csr));
    if (!chain.includes("BEGIN CERTIFICATE")) throw new Error("no certificate downloaded");
    return;
  }
  const challenge = authz!.challenges.find((c) => c.type === "dns-01")!;
  const value = await client.getChallengeKeyAuthorization(challenge);
  const record = { fqdn: `_acme-challenge.${name}`, value };
  await post(`${control}/present`, record);
  try {
    await new Promise((r) => setTimeout(r, Number(waitMs)));
    await client.completeChallenge(challenge);
    await client.waitForValidStatus(challenge);
    const [, csr] = await acme.crypto.createCsr({ altNames: [name] }, await acme.crypto.createPrivateEcdsaKey("P-256"));
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    if (!chain.includes("BEGIN CERTIFICATE")) throw new Error("no certificate downloaded");
  } finally {
    await post(`${control}/cleanup`, record);
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`floor: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
