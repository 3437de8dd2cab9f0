/**
 * Canonical JSON (RFC 8785, "JCS"): how ostree-ext stores the OCI manifest and config in an
 * image's merge commit (`to_canon_json_string` of the `canon-json` crate). Object keys sorted by
 * UTF-16 code units, no whitespace, strings and numbers spelled as ECMAScript `JSON.stringify`
 * spells them.
 *
 * ostree-ext serializes its parsed `oci_spec` structs, so fields that struct does not know are
 * absent from its output; canonicalizing the raw manifest keeps every field. For manifests and
 * configs that only use spec fields the two agree.
 *
 * @module
 */

/**
 * Canonical JSON text of a JSON value.
 *
 * @throws {TypeError} for values JSON cannot represent (undefined, functions, NaN, Infinity).
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: [true, null, "x"] }); // '{"a":[true,null,"x"],"b":1}'
 * ```
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError(`canonical JSON cannot hold the number ${value}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

/** {@linkcode canonicalJson} of JSON text. */
export function canonicalizeJsonText(text: string): string {
  return canonicalJson(JSON.parse(text));
}
