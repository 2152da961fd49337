import { execFileSync } from "node:child_process";
import { X509Certificate, createPrivateKey, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import {
  chainOrder,
  chainProblem,
  describe as describeCert,
  describeProblem,
  dnsNamesOf,
  inspectPair,
  keyTypeOf,
  parseChain,
  parsePrivateKey,
  pemBlocks,
  sanCovers,
  trustBundleProblem,
  uncoveredNames,
  validateNewPair,
  type PairProblem,
} from "../../src/certs/certificate.js";
import { days, encryptKey, makeLeaf, makeTestCa, pkcs8Pem, sec1Key, type TestIssuer, type TestLeaf } from "../support/certs.js";

// whole seconds: X.509 validity has second precision, so dates compare exactly
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
let intermediate: TestIssuer;
let good: TestLeaf;
let other: TestLeaf;
/** an intermediate with the same name as `intermediate` but another key (same name, wrong signature) */
let impostor: TestIssuer;

// ---- certificates with chosen subjects, issuers and extensions (@peculiar/x509 on WebCrypto, ECDSA P-256) ----
type CryptoKeyPair = webcrypto.CryptoKeyPair;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyKey = any;
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const keyPair = async () => (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;

interface Made {
  pem: string;
  keyPem: string;
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

/** A certificate for `subject`, signed by `issuer` (or by itself), with the SANs given and no other extensions. */
async function certFor(opts: { subject: string; issuer?: Made; sans?: { type: "dns" | "ip"; value: string }[]; ca?: boolean }): Promise<Made> {
  const keys = await keyPair();
  const extensions: x509.Extension[] = [];
  if (opts.ca) {
    extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
    extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true));
  }
  if (opts.sans) extensions.push(new x509.SubjectAlternativeNameExtension(opts.sans));
  const cert = await x509.X509CertificateGenerator.create({
    subject: opts.subject,
    issuer: opts.issuer ? opts.issuer.cert.subject : opts.subject,
    publicKey: keys.publicKey as AnyKey,
    signingKey: (opts.issuer ? opts.issuer.keys.privateKey : keys.privateKey) as AnyKey,
    notBefore: new Date(now.getTime() - days(1)),
    notAfter: new Date(now.getTime() + days(30)),
    signingAlgorithm: alg,
    extensions,
  });
  return { pem: `${cert.toString("pem")}\n`, keyPem: await pkcs8Pem(keys.privateKey), cert, keys };
}

/** A self-signed certificate with an openssl-made key of this type (`openssl req -newkey <spec>`). */
function opensslCert(newkey: string[]): X509Certificate {
  const pem = execFileSync("openssl", ["req", "-x509", ...newkey, "-nodes", "-keyout", "/dev/null", "-subj", "/CN=key-type.test", "-days", "1"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  return new X509Certificate(pem);
}

let ca: Made;
let leafTwoRdns: Made;

beforeAll(async () => {
  ({ intermediate } = await makeTestCa());
  ({ intermediate: impostor } = await makeTestCa()); // same default name, other key
  good = await makeLeaf(intermediate, ["ml.contoso.test", "api.contoso.test"], new Date(now.getTime() - days(1)), new Date(now.getTime() + days(89)));
  other = await makeLeaf(intermediate, ["ml.contoso.test"], new Date(now.getTime() - days(1)), new Date(now.getTime() + days(89)));
  ca = await certFor({ subject: "CN=Contoso Issuing CA, O=Contoso", ca: true });
  leafTwoRdns = await certFor({ subject: "CN=ml.contoso.test, O=Contoso", issuer: ca, sans: [{ type: "dns", value: "ml.contoso.test" }] });
});

describe("pemBlocks and parseChain", () => {
  it("pemBlocks returns every block with its label, in order", () => {
    const blocks = pemBlocks(good.keyPem + good.chainPem);
    expect(blocks.map((b) => b.label)).toEqual(["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]);
    expect(blocks[1]!.pem).toBe(good.leafPem);
  });

  it("parseChain keeps only CERTIFICATE blocks, leaf first", () => {
    const chain = parseChain(good.keyPem + good.chainPem);
    expect(chain.map((c) => c.serialNumber.toUpperCase())).toEqual([good.serialNumber, intermediate.cert.serialNumber.toUpperCase()]);
  });

  it("when there is no CERTIFICATE block (even if a key block is there), parseChain says so", () => {
    expect(() => parseChain("")).toThrow(new Error("no PEM CERTIFICATE block found"));
    expect(() => parseChain(good.keyPem)).toThrow(new Error("no PEM CERTIFICATE block found"));
  });

  it("when a block is not X.509, parseChain names its position and keeps the parser's error as the cause", () => {
    const garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
    let thrown: unknown;
    try {
      parseChain(good.leafPem + garbage);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as Error).message).toBe("certificate #2 in the chain is not a valid X.509 certificate");
    expect((thrown as Error).cause).toBeInstanceOf(Error);
  });
});

describe("describe, dnsNamesOf and keyTypeOf", () => {
  it("describes the leaf: serial, validity, names, subject and issuer with every RDN, fingerprint and key type", () => {
    const info = describeCert(new X509Certificate(leafTwoRdns.pem));
    expect(info).toEqual({
      serialNumber: new X509Certificate(leafTwoRdns.pem).serialNumber.toUpperCase(),
      notBefore: new Date(now.getTime() - days(1)),
      notAfter: new Date(now.getTime() + days(30)),
      dnsNames: ["ml.contoso.test"],
      subject: "CN=ml.contoso.test, O=Contoso",
      issuer: "CN=Contoso Issuing CA, O=Contoso",
      fingerprint256: new X509Certificate(leafTwoRdns.pem).fingerprint256,
      keyType: "ecdsa-p256",
    });
    expect(info.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("dnsNamesOf keeps only DNS names, lower-cased, and skips IP addresses", async () => {
    const c = await certFor({
      subject: "CN=ML.Contoso.Test",
      sans: [
        { type: "dns", value: "ML.Contoso.Test" },
        { type: "ip", value: "10.0.0.4" },
        { type: "dns", value: "*.Api.Contoso.Test" },
      ],
    });
    expect(dnsNamesOf(new X509Certificate(c.pem))).toEqual(["ml.contoso.test", "*.api.contoso.test"]);
  });

  it("dnsNamesOf of a certificate without subjectAltName is empty", async () => {
    const c = await certFor({ subject: "CN=no-san.contoso.test" });
    expect(dnsNamesOf(new X509Certificate(c.pem))).toEqual([]);
  });

  it.each([
    [["-newkey", "rsa:2048"], "rsa2048"],
    [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "ecdsa-p256"],
    [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "ecdsa-p384"],
    [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "ecdsa-p521"],
    [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "ecdsa-secp256k1"],
    [["-newkey", "ed25519"], "ed25519"],
  ])("keyTypeOf a certificate made with openssl req %j is %s", (newkey, expected) => {
    expect(keyTypeOf(opensslCert(newkey))).toBe(expected);
  });
});

describe("sanCovers and uncoveredNames", () => {
  it.each([
    ["a.example.com", "a.example.com", true],
    ["*.example.com", "a.example.com", true],
    ["*.example.com", "example.com", false],
    ["*.example.com", "a.b.example.com", false],
    ["A.Example.com", "a.example.COM", true],
    ["*.Example.com", "A.example.COM", true],
    // a plain SAN covers only itself, even when its tail matches
    ["xa.example.com", "ya.example.com", false],
    ["a.example.com", "b.a.example.com", false],
    // the wildcard label must stand for a non-empty label
    ["*.example.com", ".example.com", false],
  ])("%s covers %s: %s", (pattern, name, expected) => {
    expect(sanCovers(pattern, name)).toBe(expected);
  });

  it("a wanted wildcard is covered only by the same wildcard; a wanted host by itself or a wildcard one label up", () => {
    expect(uncoveredNames(["*.contoso.test"], ["*.contoso.test", "ml.contoso.test", "a.b.contoso.test", "*.b.contoso.test"])).toEqual(["a.b.contoso.test", "*.b.contoso.test"]);
    expect(uncoveredNames(["ml.contoso.test"], ["*.contoso.test", "ML.contoso.test"])).toEqual(["*.contoso.test"]);
  });
});

describe("parsePrivateKey", () => {
  it("an unencrypted PKCS#8 key parses as PKCS#8", () => {
    const r = parsePrivateKey(good.keyPem);
    expect("key" in r && r.pkcs8).toBe(true);
    expect("key" in r && r.key.asymmetricKeyType).toBe("ec");
  });

  it("when key.pem is empty or blank, the key is missing; when it is text without a PEM block, unparsable", () => {
    expect(parsePrivateKey("")).toEqual({ problem: "missing" });
    expect(parsePrivateKey("  \n\t")).toEqual({ problem: "missing" });
    expect(parsePrivateKey("not a key")).toEqual({ problem: "unparsable" });
  });

  it("when the key is encrypted, PKCS#8 or traditional (Proc-Type: 4,ENCRYPTED, with or without the space), it is reported encrypted", () => {
    expect(parsePrivateKey(encryptKey(good.keyPem))).toEqual({ problem: "encrypted" });
    const traditional = createPrivateKey(good.keyPem).export({ format: "pem", type: "sec1", cipher: "aes-256-cbc", passphrase: "secret" }).toString();
    expect(traditional).toContain("Proc-Type: 4,ENCRYPTED");
    expect(parsePrivateKey(traditional)).toEqual({ problem: "encrypted" });
    expect(parsePrivateKey(traditional.replace("Proc-Type: 4,ENCRYPTED", "Proc-Type:4,ENCRYPTED"))).toEqual({ problem: "encrypted" });
    // an encrypted key next to another block is still encrypted
    expect(parsePrivateKey(good.leafPem + encryptKey(good.keyPem))).toEqual({ problem: "encrypted" });
  });

  it("blocks other than the private key are ignored; two private keys are unparsable", () => {
    const withCert = parsePrivateKey(good.leafPem + good.keyPem);
    expect("key" in withCert && withCert.pkcs8).toBe(true);
    expect(parsePrivateKey(good.keyPem + other.keyPem)).toEqual({ problem: "unparsable" });
  });

  it("a PRIVATE KEY block that is not a key is unparsable", () => {
    expect(parsePrivateKey("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")).toEqual({ problem: "unparsable" });
  });

  it("an unencrypted SEC1 key parses, marked not PKCS#8", () => {
    const r = parsePrivateKey(sec1Key(good.keyPem));
    expect("key" in r && r.pkcs8).toBe(false);
  });
});

describe("chainProblem", () => {
  it("a leaf followed by its issuer has no problem; so does a lone self-signed certificate", () => {
    expect(chainProblem(parseChain(good.chainPem))).toBeUndefined();
    expect(chainProblem(parseChain(ca.pem))).toBeUndefined();
  });

  it("when the next certificate is not the issuer, names both positions and the subject with every RDN", () => {
    expect(chainProblem(parseChain(leafTwoRdns.pem + intermediate.pem))).toEqual({
      problem: "order",
      detail: "certificate #1 (CN=ml.contoso.test, O=Contoso) is not signed by certificate #2",
    });
  });

  it("when the next certificate has the issuer's name but not its key, the signature check catches it", () => {
    const leaf = parseChain(good.leafPem)[0]!;
    const fake = parseChain(impostor.pem)[0]!;
    expect(leaf.checkIssued(fake)).toBe(true); // the names match...
    expect(chainProblem([leaf, fake])).toEqual({ problem: "order", detail: "certificate #1 (CN=ml.contoso.test) is not signed by certificate #2" });
  });

  it("the position named is the first broken link", () => {
    expect(chainProblem(parseChain(good.leafPem + intermediate.pem + leafTwoRdns.pem))).toEqual({
      problem: "order",
      detail: "certificate #2 (CN=amlcert unit intermediate) is not signed by certificate #3",
    });
  });

  it("when only a leaf is present, the chain is incomplete and the missing issuer is named with every RDN", () => {
    expect(chainProblem(parseChain(leafTwoRdns.pem))).toEqual({
      problem: "incomplete",
      detail: "the chain holds only the leaf; its issuer (CN=Contoso Issuing CA, O=Contoso) is missing",
    });
  });

  it("a lone certificate whose issuer name is its own subject but which another key signed is incomplete, not self-signed", async () => {
    // issued by `namesake`, a CA whose subject equals the leaf's: checkIssued(itself) holds, the signature does not
    const namesake = await certFor({ subject: "CN=twin.contoso.test" });
    const twin = await certFor({ subject: "CN=twin.contoso.test", issuer: namesake });
    const c = parseChain(twin.pem)[0]!;
    expect(c.checkIssued(c)).toBe(true);
    expect(chainProblem([c])).toEqual({ problem: "incomplete", detail: "the chain holds only the leaf; its issuer (CN=twin.contoso.test) is missing" });
  });
});

describe("trustBundleProblem", () => {
  it("a bundle of certificates is usable; no certificate, or one that does not parse, is named", () => {
    expect(trustBundleProblem(intermediate.pem + good.leafPem)).toBeUndefined();
    expect(trustBundleProblem("garbage")).toBe("holds no PEM certificate (BEGIN CERTIFICATE)");
    expect(trustBundleProblem(good.keyPem)).toBe("holds no PEM certificate (BEGIN CERTIFICATE)");
    expect(trustBundleProblem(`${intermediate.pem}-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n`)).toBe("certificate #2 in the bundle is not a valid X.509 certificate");
  });
});

describe("inspectPair: pairs as people paste them", () => {
  const names = ["ml.contoso.test"];
  it("Windows line endings, a byte-order mark, or no newline between the blocks still make a sound pair", () => {
    const crlf = (t: string) => t.replace(/\n/g, "\r\n");
    expect(inspectPair(crlf(good.chainPem), crlf(good.keyPem), names).problems).toEqual([]);
    expect(inspectPair(`\ufeff${good.chainPem}`, `\ufeff${good.keyPem}`, names).problems).toEqual([]);
    expect(inspectPair(good.leafPem.trimEnd() + intermediate.pem, good.keyPem, names).problems).toEqual([]);
  });

  it("DER instead of PEM in cert.pem is unparsable: no PEM block", () => {
    const der = new X509Certificate(good.leafPem).raw.toString("latin1");
    expect(inspectPair(der, good.keyPem, names).problems).toEqual([{ kind: "cert-unparsable", detail: "no PEM CERTIFICATE block found" }]);
  });

  it("an indented base64 body still parses; a whole block indented (pasted from a YAML block) is named as not a valid certificate", () => {
    expect(inspectPair(good.chainPem.replace(/^(?!-----)/gm, "  "), good.keyPem, names).problems).toEqual([]);
    expect(inspectPair(good.chainPem.replace(/^/gm, "  "), good.keyPem, names).problems).toEqual([
      { kind: "cert-unparsable", detail: "certificate #1 in the chain is not a valid X.509 certificate" },
    ]);
  });
});

describe("inspectPair", () => {
  it("when the pair is a full chain with its own unencrypted PKCS#8 key covering the names, reports no problem", () => {
    const r = inspectPair(good.chainPem, good.keyPem, ["ml.contoso.test", "api.contoso.test"]);
    expect(r.problems).toEqual([]);
    expect(r.leaf?.serialNumber).toBe(good.serialNumber);
    expect(r.leaf?.dnsNames).toEqual(["ml.contoso.test", "api.contoso.test"]);
    expect(r.leaf?.notAfter).toEqual(new Date(now.getTime() + days(89)));
  });

  it("when the key belongs to another certificate, reports a key mismatch", () => {
    const r = inspectPair(good.chainPem, other.keyPem, ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "key-mismatch" }]);
  });

  it("when the key is passphrase-protected, reports it as encrypted", () => {
    const r = inspectPair(good.chainPem, encryptKey(good.keyPem), ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "key", problem: "encrypted" }]);
  });

  it("when the key is unencrypted SEC1 rather than PKCS#8, it still parses and matches, and is reported as not-pkcs8", () => {
    expect(inspectPair(good.chainPem, sec1Key(good.keyPem), ["ml.contoso.test"]).problems).toEqual([{ kind: "key", problem: "not-pkcs8" }]);
  });

  it("when key.pem is absent, the key is reported missing (and the certificate still described)", () => {
    const r = inspectPair(good.chainPem, undefined, ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "key", problem: "missing" }]);
    expect(r.leaf?.serialNumber).toBe(good.serialNumber);
  });

  it("when the intermediate comes before the leaf, reports only the chain order, saying which certificate comes first (not a key mismatch)", () => {
    const r = inspectPair(intermediate.pem + good.leafPem, good.keyPem, ["ml.contoso.test"]);
    expect(r.problems).toEqual([
      {
        kind: "chain",
        problem: "order",
        detail: "the certificates are out of order: the leaf (CN=ml.contoso.test) is certificate #2 and must come first; the right order is #2, #1 (the leaf, then each certificate's issuer)",
      },
    ]);
    // the leaf described is the real leaf
    expect(r.leaf?.serialNumber).toBe(good.serialNumber);
  });

  it("when a reversed chain also holds a key that matches no certificate, both the order and the mismatch are reported", () => {
    const r = inspectPair(intermediate.pem + good.leafPem, other.keyPem, ["ml.contoso.test"]);
    expect(r.problems.map((p) => p.kind)).toEqual(["key-mismatch", "chain"]);
  });

  it("chainOrder gives the right order of a shuffled chain, and nothing when a link is foreign or two leaves are present", async () => {
    const root = await certFor({ subject: "CN=Root", ca: true });
    const mid = await certFor({ subject: "CN=Mid", issuer: root, ca: true });
    const leaf = await certFor({ subject: "CN=leaf.contoso.test", issuer: mid, sans: [{ type: "dns", value: "leaf.contoso.test" }] });
    const [r, m, l] = [root, mid, leaf].map((x) => parseChain(x.pem)[0]!);
    expect(chainOrder([m!, r!, l!])).toEqual([2, 0, 1]);
    expect(chainOrder([l!, m!, r!])).toEqual([0, 1, 2]);
    expect(chainOrder([l!, r!])).toBeUndefined(); // the leaf's issuer is missing
    expect(chainOrder(parseChain(good.leafPem + leafTwoRdns.pem))).toBeUndefined(); // two leaves
    expect(chainProblem([m!, r!, l!])).toEqual({
      problem: "order",
      detail: "the certificates are out of order: the leaf (CN=leaf.contoso.test) is certificate #3 and must come first; the right order is #3, #1, #2 (the leaf, then each certificate's issuer)",
    });
  });

  it("when only the leaf is present, reports an incomplete chain", () => {
    const r = inspectPair(good.leafPem, good.keyPem, ["ml.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "chain", problem: "incomplete", detail: "the chain holds only the leaf; its issuer (CN=amlcert unit intermediate) is missing" }]);
  });

  it("when cert.pem is garbage or absent, reports it unparsable with the parser's words, and describes no leaf", () => {
    const r = inspectPair("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", good.keyPem, ["x"]);
    expect(r).toEqual({ problems: [{ kind: "cert-unparsable", detail: "certificate #1 in the chain is not a valid X.509 certificate" }] });
    expect(inspectPair("hello", "world", ["x"])).toEqual({
      problems: [
        { kind: "cert-unparsable", detail: "no PEM CERTIFICATE block found" },
        { kind: "key", problem: "unparsable" },
      ],
    });
    expect(inspectPair(undefined, undefined, ["x"])).toEqual({
      problems: [
        { kind: "cert-unparsable", detail: "no PEM CERTIFICATE block found" },
        { kind: "key", problem: "missing" },
      ],
    });
  });

  it("when a wanted name is not among the SANs, names the missing name", () => {
    const r = inspectPair(good.chainPem, good.keyPem, ["ml.contoso.test", "www.contoso.test"]);
    expect(r.problems).toEqual([{ kind: "names", missing: ["www.contoso.test"] }]);
  });
});

describe("describeProblem", () => {
  const at = new Date("2027-01-31T12:00:00.000Z");
  it.each<[PairProblem, string]>([
    [{ kind: "cert-unparsable", detail: "no PEM CERTIFICATE block found" }, "cert.pem: no PEM CERTIFICATE block found"],
    [{ kind: "key", problem: "missing" }, "key.pem: missing or empty"],
    [{ kind: "key", problem: "encrypted" }, "key.pem: the key is passphrase-protected; Azure ML needs an unencrypted key"],
    [{ kind: "key", problem: "not-pkcs8" }, "key.pem: the key is not PKCS#8 ('BEGIN PRIVATE KEY')"],
    [{ kind: "key", problem: "unparsable" }, "key.pem: not a parsable PEM private key"],
    [{ kind: "key-mismatch" }, "key.pem does not match the leaf certificate in cert.pem"],
    [{ kind: "chain", problem: "order", detail: "certificate #1 (CN=a) is not signed by certificate #2" }, "cert.pem: certificate #1 (CN=a) is not signed by certificate #2"],
    [{ kind: "names", missing: ["a.contoso.test", "b.contoso.test"] }, "cert.pem does not cover a.contoso.test, b.contoso.test"],
    [
      { kind: "not-newer", current: new Date("2027-03-01T00:00:00.000Z"), candidate: at },
      "the new certificate expires 2027-01-31T12:00:00.000Z, not later than the one in place (2027-03-01T00:00:00.000Z)",
    ],
    [{ kind: "expired", notAfter: at }, "the certificate expired at 2027-01-31T12:00:00.000Z"],
  ])("%j reads %s", (problem, text) => {
    expect(describeProblem(problem)).toBe(text);
  });
});

describe("validateNewPair", () => {
  const candidateNotAfter = () => new Date(now.getTime() + days(89));

  it("when the candidate expires later than the certificate in place, accepts it", () => {
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, new Date(now.getTime() + days(5))).problems).toEqual([]);
  });

  it("when the candidate expires later than the one in place by one second, accepts it", () => {
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, new Date(candidateNotAfter().getTime() - 1000)).problems).toEqual([]);
  });

  it("when the candidate expires at exactly the same moment as the certificate in place, refuses it as not newer", () => {
    const current = candidateNotAfter();
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, current).problems).toEqual([
      { kind: "not-newer", current, candidate: candidateNotAfter() },
    ]);
  });

  it("when the candidate expires before the certificate in place, refuses it as not newer", () => {
    const current = new Date(now.getTime() + days(100));
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now, current).problems).toEqual([
      { kind: "not-newer", current, candidate: candidateNotAfter() },
    ]);
  });

  it("when no certificate is in place, freshness is judged against now only", () => {
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], now).problems).toEqual([]);
  });

  it("when the candidate is already expired, refuses it", async () => {
    const old = await makeLeaf(intermediate, ["ml.contoso.test"], new Date(now.getTime() - days(100)), new Date(now.getTime() - days(10)));
    expect(validateNewPair(old.chainPem, old.keyPem, ["ml.contoso.test"], now).problems).toEqual([{ kind: "expired", notAfter: new Date(now.getTime() - days(10)) }]);
  });

  it("when the candidate expires at this very moment, it is expired", () => {
    expect(validateNewPair(good.chainPem, good.keyPem, ["ml.contoso.test"], candidateNotAfter()).problems).toEqual([{ kind: "expired", notAfter: candidateNotAfter() }]);
  });

  it("a new pair with a SEC1 key is refused before any write (Azure ML gets PKCS#8 from amlcert)", () => {
    expect(validateNewPair(good.chainPem, sec1Key(good.keyPem), ["ml.contoso.test"], now).problems).toEqual([{ kind: "key", problem: "not-pkcs8" }]);
  });

  it("when the candidate's cert.pem cannot be parsed, reports only that (no freshness verdict without a leaf)", () => {
    expect(validateNewPair("garbage", good.keyPem, ["ml.contoso.test"], now, now)).toEqual({ problems: [{ kind: "cert-unparsable", detail: "no PEM CERTIFICATE block found" }] });
  });
});
