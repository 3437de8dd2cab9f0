/**
 * A small YAML emitter for the JSON data model, in the style of serde_yaml, which bootc uses
 * for `bootc status` (YAML is its default when stdout is not a terminal; spec
 * bootc-unified-storage.md §8.2):
 *
 * ```yaml
 * apiVersion: org.containers.bootc/v1
 * kind: BootcHost
 * status:
 *   staged: null
 *   kargs:
 *   - console=ttyS0
 *   - nosmt
 *   otherDeployments: []
 * ```
 *
 * - keys in the object's own order (insertion order, the struct order of the value built;
 *   JavaScript puts integer-like keys such as `"1"` first), 2-space indent, sequence
 *   items (`- `) at their parent key's indent, empty containers as `[]` / `{}`;
 * - a string is written plain only when every YAML 1.1 and 1.2 reader reads it back as that
 *   same string: it starts with a letter, `_` or `/`, uses only `[A-Za-z0-9_./@+:=-]`, does not
 *   end in `:` and is not a YAML 1.1 boolean or null word (`yes`, `No`, `ON`, `null`, ...).
 *   Everything else is double-quoted, with escapes for `"`, `\`, controls, and characters
 *   YAML does not allow raw (`\x85`, `\u2028`, `\u2029`, `\uFEFF`, ...); lone surrogates are
 *   refused;
 * - numbers in a form YAML 1.1 (PyYAML) and 1.2 read as numbers: integers in decimal, other
 *   values with a `.` in the mantissa and a signed exponent (`1.0e+21`); NaN/Infinity refused;
 * - `true`, `false`, `null`; `undefined` object members are left out.
 *
 * Spec: https://yaml.org/spec/1.2.2/ (and 1.1 for the boolean words).
 *
 * @module
 */

import type { JsonValue } from "./canonical_json.ts";

/** A value that cannot be written as YAML by this emitter. */
export class YamlError extends TypeError {
  override name = "YamlError";
  readonly at: string;
  constructor(at: string, message: string) {
    super(`${at}: ${message}`);
    this.at = at;
  }
}

/** Words YAML 1.1 (and so PyYAML) reads as booleans or null, in any of their spellings. */
const RESERVED = new Set([
  "y",
  "n",
  "yes",
  "no",
  "true",
  "false",
  "on",
  "off",
  "null",
]);

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./@+:=-]*$/;

/**
 * Serializes `value` as a YAML document (ending in a newline).
 *
 * @throws {YamlError} for NaN/Infinity, lone surrogates, and values outside the JSON model.
 * @example
 * ```ts
 * toYaml({ kind: "BootcHost", spec: { bootOrder: "default" }, kargs: ["a b", "yes"] });
 * // 'kind: BootcHost\nspec:\n  bootOrder: default\nkargs:\n- "a b"\n- "yes"\n'
 * ```
 */
export function toYaml(value: JsonValue): string {
  const lines: string[] = [];
  if (isContainer(value) && !isEmpty(value)) {
    writeBlock(value, 0, "$", lines);
  } else {
    lines.push(scalar(value, "$"));
  }
  return lines.join("\n") + "\n";
}

type Container = JsonValue[] | { [key: string]: JsonValue | undefined };

function isContainer(v: unknown): v is Container {
  return typeof v === "object" && v !== null;
}

function isEmpty(v: Container): boolean {
  return Array.isArray(v) ? v.length === 0 : entries(v).length === 0;
}

function entries(o: { [key: string]: JsonValue | undefined }): [string, JsonValue][] {
  return Object.entries(o).filter(([, v]) => v !== undefined) as [string, JsonValue][];
}

/** Writes a non-empty container whose lines start at `indent` spaces. */
function writeBlock(v: Container, indent: number, at: string, lines: string[]): void {
  const pad = " ".repeat(indent);
  if (Array.isArray(v)) {
    v.forEach((raw, i) => {
      const item = raw === undefined ? null : raw;
      const where = `${at}[${i}]`;
      if (isContainer(item) && !isEmpty(item)) {
        // The item's first line shares the "- " line; the rest are indented past it.
        const sub: string[] = [];
        writeBlock(item, indent + 2, where, sub);
        lines.push(`${pad}- ${sub[0].slice(indent + 2)}`, ...sub.slice(1));
      } else {
        lines.push(`${pad}- ${scalar(item, where)}`);
      }
    });
    return;
  }
  checkPlainObject(v, at);
  for (const [k, item] of entries(v)) {
    const where = `${at}.${k}`;
    const key = stringScalar(k, `${where} key`);
    if (isContainer(item) && !isEmpty(item)) {
      lines.push(`${pad}${key}:`);
      // serde_yaml style: a sequence's dashes stay at the key's indent; a map goes 2 deeper.
      writeBlock(item, Array.isArray(item) ? indent : indent + 2, where, lines);
    } else {
      lines.push(`${pad}${key}: ${scalar(item, where)}`);
    }
  }
}

function checkPlainObject(v: object, at: string): void {
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    throw new YamlError(
      at,
      `a ${proto?.constructor?.name ?? "non-plain"} object has no YAML form here`,
    );
  }
}

function scalar(v: unknown, at: string): string {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "number":
      return numberScalar(v, at);
    case "string":
      return stringScalar(v, at);
    case "object":
      // Only empty containers get here.
      if (Array.isArray(v)) return "[]";
      checkPlainObject(v, at);
      return "{}";
    default:
      throw new YamlError(at, `a ${typeof v} has no YAML form`);
  }
}

function numberScalar(n: number, at: string): string {
  if (!Number.isFinite(n)) throw new YamlError(at, `${n} has no JSON form`);
  const s = String(Object.is(n, -0) ? 0 : n);
  const e = s.indexOf("e");
  if (e < 0) return s;
  // PyYAML (YAML 1.1) reads "1e+21" as a string: give the mantissa a dot and keep the sign.
  let mantissa = s.slice(0, e);
  let exponent = s.slice(e + 1);
  if (!mantissa.includes(".")) mantissa += ".0";
  if (!exponent.startsWith("-") && !exponent.startsWith("+")) exponent = `+${exponent}`;
  return `${mantissa}e${exponent}`;
}

function stringScalar(s: string, at: string): string {
  if (!s.isWellFormed()) throw new YamlError(at, "string holds a lone surrogate (not Unicode)");
  if (PLAIN.test(s) && !s.endsWith(":") && !RESERVED.has(s.toLowerCase())) return s;
  return doubleQuoted(s);
}

/** A YAML double-quoted scalar; escapes what YAML 1.1 and 1.2 both understand. */
function doubleQuoted(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        continue;
      case "\\":
        out += "\\\\";
        continue;
      case "\n":
        out += "\\n";
        continue;
      case "\t":
        out += "\\t";
        continue;
      case "\r":
        out += "\\r";
        continue;
    }
    // Raw only what YAML calls printable and never reads as a line break (\x85, \u2028/9).
    const printable = (c >= 0x20 && c <= 0x7e) ||
      (c >= 0xa0 && c <= 0xd7ff && c !== 0x2028 && c !== 0x2029) ||
      (c >= 0xe000 && c <= 0xfffd && c !== 0xfeff) || c >= 0x10000;
    if (printable) out += ch;
    else if (c <= 0xff) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += `\\u${c.toString(16).padStart(4, "0")}`;
  }
  return out + '"';
}
