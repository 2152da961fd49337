/**
 * RFC 6761 §6.3 for this process: every name under `localhost.` resolves to loopback (127.0.0.1), as
 * systemd-resolved, curl and the browsers already do. glibc's files+dns does not, so the Key Vault stand-in's
 * host name (`<vault>.vault.localhost`, which the Key Vault SDK's challenge check needs: the request's host must end
 * in `.<challenge resource host>`) would not resolve here. Import it for its effect, in-process (integration tests)
 * or in a CLI child through NODE_OPTIONS=--import (e2e tests); amlcert's own code is not changed by it.
 */
import dns from "node:dns";

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

const isLocalhostName = (host: unknown): host is string => typeof host === "string" && /(^|\.)localhost\.?$/i.test(host);

const original = dns.lookup;
const patched = function lookup(host: string, options: unknown, callback?: LookupCallback) {
  const cb = (typeof options === "function" ? options : callback) as LookupCallback;
  const opts = (typeof options === "function" ? {} : typeof options === "number" ? { family: options } : (options ?? {})) as dns.LookupOptions;
  if (!isLocalhostName(host) || host.toLowerCase() === "localhost" || opts.family === 6) {
    return (original as (...a: unknown[]) => void).call(dns, host, typeof options === "function" ? {} : options, cb);
  }
  if (opts.all) process.nextTick(cb, null, [{ address: "127.0.0.1", family: 4 }]);
  else process.nextTick(cb, null, "127.0.0.1", 4);
} as unknown as typeof dns.lookup;

if ((dns.lookup as { amlcertLocalhost?: boolean }).amlcertLocalhost !== true) {
  Object.assign(patched, { amlcertLocalhost: true });
  dns.lookup = patched;
}

/** The absolute path of this module's compiled JavaScript, for `NODE_OPTIONS=--import <path>` in a child. */
export const LOCALHOST_NAMES_MODULE = new URL(import.meta.url).pathname.replace(/\.ts$/, ".js").replace(/\/test\/servers\//, "/dist/test/servers/").replace(/\/dist\/dist\//, "/dist/");
