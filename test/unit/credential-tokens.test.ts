import { describe, expect, it } from "vitest";
import type { AccessToken, GetTokenOptions, TokenCredential } from "@azure/identity";
import { sharedTokens, TOKEN_REUSE_MARGIN_MS } from "../../src/azure/credential.js";

/** An inner credential whose requests the test answers, one by one. */
function innerCredential() {
  const calls: Array<{ scopes: string | string[]; options?: GetTokenOptions; resolve: (t: AccessToken | null) => void; reject: (e: unknown) => void }> = [];
  const credential: TokenCredential = {
    getToken: (scopes, options) => new Promise((resolve, reject) => calls.push({ scopes, options, resolve, reject })),
  };
  return { credential, calls };
}

const flush = () => new Promise((r) => setImmediate(r));
const NOW = 1_700_000_000_000;
const token = (name: string, expiresInMs = 3_600_000): AccessToken => ({ token: name, expiresOnTimestamp: NOW + expiresInMs });

describe("sharedTokens: one Entra ID token per scope for the process", () => {
  it("when several callers ask at once, one request is made and every caller gets its token", async () => {
    const inner = innerCredential();
    const shared = sharedTokens(inner.credential, () => NOW);
    const a = shared.getToken("https://management.azure.com/.default");
    const b = shared.getToken("https://management.azure.com/.default", { enableCae: true });
    await flush();
    expect(inner.calls).toHaveLength(1);
    inner.calls[0]!.resolve(token("t1"));
    expect(await a).toEqual(token("t1"));
    expect(await b).toEqual(token("t1"));
  });

  it("when a token is fetched, later callers reuse it until TOKEN_REUSE_MARGIN_MS before it expires, then a new one is asked for", async () => {
    const inner = innerCredential();
    let now = NOW;
    const shared = sharedTokens(inner.credential, () => now);
    const first = shared.getToken("scope");
    await flush();
    inner.calls[0]!.resolve(token("t1", 60 * 60_000));
    await first;
    now = NOW + 60 * 60_000 - TOKEN_REUSE_MARGIN_MS - 1;
    expect(await shared.getToken("scope")).toEqual(token("t1", 60 * 60_000));
    expect(inner.calls).toHaveLength(1);
    now = NOW + 60 * 60_000 - TOKEN_REUSE_MARGIN_MS;
    const renewed = shared.getToken("scope");
    await flush();
    expect(inner.calls).toHaveLength(2);
    inner.calls[1]!.resolve(token("t2"));
    expect((await renewed)?.token).toBe("t2");
  });

  it("when a request fails, the failure is not kept: the next caller asks again", async () => {
    const inner = innerCredential();
    const shared = sharedTokens(inner.credential, () => NOW);
    const failed = shared.getToken("scope");
    await flush();
    inner.calls[0]!.reject(new Error("AADSTS700024"));
    await expect(failed).rejects.toThrow("AADSTS700024");
    const again = shared.getToken("scope");
    await flush();
    expect(inner.calls).toHaveLength(2);
    inner.calls[1]!.resolve(token("t2"));
    expect((await again)?.token).toBe("t2");
  });

  it("when ARM sends a claims challenge, a new token is always asked for, with the claims, and replaces the kept one", async () => {
    const inner = innerCredential();
    const shared = sharedTokens(inner.credential, () => NOW);
    const first = shared.getToken("scope");
    await flush();
    inner.calls[0]!.resolve(token("t1"));
    await first;
    const challenged = shared.getToken("scope", { claims: '{"access_token":{"nbf":{"essential":true}}}' });
    await flush();
    expect(inner.calls).toHaveLength(2);
    expect(inner.calls[1]!.options?.claims).toBe('{"access_token":{"nbf":{"essential":true}}}');
    inner.calls[1]!.resolve(token("t2"));
    expect((await challenged)?.token).toBe("t2");
    expect((await shared.getToken("scope"))?.token).toBe("t2");
    expect(inner.calls).toHaveLength(2);
  });

  it("keeps one token per scope and tenant", async () => {
    const inner = innerCredential();
    const shared = sharedTokens(inner.credential, () => NOW);
    void shared.getToken("scope-a");
    void shared.getToken("scope-b");
    void shared.getToken("scope-a", { tenantId: "other-tenant" });
    await flush();
    expect(inner.calls.map((c) => [c.scopes, c.options?.tenantId])).toEqual([
      ["scope-a", undefined],
      ["scope-b", undefined],
      ["scope-a", "other-tenant"],
    ]);
  });

  it("when one caller's signal aborts, only its wait ends: the shared request goes on for the others, without that signal", async () => {
    const inner = innerCredential();
    const shared = sharedTokens(inner.credential, () => NOW);
    const stop = new AbortController();
    const aborted = shared.getToken("scope", { abortSignal: stop.signal });
    const other = shared.getToken("scope");
    await flush();
    expect(inner.calls[0]!.options?.abortSignal).toBeUndefined();
    stop.abort();
    await expect(aborted).rejects.toMatchObject({ name: "AbortError" });
    inner.calls[0]!.resolve(token("t1"));
    expect((await other)?.token).toBe("t1");
  });
});
