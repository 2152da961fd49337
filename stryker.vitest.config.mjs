// The vitest configuration Stryker runs with (stryker.config.mjs): the project's vitest.config.ts, restricted to the
// unit and integration files that cover the module group being mutated (AMLCERT_MUTATION_GROUP), never e2e.
// This is done here rather than with Stryker's `testFiles` option: with `testFiles` set, Stryker 10.1.1 runs
// "static" mutants (module-level code such as the zod schema) without activating them, so they all "survive".
import base from "./vitest.config.ts";
import { groups, groupName } from "./stryker.config.mjs";

const files = groups[groupName()]?.testFiles;
if (!files) throw new Error("AMLCERT_MUTATION_GROUP is not set: run scripts/mutation.sh");

// replace the include list (mergeConfig would append to it and bring e2e back)
export default { ...base, test: { ...base.test, include: files } };
