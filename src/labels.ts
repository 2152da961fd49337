/** The label amlcert puts on every secret it writes (certificate versions, the ACME account key). */
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "amlcert";
