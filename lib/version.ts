/**
 * The program's version, printed by `--version`. Kept in step with
 * `deno.json` (a test compares them): a compiled binary cannot read deno.json.
 *
 * @module
 */

/** unistore's version. */
export const VERSION = "0.1.0";
