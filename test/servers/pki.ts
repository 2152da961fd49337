/**
 * The test PKI: one root CA and one server certificate for 127.0.0.1, ::1 and localhost, made with the real
 * `openssl` command. Every loopback HTTPS/TLS stand-in (ARM, Entra ID, Kubernetes, Pebble's API) serves the server
 * certificate, and clients trust the CA through NODE_EXTRA_CA_CERTS (or an explicit `ca`). TLS verification stays on.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** Create (in `dir`) a CA and a loopback server certificate signed by it. Takes ~50 ms. */
export function createTestPki(dir: string, extraDnsNames: string[] = []): TestPki {
  mkdirSync(dir, { recursive: true });
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.ec.pem"], dir);
  openssl(["pkcs8", "-topk8", "-nocrypt", "-in", "ca-key.ec.pem", "-out", "ca-key.pem"], dir);
  openssl(
    ["req", "-x509", "-new", "-key", "ca-key.pem", "-sha256", "-days", "2", "-subj", "/CN=amlcert test CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem"],
    dir,
  );
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server-key.ec.pem"], dir);
  openssl(["pkcs8", "-topk8", "-nocrypt", "-in", "server-key.ec.pem", "-out", "server-key.pem"], dir);
  openssl(["req", "-new", "-key", "server-key.pem", "-subj", "/CN=localhost", "-out", "server.csr"], dir);
  const sans = ["IP:127.0.0.1", "IP:::1", "DNS:localhost", ...extraDnsNames.map((n) => `DNS:${n}`)].join(",");
  writeFileSync(
    join(dir, "server.ext"),
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans}\n`,
  );
  openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2",
      "-sha256", "-extfile", "server.ext", "-out", "server.pem"],
    dir,
  );
  return readTestPki(dir);
}

/** Read an existing PKI directory made by createTestPki. */
export function readTestPki(dir: string): TestPki {
  const caFile = join(dir, "ca.pem");
  const certFile = join(dir, "server.pem");
  const keyFile = join(dir, "server-key.pem");
  return {
    dir,
    caFile,
    certFile,
    keyFile,
    caPem: readFileSync(caFile, "utf8"),
    certPem: readFileSync(certFile, "utf8"),
    keyPem: readFileSync(keyFile, "utf8"),
  };
}
