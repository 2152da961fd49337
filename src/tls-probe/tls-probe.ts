/**
 * The TLS probe: one TLS 1.2 handshake (the only version azureml-fe speaks) to an address with SNI, reporting
 * which certificate is served. Verification stays on: a chain that does not verify against the trust store, or a
 * name that does not match, is reported as authorized=false with the reason (the handshake is refused, so no
 * serial is known then). Node's default trust store (system/bundled + NODE_EXTRA_CA_CERTS) is used unless `caPem`
 * names the trust anchors.
 */
import { connect, type TLSSocket } from "node:tls";
import { AmlcertError } from "../errors.js";
import type { TlsProbe, TlsProbeResult } from "../ports.js";

export interface TlsProbeOptions {
  /** PEM trust anchors; undefined = Node's default trust store (system + NODE_EXTRA_CA_CERTS) */
  caPem?: string;
  /** bound on connect + handshake */
  timeoutMs: number;
}

/** OpenSSL verification results that mean "connected, but the certificate is not trusted for this name". */
const VERIFY_ERROR_CODES = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CRL_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CRL_NOT_YET_VALID",
  "CRL_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "ERROR_IN_CRL_LAST_UPDATE_FIELD",
  "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_TLS_CERT_ALTNAME_FORMAT",
]);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function createTlsProbe(opts: TlsProbeOptions): TlsProbe {
  return {
    probe(target) {
      return new Promise<TlsProbeResult>((resolve, reject) => {
        let settled = false;
        let socket: TLSSocket | undefined;
        const finish = (fn: () => void) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket?.destroy();
          fn();
        };
        const where = `${target.host}:${target.port} (SNI ${target.servername})`;
        const timer = setTimeout(() => {
          finish(() =>
            reject(
              new AmlcertError("TLS_PROBE_FAILED", "verify-tls", `TLS handshake with ${where} did not finish within ${opts.timeoutMs} ms (verify.probeTimeout)`, {
                details: { host: target.host, port: target.port, servername: target.servername },
              }),
            ),
          );
        }, opts.timeoutMs);

        socket = connect({
          host: target.host,
          port: target.port,
          servername: target.servername,
          minVersion: "TLSv1.2",
          maxVersion: "TLSv1.2",
          ...(opts.caPem === undefined ? {} : { ca: opts.caPem }),
        });
        socket.once("secureConnect", () => {
          const s = socket!;
          const peer = s.getPeerX509Certificate();
          if (peer === undefined) {
            finish(() =>
              reject(new AmlcertError("TLS_PROBE_FAILED", "verify-tls", `${where} completed a handshake without a certificate`)),
            );
            return;
          }
          const result: TlsProbeResult = {
            serialNumber: peer.serialNumber.toUpperCase(),
            fingerprint256: peer.fingerprint256,
            protocol: s.getProtocol() ?? "unknown",
            authorized: s.authorized,
            ...(s.authorized ? {} : { authorizationError: String(s.authorizationError) }),
          };
          finish(() => resolve(result));
        });
        socket.once("error", (err) => {
          const code = errorCode(err);
          if (code !== undefined && VERIFY_ERROR_CODES.has(code)) {
            // the server answered, but its certificate does not verify (or does not name `servername`)
            finish(() =>
              resolve({
                serialNumber: "",
                fingerprint256: "",
                protocol: "TLSv1.2",
                authorized: false,
                authorizationError: `${code}: ${err.message}`,
              }),
            );
            return;
          }
          finish(() =>
            reject(
              new AmlcertError("TLS_PROBE_FAILED", "verify-tls", `TLS handshake with ${where} failed: ${err.message}`, {
                cause: err,
                details: { host: target.host, port: target.port, servername: target.servername, code },
              }),
            ),
          );
        });
      });
    },
  };
}
