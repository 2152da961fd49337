/**
 * A Kubernetes TLS secret as the certificate source (e.g. the one cert-manager keeps renewed): `tls.crt` (the
 * chain, leaf first or not) and `tls.key` (PKCS#1, SEC1 or PKCS#8) from one secret, read by name in its namespace,
 * converted to the azureml layout. amlcert rolls out when the certificate in it changes (source-decision.ts).
 * Needs only `get` on that one secret.
 */
import { X509Certificate } from "node:crypto";
import { AmlcertError, atStage } from "../errors.js";
import { ConversionError, orderChain, readPemBundle, toPkcs8Pem } from "../certs/convert.js";
import type { CertificateSource, KubeCluster, ObtainedCertificate, SourceOffer, StoredSecret } from "../ports.js";

export interface KubeTlsSourceOptions {
  /** a client for the secret's namespace */
  kube: Pick<KubeCluster, "getSecret">;
  namespace: string;
  secretName: string;
}

export function createKubeTlsSource(o: KubeTlsSourceOptions): CertificateSource {
  const ref = `${o.namespace}/${o.secretName}`;
  const name = `source secret ${ref}`;

  const read = async (): Promise<{ secret: StoredSecret; crt: string }> => {
    const secret = await o.kube.getSecret(o.secretName);
    if (!secret) {
      throw new AmlcertError("KUBE_NOT_FOUND", "preflight", `${name} (source.kubernetesTls) does not exist; create it (cert-manager's Certificate spec.secretName) or fix namespace/secretName`);
    }
    const crt = secret.data["tls.crt"]?.toString("utf8") ?? "";
    if (crt.trim() === "") throw new AmlcertError("CERT_INVALID", "preflight", `${name} has no tls.crt`);
    return { secret, crt };
  };
  const convert = <T>(run: () => T): T => {
    try {
      return run();
    } catch (err) {
      if (err instanceof ConversionError) throw new AmlcertError("CERT_INVALID", "preflight", err.message, { cause: err, details: { problem: err.problem } });
      throw err;
    }
  };
  const leafOf = (crt: string): X509Certificate =>
    convert(() => {
      const certs = readPemBundle(crt, `${name} tls.crt`).certificates;
      if (certs.length === 0) throw new ConversionError("no-certificate", `${name}: tls.crt holds no PEM certificate`);
      return new X509Certificate(certs[0]!);
    });

  return {
    kind: "kubernetesTls",
    origin: `kubernetesTls ${ref}`,
    async offer(): Promise<SourceOffer> {
      const { secret, crt } = await read();
      const key = secret.data["tls.key"]?.toString("utf8");
      // the leaf is the certificate the key belongs to (cert-manager writes it first; others may not)
      const leaf = key ? new X509Certificate(convert(() => orderChain({ certificates: readPemBundle(crt, `${name} tls.crt`).certificates, keyPem: toPkcs8Pem(key, `${name} tls.key`) }, name)).chain[0]!) : leafOf(crt);
      return {
        version: secret.resourceVersion ?? "",
        serialNumber: leaf.serialNumber.toUpperCase(),
        fingerprint256: leaf.fingerprint256,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
      };
    },
    async obtain(): Promise<ObtainedCertificate> {
      const { secret, crt } = await read().catch((err: unknown) => {
        throw atStage(err, "acme-order");
      });
      const keyText = secret.data["tls.key"]?.toString("utf8") ?? "";
      if (keyText.trim() === "") throw new AmlcertError("CERT_INVALID", "acme-order", `${name} has no tls.key`);
      try {
        const keyPem = toPkcs8Pem(keyText, `${name} tls.key`);
        const ordered = orderChain({ certificates: readPemBundle(crt, `${name} tls.crt`).certificates, keyPem }, name);
        return { chainPem: ordered.chain.join(""), keyPem };
      } catch (err) {
        if (err instanceof ConversionError) throw new AmlcertError("CERT_INVALID", "acme-order", err.message, { cause: err, details: { problem: err.problem } });
        throw err;
      }
    },
  };
}
