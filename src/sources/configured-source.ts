/**
 * Which certificate source a target uses (C4): `source.acme` (the default when `source` is left out),
 * `source.keyVault` or `source.kubernetesTls`. Built once per target by the composition root; Key Vault clients
 * are shared per vault and TLS-secret readers per cluster and namespace.
 */
import type { Config, KubernetesSourceConfig, TargetConfig } from "../config/schema.js";
import { createKeyVault, type KeyVault } from "../keyvault/key-vault.js";
import { vaultDnsSuffix, vaultUrlFor } from "../keyvault/vault-url.js";
import type { CertificateSource, KubeCluster, RequestObserver } from "../ports.js";
import type { TokenCredential } from "@azure/identity";
import { createKeyVaultSource } from "./key-vault-source.js";
import { createKubeTlsSource } from "./kube-tls-source.js";
import { httpIssuerFetcher, type IssuerFetcher } from "./issuer-fetch.js";

export interface SourceFactoryOptions {
  config: Pick<Config, "azure">;
  credential: TokenCredential;
  requests?: RequestObserver;
  /** a Kubernetes client for `namespace` of the target's cluster */
  kube: (k: KubernetesSourceConfig, namespace: string) => Pick<KubeCluster, "getSecret">;
  fetchIssuer?: IssuerFetcher;
}

export interface SourceFactory {
  /** the target's source; `acme` builds the ACME source when that is the one configured */
  forTarget(t: TargetConfig, acme: () => CertificateSource): CertificateSource;
}

export function createSourceFactory(o: SourceFactoryOptions): SourceFactory {
  const vaults = new Map<string, KeyVault>();
  const readers = new Map<string, Pick<KubeCluster, "getSecret">>();
  const fetchIssuer = o.fetchIssuer ?? httpIssuerFetcher();
  const vault = (url: string) => {
    const key = url.toLowerCase().replace(/\/+$/, "");
    let v = vaults.get(key);
    if (!v) vaults.set(key, (v = createKeyVault({ vaultUrl: key, credential: o.credential, requests: o.requests })));
    return v;
  };
  const reader = (k: KubernetesSourceConfig, namespace: string) => {
    const key = `${k.inCluster ? "in-cluster" : `${k.kubeconfig ?? ""}#${k.context ?? ""}`}/${namespace}`;
    let r = readers.get(key);
    if (!r) readers.set(key, (r = o.kube(k, namespace)));
    return r;
  };
  return {
    forTarget(t, acme) {
      const kv = t.source?.keyVault;
      if (kv) {
        const url = kv.vaultUrl ?? vaultUrlFor(kv.vaultName!, vaultDnsSuffix(o.config.azure.cloud, o.config.azure.keyVaultDnsSuffix));
        return createKeyVaultSource({ vault: vault(url), certificateName: kv.certificateName, version: kv.version, fetchIntermediates: kv.fetchIntermediates, fetchIssuer });
      }
      const tls = t.source?.kubernetesTls;
      if (tls) return createKubeTlsSource({ kube: reader(t.kubernetes, tls.namespace), namespace: tls.namespace, secretName: tls.secretName });
      return acme();
    },
  };
}
