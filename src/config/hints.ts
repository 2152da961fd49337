/**
 * Failures that a setting fixes, told in the configuration's words: the error keeps its code, stage, cause and
 * details, and its message gains which setting to give. Pure; the composition root applies it at the adapter edge.
 */
import { AmlcertError, isAmlcertError } from "../errors.js";

/**
 * The CA refused an account because it demands External Account Binding (RFC 8555 `externalAccountRequired`):
 * name `acme.eab`. With EAB configured, the same answer, or a refusal that speaks of the external account binding
 * (a wrong key ID or HMAC key: Pebble and Boulder answer `unauthorized` or `malformed`), means the CA did not accept
 * the binding given.
 */
export function eabHint(err: unknown, eabConfigured: boolean): unknown {
  if (!isAmlcertError(err) || err.code !== "ACME_ACCOUNT") return err;
  const required = err.details.problemType === "externalAccountRequired";
  const bindingRefused = eabConfigured && /external account/i.test(String(err.details.problemDetail ?? ""));
  if (!required && !bindingRefused) return err;
  const hint = eabConfigured
    ? "acme.eab is set, but the CA did not accept the binding: check acme.eab.keyId and the key in acme.eab.hmacKeyFile"
    : "this CA requires External Account Binding: set acme.eab.keyId and acme.eab.hmacKeyFile (or AMLCERT_ACME_EAB_KEY_ID and AMLCERT_ACME_EAB_HMAC_KEY_FILE) to the credentials the CA issued";
  return new AmlcertError(err.code, err.stage, `${err.message}; ${hint}`, { cause: err.cause, details: { ...err.details, setting: "acme.eab" }, exitCode: err.exitCode });
}
