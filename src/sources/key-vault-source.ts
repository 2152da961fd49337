/**
 * A Key Vault certificate as the certificate source: amlcert does not issue, it takes the certificate's current
 * version (or a pinned one) and its private key from the backing secret, converts it to the azureml layout
 * (unencrypted PKCS#8 key, chain leaf first, the intermediate fetched from the leaf's AIA URL only when
 * `fetchIntermediates` is on) and hands it to the same validation as an ACME certificate.
 *
 * `offer()` reads the certificate object only (no key): the renewal decision (source-decision.ts) compares it
 * with the one in place, so a run with nothing new reads no secret.
 */
import { X509Certificate } from "node:crypto";
import { AmlcertError, atStage } from "../errors.js";
import { ConversionError, orderChain, readPemBundle, readPkcs12, type SourceMaterial } from "../certs/convert.js";
import type { KeyVault } from "../keyvault/key-vault.js";
import type { CertificateSource, ObtainedCertificate, SourceOffer } from "../ports.js";
import { completeChain, type IssuerFetcher } from "./issuer-fetch.js";

export interface KeyVaultSourceOptions {
  vault: KeyVault;
  certificateName: string;
  /** pin one version; default: the current version */
  version?: string;
  /** fetch a missing intermediate from the leaf's AIA caIssuers URL */
  fetchIntermediates: boolean;
  fetchIssuer: IssuerFetcher;
}

const PKCS12 = "application/x-pkcs12";
const PEM = "application/x-pem-file";

export function createKeyVaultSource(o: KeyVaultSourceOptions): CertificateSource {
  const origin = `keyVault ${o.vault.vaultUrl}/certificates/${o.certificateName}${o.version ? `/${o.version}` : ""}`;
  const name = `certificate ${o.certificateName} in ${o.vault.vaultUrl}`;

  const certificate = async (signal?: AbortSignal) => {
    const c = await o.vault.getCertificate(o.certificateName, o.version, signal);
    if (!c.enabled) {
      throw new AmlcertError("CERT_INVALID", "preflight", `${name} version ${c.version} is disabled in Key Vault; enable it, or pin another version (source.keyVault.version)`);
    }
    return c;
  };

  const nonExportable = (version: string) =>
    new AmlcertError(
      "CERT_INVALID",
      "acme-order",
      `${name} version ${version} has a non-exportable private key, so Key Vault does not hand it out: set the certificate policy's ` +
        `keyProperties.exportable to true (az keyvault certificate set-attributes --policy with "key_props": {"exportable": true}) and create a new version`,
    );

  return {
    kind: "keyVault",
    origin,
    async offer(signal): Promise<SourceOffer> {
      const c = await certificate(signal);
      const leaf = new X509Certificate(c.cer);
      return { version: c.version, serialNumber: leaf.serialNumber.toUpperCase(), fingerprint256: leaf.fingerprint256, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
    },
    async obtain(_req, signal): Promise<ObtainedCertificate> {
      const c = await certificate(signal).catch((err: unknown) => {
        throw atStage(err, "acme-order");
      });
      if (c.exportable === false) throw nonExportable(c.version);
      const secret = await o.vault.getSecret(c.secretName, c.secretVersion, signal).catch((err: unknown) => {
        throw atStage(err, "acme-order");
      });
      const contentType = (secret.contentType ?? c.contentType ?? "").toLowerCase();
      const what = `${name} version ${c.version}`;
      let material: SourceMaterial;
      try {
        if (contentType === PKCS12) material = await readPkcs12(Buffer.from(secret.value, "base64"), `${what} (PKCS#12)`);
        else if (contentType === PEM) material = readPemBundle(secret.value, `${what} (PEM)`);
        else {
          throw new AmlcertError("CERT_INVALID", "acme-order", `${what}: the secret's content type is ${contentType || "not set"}; amlcert reads ${PKCS12} and ${PEM}`);
        }
        if (!material.keyPem) throw nonExportable(c.version);
        const ordered = orderChain(material, what);
        const leaf = new X509Certificate(ordered.chain[0]!);
        if (!leaf.raw.equals(c.cer)) {
          throw new AmlcertError("CERT_INVALID", "acme-order", `${what}: the secret's certificate (serial ${leaf.serialNumber.toUpperCase()}) is not the certificate object's; Key Vault is mid-update, run again`);
        }
        const chain = o.fetchIntermediates
          ? await completeChain(ordered, o.fetchIssuer, what, signal)
          : ordered.missingIssuer
            ? missingIntermediate(what, ordered.missingIssuer)
            : ordered.chain;
        return { chainPem: chain.join(""), keyPem: material.keyPem };
      } catch (err) {
        if (err instanceof ConversionError) throw new AmlcertError("CERT_INVALID", "acme-order", err.message, { cause: err, details: { problem: err.problem } });
        throw err;
      }
    },
  };
}

function missingIntermediate(what: string, missing: { issuer: string; caIssuersUrls: string[] }): never {
  throw new AmlcertError(
    "CERT_INVALID",
    "acme-order",
    `${what} holds only the leaf; its issuer (${missing.issuer}) is missing and Azure ML needs the full chain. Import the certificate into Key Vault with its chain, ` +
      `or set source.keyVault.fetchIntermediates: true to fetch the issuer from the leaf's AIA URL${missing.caIssuersUrls[0] ? ` (${missing.caIssuersUrls[0]})` : " (this leaf names none)"}`,
  );
}
