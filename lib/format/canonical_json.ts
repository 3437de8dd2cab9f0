/**
 * Canonical JSON, RFC 8785 (JSON Canonicalization Scheme) style: what bootc's
 * `to_canon_json_writer` gives `bootc status --format=json` (spec bootc-unified-storage.md
 * §8.2) and `bootc install print-configuration`.
 *
 * - object members sorted by key, comparing UTF-16 code units (RFC 8785 §3.2.3), no whitespace
 *   anywhere, one line;
 * - strings as ECMAScript `JSON.stringify` writes them: `\"`, `\\`, `\b \f \n \r \t`, other
 *   controls as lower-case `\u00xx`, everything else literal UTF-8 (§3.2.2.2); lone
 *   surrogates are refused (not valid Unicode);
 * - numbers as ECMAScript writes them (§3.2.2.3): integers in decimal, `-0` as `0`; NaN and
 *   infinities are refused;
 * - `true`, `false`, `null`, arrays in order. A member whose value is `undefined` is left out,
 *   as `JSON.stringify` does (the way optional fields are omitted).
 *
 * Spec: https://www.rfc-editor.org/rfc/rfc8785
 *
 * @module
 */

/** The JSON data model this module writes. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue | undefined };

/** A value that has no canonical JSON form (NaN, a lone surrogate, a function, ...). */
export class CanonicalJsonError extends TypeError {
  override name = "CanonicalJsonError";
  /** Where in the value: `$.status.booted`, `$.images[2]`. */
  readonly at: string;
  constructor(at: string, message: string) {
    super(`${at}: ${message}`);
    this.at = at;
  }
}

/** UTF-16 code-unit order, which RFC 8785 prescribes for member names. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Serializes `value` as canonical JSON.
 *
 * @throws {CanonicalJsonError} for NaN/Infinity, lone surrogates, and values outside the JSON
 *   model (functions, symbols, bigint, class instances other than plain objects and arrays).
 * @example
 * ```ts
 * canonicalJson({ b: [1, "x"], a: { d: null, c: true } });
 * // '{"a":{"c":true,"d":null},"b":[1,"x"]}'
 * ```
 */
export function canonicalJson(value: JsonValue): string {
  const out: string[] = [];
  write(value, "$", out);
  return out.join("");
}

function write(v: unknown, at: string, out: string[]): void {
  if (v === null) {
    out.push("null");
    return;
  }
  switch (typeof v) {
    case "boolean":
      out.push(v ? "true" : "false");
      return;
    case "number":
      if (!Number.isFinite(v)) throw new CanonicalJsonError(at, `${v} has no JSON form`);
      out.push(JSON.stringify(v));
      return;
    case "string":
      out.push(stringLiteral(v, at));
      return;
    case "object":
      break;
    default:
      throw new CanonicalJsonError(at, `a ${typeof v} has no JSON form`);
  }
  if (Array.isArray(v)) {
    out.push("[");
    v.forEach((item, i) => {
      if (i > 0) out.push(",");
      // JSON.stringify writes holes and undefined in arrays as null; so do we.
      write(item === undefined ? null : item, `${at}[${i}]`, out);
    });
    out.push("]");
    return;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalJsonError(
      at,
      `a ${proto?.constructor?.name ?? "non-plain"} object has no JSON form`,
    );
  }
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareKeys);
  out.push("{");
  keys.forEach((k, i) => {
    if (i > 0) out.push(",");
    out.push(stringLiteral(k, `${at} key`), ":");
    write(obj[k], `${at}.${k}`, out);
  });
  out.push("}");
}

function stringLiteral(s: string, at: string): string {
  if (!s.isWellFormed()) {
    throw new CanonicalJsonError(at, "string holds a lone surrogate (not Unicode)");
  }
  return JSON.stringify(s);
}

/**
 * Canonical JSON of JSON text: how ostree-ext stores the OCI manifest and config in an image's
 * merge commit (canon-json's `to_canon_json_string`).
 *
 * @example
 * ```ts
 * canonicalizeJsonText('{ "b": 1.50, "a": 1e3 }'); // '{"a":1000,"b":1.5}'
 * ```
 */
export function canonicalizeJsonText(text: string): string {
  return canonicalJson(JSON.parse(text) as JsonValue);
}
