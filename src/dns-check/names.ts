/** A DNS name as amlcert compares and stores it: lower case, no trailing dot. */
export const normalizeName = (name: string): string => name.toLowerCase().replace(/\.$/, "");
