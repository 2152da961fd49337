/**
 * Every scalar setting that can also come from the environment: its path in the YAML file, its variable, its type
 * and its documentation. `X_FILE` reads the value of variable X from a file (mounted secrets). The README's
 * configuration table is generated from this list and the schema's defaults (npm run docs:config).
 */
export type FieldKind = "string" | "number" | "boolean" | "list" | "duration";

export interface Field {
  path: string;
  env: string;
  kind: FieldKind;
  doc: string;
  /** the value is a secret: only ever read, never logged or printed */
  secret?: boolean;
}

const f = (path: string, kind: FieldKind, doc: string, secret = false): Field => ({
  path,
  env: `AMLCERT_${path.replace(/([a-z])([A-Z])/g, "$1_$2").replace(/\./g, "_").toUpperCase()}`,
  kind,
  doc,
  secret,
});

export const fields: Field[] = [
  f("acme.directory", "string", "ACME directory: a preset (letsencrypt, letsencrypt-staging, zerossl, google, google-staging, buypass) or an https:// URL."),
  f("acme.email", "string", "Contact e-mail for the ACME account (expiry notices, if the CA sends any)."),
  f("acme.eab.keyId", "string", "External Account Binding key ID (ZeroSSL, Google, and CAs that require EAB)."),
  f("acme.eab.hmacKey", "string", "EAB HMAC key (base64url): give it as AMLCERT_ACME_EAB_HMAC_KEY_FILE (a mounted secret) or as eab.hmacKeyFile in YAML, not inline. Never logged.", true),
  f("acme.keyType", "string", "Certificate key type: rsa2048 (default), rsa3072, rsa4096, ecdsa-p256, ecdsa-p384. A new key is made for every renewal."),
  f("acme.profile", "string", "The CA's certificate profile to order, one its directory lists in meta.profiles (Let's Encrypt: classic 90 days, tlsserver 45 days, shortlived 160 hours); checked against the directory before ordering. targets[].profile overrides it."),
  f("acme.requestTimeout", "duration", "Bound on each try of a request to the CA; a try that runs longer is retried."),
  f("acme.maxRetries", "number", "Retries of a request to the CA after 429, 5xx, a timed-out try or a refused connection (exponential backoff with jitter, or the CA's Retry-After). badNonce is retried by acme-client on its own."),
  f("acme.maxRetryAfter", "duration", "The longest Retry-After from the CA that amlcert waits; a longer one ends the run at once with ACME_RATE_LIMITED and the time to try again (details.retryAt; the next run before it orders nothing)."),
  f("acme.accountKey.file", "string", "Keep the ACME account key in this file (self-hosted). Exclusive with accountKey.secret."),
  f("acme.accountKey.secret", "string", "Keep the ACME account key in this Kubernetes secret in namespace azureml (in-cluster; default amlcert-acme-account)."),
  f("azure.cloud", "string", "Azure cloud: AzurePublicCloud, AzureChinaCloud or AzureUSGovernment. Sets the ARM endpoint, the Entra authority and the token scope."),
  f("azure.resourceManagerEndpoint", "string", "Override the ARM endpoint (https://)."),
  f("azure.authorityHost", "string", "Override the Entra ID authority host (https://). Instance discovery is turned off for non-Microsoft hosts."),
  f("azure.tokenScope", "string", "Override the ARM token scope (default: <ARM endpoint>/.default)."),
  f("azure.requestTimeout", "duration", "Bound on each try of an ARM request (Azure DNS, the extension), from sending it to the last byte of the answer; a try that runs longer is retried."),
  f("azure.maxRetries", "number", "Retries of an ARM request after 408, 429, 5xx, a timed-out try or a refused connection (exponential backoff with jitter, or ARM's Retry-After)."),
  f("azure.maxRetryAfter", "duration", "The longest Retry-After from ARM that amlcert waits; a longer one fails the run at once with AZURE_THROTTLED (its retry time in the log)."),
  f("kubernetesApi.requestTimeout", "duration", "Bound on each try of a Kubernetes API request."),
  f("kubernetesApi.maxRetries", "number", "Retries of a Kubernetes API request after 429 (API priority and fairness; any verb) or, for reads, 5xx, a timed-out try or a refused connection."),
  f("kubernetesApi.maxRetryAfter", "duration", "The longest Retry-After from the Kubernetes API server that amlcert waits; a longer one fails at once."),
  f("dns.nameServers", "list", "Authoritative name servers to poll for propagation, host or host:port, comma-separated. Default: the zone's nameServers from ARM."),
  f("dns.resolvers", "list", "Resolvers for the 'system resolver' check, host or host:port. Default: the system's resolv.conf."),
  f("dns.propagationTimeout", "duration", "How long to wait for every authoritative server to serve the TXT value."),
  f("dns.propagationInterval", "duration", "Longest gap between two rounds of the propagation check. The first check is immediate; the gap starts at 100 ms and grows with the time waited (a tenth of it), up to this."),
  f("dns.propagationSettle", "duration", "Extra wait after every authoritative server serves the TXT value, before the CA is told to validate. Default 0: raise it if your CA reports DNS failures for values amlcert saw served."),
  f("dns.txtTtl", "number", "TTL in seconds of the TXT record sets amlcert creates."),
  f("dns.queryTimeout", "duration", "Bound on one try of a DNS query (propagation and FQDN checks); a server that does not answer in time is reported as timed out, not as failing."),
  f("dns.queryTries", "number", "Tries of a DNS query per server before it counts as timed out."),
  f("renewal.renewBefore", "duration", "Renew this long before expiry. Default: at 2/3 of the certificate's lifetime (30 days before expiry for 90-day certificates)."),
  f("renewal.secretMode", "string", "slots (default): two fixed secrets <secretName>-a and <secretName>-b (created by the manifests in deploy/); each renewal writes the one not served and points sslSecret and scoringFe.sslSecret at it, the other keeps the previous certificate. versioned: each renewal writes a new secret <secretName>-<date>-<serial> (needs the versioned RBAC overlay: list, create, delete). fixed: overwrite <secretName> in place (azureml-fe is not rolled)."),
  f("renewal.keepPrevious", "number", "Versioned mode: how many previous secret versions to keep after the new one is proven served."),
  f("renewal.concurrency", "number", "How many targets one run renews at once (each takes its own cluster's Lease); the ACME orders and Azure writes of a run never exceed this many in flight."),
  f("extension.lroTimeout", "duration", "Bound on the extension update's long-running operation."),
  f("extension.pollInterval", "duration", "Polling interval for the extension update operation."),
  f("extension.busyTimeout", "duration", "How long a run waits for an extension that is busy with another operation (provisioningState Updating, Creating, Deleting) before it is skipped (ExtensionBusy); nothing is ordered or stored meanwhile."),
  f("extension.busyInterval", "duration", "Interval between reads of a busy extension while the run waits for its operation to end."),
  f("verify.trustBundleFile", "string", "PEM bundle the TLS check trusts (e.g. a staging CA's root). Default: the system store plus NODE_EXTRA_CA_CERTS."),
  f("verify.port", "number", "Port of azureml-fe's HTTPS listener for the TLS check."),
  f("verify.timeout", "duration", "How long the TLS check waits for azureml-fe to serve the new certificate while pods roll."),
  f("verify.interval", "duration", "Interval between TLS checks."),
  f("verify.probeTimeout", "duration", "Bound on one TLS probe of azureml-fe (connect and handshake)."),
  f("daemon.schedule", "string", "amlcert daemon: when to check every target, as a cron expression (node-cron; 5 fields, or 6 with seconds first)."),
  f("daemon.jitter", "duration", "amlcert daemon: each target runs up to this long after the scheduled time, at an offset fixed per target, so a fleet does not reach the CA at once."),
  f("daemon.listen", "string", "amlcert daemon: host:port of the HTTP listener for /metrics, /healthz and /readyz (the port is required)."),
  f("daemon.runAtStart", "boolean", "amlcert daemon: check every target once at start, before the first scheduled time."),
  f("metrics.pushgateway", "string", "amlcert renew (CronJob mode): push the run's metrics to this Prometheus Pushgateway URL at the end of the run (grouping key job and target)."),
  f("metrics.job", "string", "The job label of pushed metrics."),
  f("history.configMap", "string", "ConfigMap in namespace azureml holding the durable renewal history (one key per target)."),
  f("log.level", "string", "trace, debug, info, warn or error."),
  f("log.format", "string", "auto (pretty on a TTY, JSON lines otherwise), json or pretty."),
];

export const targetFieldDocs: Record<string, string> = {
  fqdn: "The endpoint's FQDN (certificate CN and first SAN; also sslCname).",
  sans: "Extra SANs (may include *.zone wildcards).",
  "dnsZone.subscriptionId / resourceGroup / zone": "The Azure DNS zone holding the FQDN (TXT challenges; optional A record).",
  challengeZones: "Zones (same shape as dnsZone) that a CNAME on _acme-challenge may point into (delegated validation).",
  "extension.subscriptionId / resourceGroup / clusterType / clusterName / name": "The Microsoft.AzureML.Kubernetes extension; clusterType managedClusters (AKS) or connectedClusters (Arc).",
  "kubernetes.inCluster | kubernetes.kubeconfig + context": "How to reach the cluster's API server.",
  secretName: "Base name of the TLS secret in namespace azureml (slots mode appends -a/-b, at most 61 characters; versioned mode -<date>-<serial>, at most 45).",
  secretMode: "Per-target override of renewal.secretMode.",
  expectedAddress: "The address the FQDN must resolve to (nodePort/clusterIP setups). Default: azureml-fe's LoadBalancer ingress.",
  probeAddress: "host[:port] the TLS check connects to. Default: the expected address and verify.port.",
  manageRecord: "Create or update the FQDN's A record in dnsZone to azureml-fe's ingress IP.",
};
