/** A target's renewal settings as the unit tests start from them: versioned mode, one previous version kept. */
import type { RenewSettings } from "../../src/renewal/deps.js";

export function renewSettings(fqdn: string, secretName: string, overrides: Partial<RenewSettings> = {}): RenewSettings {
  return {
    fqdn,
    names: [fqdn],
    secretName,
    secretMode: "versioned",
    keepPrevious: 1,
    force: false,
    probe: { port: 443 },
    manageRecord: false,
    recordTtlSeconds: 300,
    verifyTimeoutMs: 60_000,
    verifyIntervalMs: 5_000,
    ...overrides,
  };
}
