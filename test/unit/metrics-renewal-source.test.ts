import { describe, expect, it } from "vitest";
import { createMetrics } from "../../src/observability/metrics.js";

const at = new Date("2030-01-01T00:00:00Z");
const current = (renewAtSource: string) => ({ serial: "01", notBefore: "2030-01-01T00:00:00.000Z", notAfter: "2030-04-01T00:00:00.000Z", renewAt: "2030-03-01T00:00:00.000Z", renewAtSource });
const series = (text: string) => text.split("\n").filter((l) => l.startsWith("amlcert_certificate_renewal_source{"));

describe("amlcert_certificate_renewal_source", () => {
  it("when a plan's renewal time came from the CA's ARI window, the target's series says ari; when it later comes from the lifetime, only lifetime is left", async () => {
    const m = createMetrics({ version: "test", defaultMetrics: false });
    await m.sink({ type: "planned", fqdn: "ml.contoso.test", at, renew: false, reason: "UpToDate", message: "", current: current("ari") });
    expect(series(await m.text())).toEqual(['amlcert_certificate_renewal_source{target="ml.contoso.test",source="ari"} 1']);
    await m.sink({ type: "planned", fqdn: "ml.contoso.test", at, renew: false, reason: "UpToDate", message: "", current: current("lifetime") });
    expect(series(await m.text())).toEqual(['amlcert_certificate_renewal_source{target="ml.contoso.test",source="lifetime"} 1']);
  });
});
