import { createHash, X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { describe as describeCert, type CertificateInfo } from "../../src/certs/certificate.js";
import { rolloutOf, secretFor, versionedSecretName, versionsSelector } from "../../src/renewal/certificate-version.js";
import { days, makeLeaf, makeTestCa, type TestLeaf } from "../support/certs.js";

const T0 = new Date("2026-05-01T12:00:00Z");
const FQDN = "ml.contoso.test";
let leaf: TestLeaf;
let info: CertificateInfo;

beforeAll(async () => {
  const { intermediate } = await makeTestCa("amlcert versions");
  leaf = await makeLeaf(intermediate, [FQDN, "www.contoso.test"], T0, new Date(T0.getTime() + days(90)));
  info = describeCert(new X509Certificate(leaf.leafPem));
});

// The labels and annotations are a contract with users (kubectl -l, dashboards) and with earlier amlcert versions:
// they are spelled out here literally.
describe("a stored certificate version's labels and annotations", () => {
  it("when a version is stored, it carries the managed-by, secret-base and fqdn-hash labels and every annotation, spelled as documented", () => {
    const w = secretFor({ name: "azureml-tls-20260501-abcdef12", base: "azureml-tls", fqdn: FQDN, names: [FQDN, "www.contoso.test"], chainPem: leaf.chainPem, keyPem: leaf.keyPem, leaf: info });
    expect(w.name).toBe("azureml-tls-20260501-abcdef12");
    expect(Object.fromEntries(Object.entries(w.data).map(([k, v]) => [k, v.toString()]))).toEqual({ "cert.pem": leaf.chainPem, "key.pem": leaf.keyPem });
    expect(w.labels).toEqual({
      "app.kubernetes.io/managed-by": "amlcert",
      "amlcert.io/secret-base": "azureml-tls",
      "amlcert.io/fqdn-hash": createHash("sha256").update(FQDN).digest("hex").slice(0, 16),
    });
    expect(w.annotations).toEqual({
      "amlcert.io/fqdn": FQDN,
      "amlcert.io/names": `${FQDN},www.contoso.test`,
      "amlcert.io/serial": info.serialNumber,
      "amlcert.io/not-before": "2026-05-01T12:00:00.000Z",
      "amlcert.io/not-after": "2026-07-30T12:00:00.000Z",
      "amlcert.io/sha256-fingerprint": info.fingerprint256,
      "amlcert.io/issuer": info.issuer,
      "amlcert.io/rollout": "pending",
      "amlcert.io/rollout-failures": "0",
    });
  });

  it("the versions of one base name are selected by the managed-by and secret-base labels", () => {
    expect(versionsSelector("azureml-tls")).toBe("app.kubernetes.io/managed-by=amlcert,amlcert.io/secret-base=azureml-tls");
  });

  it("a version's name is the base, the day it became valid and the serial's last 8 hex digits, lower case", () => {
    expect(versionedSecretName("azureml-tls", { ...info, serialNumber: "01ABCDEF0123456789" })).toBe("azureml-tls-20260501-23456789");
  });

  it("a secret amlcert did not annotate has no rollout state and no failures; a garbled failure count reads as 0", () => {
    const s = (annotations: Record<string, string>) => ({ name: "x", type: "Opaque", data: {}, labels: {}, annotations });
    expect(rolloutOf(s({}))).toEqual({ state: undefined, failures: 0 });
    expect(rolloutOf(s({ "amlcert.io/rollout": "pending", "amlcert.io/rollout-failures": "two" }))).toEqual({ state: "pending", failures: 0 });
    expect(rolloutOf(s({ "amlcert.io/rollout": "done", "amlcert.io/rollout-failures": "2" }))).toEqual({ state: "done", failures: 2 });
  });
});
