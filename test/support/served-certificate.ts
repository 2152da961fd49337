/** What azureml-fe (a harness cluster's TLS stand-in) serves now: one TLS handshake, trusting Pebble's roots. */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect } from "node:tls";
import type { Harness } from "../harness/harness.js";

export function servedCertificate(h: Harness, cluster = 0): Promise<X509Certificate> {
  const c = h.clusters[cluster]!;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: c.fe.host, port: c.fe.port, servername: c.spec.fqdn, ca: readFileSync(h.pebbleRootsFile, "utf8"), timeout: 10_000 }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (cert) resolve(cert);
      else reject(new Error("azureml-fe sent no certificate"));
    });
    socket.on("timeout", () => socket.destroy(new Error("TLS handshake with azureml-fe timed out")));
    socket.on("error", reject);
  });
}
