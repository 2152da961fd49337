import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { targetOffsetMs } from "../../src/schedule/offset.js";

const JITTER = 30 * 60_000;

describe("targetOffsetMs", () => {
  it("is fixed by the FQDN: the same value in every process and version, whatever its case or trailing dot", () => {
    // the documented formula: the first 48 bits of SHA-256("amlcert-offset:" + name), scaled to [0, jitter)
    const expected = Math.floor((createHash("sha256").update("amlcert-offset:ml.contoso.test").digest().readUIntBE(0, 6) / 2 ** 48) * JITTER);
    expect(targetOffsetMs("ml.contoso.test", JITTER)).toBe(expected);
    expect(targetOffsetMs("ml.contoso.test", JITTER)).toBe(OFFSET_ML_CONTOSO_TEST);
    expect(targetOffsetMs("ML.Contoso.Test.", JITTER)).toBe(OFFSET_ML_CONTOSO_TEST);
  });

  it("is in [0, jitter), and 0 when the jitter is 0", () => {
    for (let i = 0; i < 2000; i++) {
      const v = targetOffsetMs(`t${i}.contoso.test`, JITTER);
      expect(Number.isInteger(v)).toBe(true);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(JITTER);
    }
    expect(targetOffsetMs("ml.contoso.test", 0)).toBe(0);
    expect(targetOffsetMs("ml.contoso.test", 1)).toBe(0);
    expect(targetOffsetMs("api.contoso.test", JITTER)).not.toBe(OFFSET_ML_CONTOSO_TEST);
  });

  it("spreads a fleet across the whole jitter: 1000 targets in ten bands of 3 minutes hold 100 ± 40 each", () => {
    const bands = Array.from({ length: 10 }, () => 0);
    for (let i = 0; i < 1000; i++) bands[Math.floor(targetOffsetMs(`endpoint-${i}.westeurope.contoso.test`, JITTER) / (JITTER / 10))]!++;
    for (const n of bands) {
      expect(n).toBeGreaterThan(60);
      expect(n).toBeLessThan(140);
    }
    // and no two of a handful of similar names share a minute
    const minutes = ["ml1.contoso.test", "ml2.contoso.test", "ml3.contoso.test", "ml4.contoso.test"].map((n) => Math.floor(targetOffsetMs(n, JITTER) / 60_000));
    expect(new Set(minutes).size).toBe(4);
  });
});

/** targetOffsetMs("ml.contoso.test", 30 min), pinned so a change of the formula (which would move every target's time) is seen */
const OFFSET_ML_CONTOSO_TEST = 639_000; // 10 min 39 s
