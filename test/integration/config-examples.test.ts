/**
 * The configuration examples in config/ are configurations amlcert accepts (its own loader and schema, as
 * `amlcert plan --config <file>` reads them), and each shows what its comment says it shows.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { ROOT } from "../harness/harness.js";

const DIR = join(ROOT, "config");
/** The EAB example's mounted HMAC key (the loader reads it; a test stand-in for the mounted Secret) */
const HMAC_FILE = "/var/run/secrets/amlcert/hmac";

const load = (file: string) =>
  loadConfig({
    path: join(DIR, file),
    env: {},
    readFile: (p) => (p === HMAC_FILE ? "c2VjcmV0LWhtYWMta2V5LWZvci10ZXN0cw" : readFileSync(p, "utf8")),
  });

describe("config/ examples", () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).sort();

  it("are the six documented examples", () => {
    expect(files).toEqual(["aks-workload-identity.yaml", "amlcert.example.yaml", "arc-service-principal.yaml", "commercial-ca-eab.yaml", "self-hosted-fleet.yaml", "staging-first.yaml"]);
  });

  it.each(files)("when %s is loaded, amlcert's own validation accepts it", (file) => {
    const { config } = load(file);
    expect(config.targets.length).toBeGreaterThan(0);
  });

  it("a broken example would be refused (the check can fail): a target without its dnsZone", () => {
    const text = readFileSync(join(DIR, "aks-workload-identity.yaml"), "utf8").replace(/    dnsZone:\n(      .*\n){3}/, "");
    expect(() => loadConfig({ path: "broken.yaml", env: {}, readFile: () => text })).toThrow("targets[0].dnsZone: is required");
  });

  it("AKS with workload identity and Let's Encrypt: in-cluster, on managedClusters, the manifests' account secret and slots", () => {
    const { config } = load("aks-workload-identity.yaml");
    expect(config.acme.directory).toBe("letsencrypt");
    expect(config.acme.accountKey).toEqual({ secret: "amlcert-acme-account", kubernetes: { inCluster: true, kubeconfig: undefined, context: undefined } });
    expect(config.targets.map((t) => [t.extension.clusterType, t.kubernetes.inCluster, t.secretName, t.manageRecord])).toEqual([["managedClusters", true, "amlcert-tls", true]]);
  });

  it("Arc with a service principal: connectedClusters, behind its own load balancer", () => {
    const { config } = load("arc-service-principal.yaml");
    expect(config.targets.map((t) => [t.extension.clusterType, t.kubernetes.inCluster, t.expectedAddress, t.probeAddress])).toEqual([["connectedClusters", true, "10.20.30.40", "10.20.30.40:443"]]);
  });

  it("a self-hosted fleet: several clusters, each through its own kubeconfig context, one account key file, the daemon's schedule", () => {
    const { config } = load("self-hosted-fleet.yaml");
    expect(config.targets.map((t) => t.kubernetes.context)).toEqual(["aks-ml-weu", "aks-ml-eus", "arc-factory-01"]);
    expect(config.targets.every((t) => !t.kubernetes.inCluster && t.kubernetes.kubeconfig === "/kube/config")).toBe(true);
    expect(config.acme.accountKey.file).toBe("/var/lib/amlcert/acme-account.key");
    expect(config.daemon.schedule).toBe("0 */6 * * *");
  });

  it("staging first: Let's Encrypt's staging CA with its roots for the TLS check", () => {
    const { config } = load("staging-first.yaml");
    expect(config.acme.directory).toBe("letsencrypt-staging");
    expect(config.verify.trustBundleFile).toBe("/etc/amlcert/letsencrypt-staging-roots.pem");
  });

  it("a commercial CA with External Account Binding: the key id in the file, the HMAC key only from the mounted file, never in the config", () => {
    const loaded = load("commercial-ca-eab.yaml");
    expect(loaded.config.acme.directory).toBe("zerossl");
    expect(loaded.config.acme.eab?.keyId).toBe("kid-0123456789abcdef");
    expect(JSON.stringify(loaded.config)).not.toContain("c2VjcmV0LWhtYWMta2V5LWZvci10ZXN0cw");
    expect(readFileSync(join(DIR, "commercial-ca-eab.yaml"), "utf8")).not.toMatch(/^\s*hmacKey:/m);
    expect(loaded.config.renewal.renewBefore).toBe(30 * 24 * 3600 * 1000);
  });
});
