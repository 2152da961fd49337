/**
 * End to end: `amlcert doctor`, the built CLI against Pebble and the loopback stand-ins. A healthy setup passes; each
 * problem a first run meets (a missing Azure role, a missing Kubernetes rule, a wrong delegation, a busy extension,
 * the wrong extension, no azureml-fe, a DNS mismatch, TLS switched off) is reported with its fix and exit 3. Every
 * run is checked to have written nothing: no request but GET at ARM, no request at the Kubernetes API but GETs and
 * SelfSubjectAccessReviews (which store nothing), and the DNS zone and the ACME account key as they were.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startHarness, DNS_RG, OBJECT_ID, ROOT, SUBSCRIPTION, type Harness } from "../harness/harness.js";
import { startDnsServer, type DnsServer } from "../servers/dns-server.js";
import { ZoneStore } from "../servers/zone-store.js";
import type { DoctorCheck, DoctorReport } from "../../src/app/doctor.js";
import { formatDoctorReport } from "../../src/app/doctor-view.js";

const FQDN = "ml.contoso.test";
const ZONE = "contoso.test";

describe("amlcert doctor against Pebble and the stand-ins", () => {
  let h: Harness;
  let config: string;

  beforeAll(async () => {
    h = await startHarness();
    config = h.writeConfig();
  });
  afterAll(async () => {
    await h?.stop();
  });
  afterEach(async () => {
    await h.reset();
  });

  const zoneSnapshot = () => JSON.stringify(h.arm.zones.listRecordSets(h.arm.zones.zoneFor(FQDN)!));

  /** `amlcert doctor` with `args`, and a check that it wrote nothing anywhere. */
  async function doctor(args: string[] = ["--config", config]): Promise<{ code: number; report: DoctorReport; stderr: string; stdout: string }> {
    const kube = h.clusters[0]!.kube;
    const [armBefore, kubeBefore, zoneBefore, accountBefore] = [h.arm.requests.length, kube.requests.length, zoneSnapshot(), JSON.stringify(kube.getSecretObject("azureml", "amlcert-acme-account") ?? null)];
    const run = await h.runCli(["doctor", ...args]);
    expect(h.arm.requests.slice(armBefore).filter((r) => r.method !== "GET"), run.stderr).toEqual([]);
    expect(kube.requests.slice(kubeBefore).filter((r) => r.method !== "GET" && r.resource !== "selfsubjectaccessreviews"), run.stderr).toEqual([]);
    expect(zoneSnapshot()).toBe(zoneBefore);
    expect(JSON.stringify(kube.getSecretObject("azureml", "amlcert-acme-account") ?? null)).toBe(accountBefore);
    expect(run.lines, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toHaveLength(1);
    return { code: run.code, report: run.lines[0] as unknown as DoctorReport, stderr: run.stderr, stdout: run.stdout };
  }

  const check = (r: DoctorReport, id: string): DoctorCheck => {
    const c = r.checks.find((x) => x.id === id);
    if (!c) throw new Error(`no check ${id} in\n${formatDoctorReport(r)}`);
    return c;
  };
  const failing = (r: DoctorReport) => r.checks.filter((c) => c.state === "fail").map((c) => c.id);

  it("when everything is in place, every check passes (the ECDSA key type of the test config only warns) and it exits 0", async () => {
    const { code, report, stderr } = await doctor();
    expect(code, `${formatDoctorReport(report)}\n${stderr}`).toBe(0);
    expect(report.ok).toBe(true);
    expect(failing(report)).toEqual([]);
    // a first run: the extension names no secret yet, which the first renewal sets
    expect(report.checks.filter((c) => c.state === "warn").map((c) => c.id)).toEqual(["extension.secret", "key-type"]);
    expect(check(report, "extension.secret").message).toBe("the extension names no sslSecret yet: the first renewal sets it");
    for (const id of ["azure.identity", "azure.dns.zone-read", "azure.dns.txt-write", "azure.dns.txt-delete", "azure.extension.write", "dns.delegation", "extension.type", "extension.state", "kubernetes.azureml-fe", "dns.fqdn", "acme.directory", "acme.account"]) {
      expect(check(report, id).state, id).toBe("pass");
    }
    expect(check(report, "azure.identity").message).toContain(OBJECT_ID);
    expect(check(report, "kubernetes.leases.update").message).toBe("may update leases/amlcert (coordination.k8s.io) in namespace azureml");
    expect(check(report, "acme.account").message).toMatch(/no ACME account key stored yet|exists/);
  });

  it("when the identity has only the extension role, each DNS action fails with the role to assign and the zone or record set as its scope", async () => {
    h.arm.assignRole({ principalOid: OBJECT_ID, roleFile: join(ROOT, "deploy/azure/amlcert-extension-role.json"), scope: "/" });
    const { code, report } = await doctor();
    expect(code).toBe(3);
    expect(report.ok).toBe(false);
    const zoneId = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${DNS_RG}/providers/Microsoft.Network/dnszones/${ZONE}`;
    const write = check(report, "azure.dns.txt-write");
    expect(write.state).toBe("fail");
    expect(write.message).toBe(`may not add values to TXT record set _acme-challenge.ml in zone ${ZONE}: no role assignment grants Microsoft.Network/dnszones/TXT/write on ${zoneId}/TXT/_acme-challenge.ml`);
    expect(write.fix).toContain("amlcert DNS-01 challenge writer");
    expect(write.fix).toContain(`(object id ${OBJECT_ID}) on ${zoneId}/TXT/_acme-challenge.ml`);
    expect(check(report, "azure.dns.zone-read").state).toBe("fail");
    expect(check(report, "azure.extension.write").state).toBe("pass");
  });

  it("when the Role lacks update on the Lease, that call fails with the exact rule to add", async () => {
    const kube = h.clusters[0]!.kube;
    const role = kube.store.peek("roles", "azureml", "amlcert")!;
    const original = structuredClone(role);
    type Rule = { apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; verbs: string[] };
    const rules = (role.rules as Rule[]).map((r) => (r.resources?.includes("leases") ? { ...r, verbs: r.verbs.filter((v) => v !== "update") } : r));
    kube.putObject({ ...(role as object), apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", rules } as never);
    try {
      const { code, report } = await doctor();
      expect(code).toBe(3);
      const lease = check(report, "kubernetes.leases.update");
      expect(lease.state).toBe("fail");
      expect(lease.message).toMatch(/^may not update leases\/amlcert \(coordination\.k8s\.io\) in namespace azureml/);
      expect(lease.fix).toContain('resources: ["leases"]\n    resourceNames: ["amlcert"]\n    verbs: ["update"]');
      expect(check(report, "kubernetes.leases.get").state).toBe("pass");
    } finally {
      kube.putObject({ ...(original as object), apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role" } as never);
    }
  });

  describe("when resolvers see the zone delegated to other name servers than Azure DNS serves it from", () => {
    let world: DnsServer;
    beforeAll(async () => {
      const zones = new ZoneStore();
      const z = zones.addZone("sub", "rg", ZONE, ["ns1-07.azure-dns.test", "ns2-07.azure-dns.test"]);
      zones.putRecordSet(z, "A", "ml", { ttl: 300, addresses: [h.clusters[0]!.fe.host] });
      world = await startDnsServer({ zones });
    });
    afterAll(async () => {
      await world?.close();
    });

    it("the delegation check fails, names both sets and says to fix the parent zone", async () => {
      const wrong = h.writeConfig({ dns: { resolvers: [world.address] } }, "world.yaml");
      const { code, report } = await doctor(["--config", wrong]);
      expect(code).toBe(3);
      expect(failing(report)).toEqual(["dns.delegation"]);
      const d = check(report, "dns.delegation");
      expect(d.message).toBe(
        `${ZONE} is delegated to ns1-07.azure-dns.test, ns2-07.azure-dns.test but Azure DNS serves it from ns1-01.azure-dns.test, ns2-01.azure-dns.test: the CA will not see amlcert's TXT values, while amlcert's own check of the Azure servers passes`,
      );
      expect(d.fix).toBe(`change the NS records for ${ZONE} at the parent zone (or the registrar) to ns1-01.azure-dns.test, ns2-01.azure-dns.test`);
    });
  });

  it("when the extension is busy updating, it fails before any order would be placed", async () => {
    await h.seedExtension({ provisioningState: "Updating" });
    const { code, report } = await doctor();
    expect(code).toBe(3);
    expect(failing(report)).toEqual(["extension.state"]);
    expect(check(report, "extension.state").message).toBe("the extension is busy (provisioningState Updating); a renewal now would wait for it or be skipped");
  });

  it("when extension.name points at an extension of another type, it says which type it found", async () => {
    const ext = h.clusters[0]!.extension;
    h.arm.addExtension({ ...ext, name: "flux", extensionType: "microsoft.flux", configurationSettings: {} });
    const base = parse(readFileSync(config, "utf8")) as { targets: { extension: Record<string, string> }[] };
    const other = h.writeConfig({ targets: [{ ...base.targets[0]!, extension: { ...base.targets[0]!.extension, name: "flux" } }] }, "flux.yaml");
    const { code, report } = await doctor(["--config", other]);
    expect(code).toBe(3);
    expect(check(report, "extension.type")).toEqual({
      id: "extension.type",
      state: "fail",
      message: "the extension's type is microsoft.flux, not Microsoft.AzureML.Kubernetes",
      fix: "point extension.name at the Azure ML extension (az k8s-extension list)",
    });
  });

  it("when service azureml-fe does not exist, it fails with the hint to enable inference", async () => {
    const kube = h.clusters[0]!.kube;
    const svc = structuredClone(kube.store.peek("services", "azureml", "azureml-fe")!);
    kube.deleteObject("v1", "Service", "azureml", "azureml-fe");
    try {
      const { code, report } = await doctor();
      expect(code).toBe(3);
      expect(check(report, "kubernetes.azureml-fe")).toEqual({
        id: "kubernetes.azureml-fe",
        state: "fail",
        message: "service azureml-fe does not exist in namespace azureml",
        fix: "install the extension with inference enabled (enableInference=True)",
      });
    } finally {
      kube.putObject({ ...(svc as object), apiVersion: "v1", kind: "Service" } as never);
    }
  });

  it("when the FQDN resolves elsewhere than azureml-fe, the DNS check fails with the fix", async () => {
    const zone = h.arm.zones.zoneFor(FQDN)!;
    h.arm.zones.putRecordSet(zone, "A", "ml", { ttl: 300, addresses: ["10.9.9.9"] });
    const { code, report } = await doctor();
    expect(code).toBe(3);
    expect(failing(report)).toEqual(["dns.fqdn"]);
    const dns = check(report, "dns.fqdn");
    expect(dns.message).toContain("10.9.9.9");
    expect(dns.fix).toBe("point the A record at azureml-fe's address, or set manageRecord: true");
  });

  it("when the extension runs with allowInsecureConnections=True, it fails and names the deliberate way to turn TLS on", async () => {
    const ext = h.arm.getExtension(h.clusters[0]!.extension)!;
    h.arm.addExtension({ ...h.clusters[0]!.extension, extensionType: ext.extensionType, configurationSettings: { ...ext.configurationSettings, allowInsecureConnections: "True" } });
    const { code, report } = await doctor();
    expect(code).toBe(3);
    expect(failing(report)).toEqual(["extension.insecure"]);
    expect(check(report, "extension.insecure").fix).toBe("run amlcert renew --enable-tls once: it issues the certificate, then turns TLS on (HTTP scoring clients stop working)");
  });
});
