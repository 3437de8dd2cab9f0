/**
 * GVariant serialization in normal form: the encoding of every ostree metadata object (dirtree,
 * dirmeta, commit), of the content-object header that is hashed into each file checksum, of
 * `user.ostreemeta` in bare-user repositories, and of the sysroot state files in `/run/ostree`.
 *
 * Format: "GVariant Serialisation Format" 1.0 (GNOME), summarized with byte-level vectors in
 * ../../../../shared/specs/ostree-repo.md §4. The rules that matter for checksums:
 * - every value starts at a multiple of its alignment, padded with zero bytes;
 * - a container of variable-size children records child end offsets ("framing offsets") as
 *   little-endian integers of the smallest width in {1, 2, 4, 8} that can address the container;
 * - arrays list every element's end in forward order; tuples list the end of every variable-size
 *   member but the last, in reverse order;
 * - numbers are in the writer's byte order: little-endian on every platform unistore runs on.
 *   ostree stores its own `u`/`t` header fields byte-swapped (big-endian): callers do that swap
 *   (see {@linkcode bswap32}), this module never does.
 *
 * Normal form (zero padding, minimal offsets, no slack) is the only encoding whose sha256 is what
 * libostree computes, so {@linkcode serialize} always emits it and {@linkcode deserialize}
 * rejects anything else by default.
 *
 * Values are plain JavaScript:
 * | type | value |
 * |---|---|
 * | `b` | boolean |
 * | `y n q i u h d` | number |
 * | `x t` | bigint (a safe-integer number is accepted when writing) |
 * | `s o g` | string |
 * | `ay` | Uint8Array |
 * | other `a<T>` | array of T values |
 * | `(…)` | array with one value per member |
 * | `{kv}` | `[key, value]` |
 * | `m<T>` | `null` (nothing) or the T value |
 * | `v` | {@linkcode Variant} (type string + value) |
 *
 * @example
 * ```ts
 * const bytes = serialize("a{sv}", [["version", new Variant("s", "1.0")]]);
 * const back = deserialize("a{sv}", bytes); // [["version", Variant { type: "s", value: "1.0" }]]
 * ```
 *
 * @module
 */

import { GVariantError } from "./errors.ts";

/** A parsed GVariant type (definite types only: ostree uses no `*`, `?` or `r`). */
export interface GType {
  /** The type string, e.g. `a(say)`. */
  readonly sig: string;
  readonly kind: "basic" | "array" | "maybe" | "tuple" | "dict" | "variant";
  /** Alignment in bytes: 1, 2, 4 or 8. */
  readonly align: number;
  /** Size in bytes when every value of the type has the same size, else null. */
  readonly fixedSize: number | null;
  /** Element type (array, maybe), members (tuple), key and value (dict entry). */
  readonly children: readonly GType[];
}

/** A value of a GVariant type, as described in the module documentation. */
export type GValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Variant
  | null
  | readonly GValue[];

/** A boxed value of any type: the GVariant `v` type. */
export class Variant {
  /**
   * @param type the GVariant type string of `value`, e.g. `"s"`, `"as"`, `"a{sv}"`.
   * @param value the value, shaped as that type requires.
   */
  constructor(readonly type: string, readonly value: GValue) {}
}

/** One entry of an `a{sv}` dictionary, in the order it is stored. */
export type VariantDictEntry = readonly [string, Variant];

// Basic types: alignment and size. A change here changes the bytes of every object written.
const BASIC: Record<string, { align: number; size: number | null }> = {
  y: { align: 1, size: 1 },
  b: { align: 1, size: 1 },
  n: { align: 2, size: 2 },
  q: { align: 2, size: 2 },
  i: { align: 4, size: 4 },
  u: { align: 4, size: 4 },
  h: { align: 4, size: 4 },
  x: { align: 8, size: 8 },
  t: { align: 8, size: 8 },
  d: { align: 8, size: 8 },
  s: { align: 1, size: null },
  o: { align: 1, size: null },
  g: { align: 1, size: null },
};

const typeCache = new Map<string, GType>();

/**
 * Parses a complete, definite type string.
 *
 * @example
 * ```ts
 * parseType("(a(say)a(sayay))").align; // 1
 * parseType("(uuua(ayay))").fixedSize; // null
 * ```
 */
export function parseType(sig: string): GType {
  const cached = typeCache.get(sig);
  if (cached) return cached;
  const [t, end] = parseTypeAt(sig, 0);
  if (end !== sig.length) {
    throw new GVariantError(sig, `not a single complete type (trailing "${sig.slice(end)}")`);
  }
  typeCache.set(sig, t);
  return t;
}

function parseTypeAt(sig: string, at: number): [GType, number] {
  const c = sig[at];
  if (c === undefined) throw new GVariantError(sig, "type string ends early");
  const basic = BASIC[c];
  if (basic) {
    return [
      { sig: c, kind: "basic", align: basic.align, fixedSize: basic.size, children: [] },
      at + 1,
    ];
  }
  switch (c) {
    case "v":
      return [{ sig: "v", kind: "variant", align: 8, fixedSize: null, children: [] }, at + 1];
    case "a":
    case "m": {
      const [elem, end] = parseTypeAt(sig, at + 1);
      return [{
        sig: sig.slice(at, end),
        kind: c === "a" ? "array" : "maybe",
        align: elem.align,
        fixedSize: null,
        children: [elem],
      }, end];
    }
    case "(": {
      const members: GType[] = [];
      let pos = at + 1;
      while (sig[pos] !== ")") {
        if (pos >= sig.length) throw new GVariantError(sig, "unterminated tuple type");
        const [m, end] = parseTypeAt(sig, pos);
        members.push(m);
        pos = end;
      }
      return [containerType(sig.slice(at, pos + 1), "tuple", members), pos + 1];
    }
    case "{": {
      const [key, kEnd] = parseTypeAt(sig, at + 1);
      if (key.kind !== "basic") {
        throw new GVariantError(sig, `dictionary key must be a basic type, found "${key.sig}"`);
      }
      const [value, vEnd] = parseTypeAt(sig, kEnd);
      if (sig[vEnd] !== "}") throw new GVariantError(sig, "dictionary entry needs exactly 2 types");
      return [containerType(sig.slice(at, vEnd + 1), "dict", [key, value]), vEnd + 1];
    }
    default:
      throw new GVariantError(sig, `unsupported type character "${c}" at offset ${at}`);
  }
}

/** Alignment and fixed size of a tuple or dict entry, computed as the GVariant spec says. */
function containerType(sig: string, kind: "tuple" | "dict", members: GType[]): GType {
  const align = members.reduce((a, m) => Math.max(a, m.align), 1);
  let fixedSize: number | null = 0;
  for (const m of members) {
    if (m.fixedSize === null) {
      fixedSize = null;
      break;
    }
    fixedSize = alignUp(fixedSize, m.align) + m.fixedSize;
  }
  if (fixedSize !== null) {
    // The unit type () occupies one byte; other fixed tuples are padded to their alignment.
    fixedSize = fixedSize === 0 ? 1 : alignUp(fixedSize, align);
  }
  return { sig, kind, align, fixedSize, children: members };
}

function alignUp(n: number, align: number): number {
  return (n + align - 1) & ~(align - 1);
}

/**
 * Width of the framing offsets a writer uses for a container whose children take `bodyLen`
 * bytes and which needs `count` offsets: the smallest of 1, 2, 4, 8 that can address the
 * whole container.
 *
 * @example
 * ```ts
 * offsetWidthForBody(250, 5); // 1 (255 bytes in total)
 * offsetWidthForBody(251, 5); // 2
 * ```
 */
export function offsetWidthForBody(bodyLen: number, count: number): number {
  if (count === 0) return 0;
  if (bodyLen + count <= 0xff) return 1;
  if (bodyLen + 2 * count <= 0xffff) return 2;
  if (bodyLen + 4 * count <= 0xffffffff) return 4;
  return 8;
}

/**
 * Width of the framing offsets a reader expects in a container of `size` bytes:
 * 0 → 0, ≤ 0xff → 1, ≤ 0xffff → 2, ≤ 0xffffffff → 4, else 8.
 */
export function offsetWidthForSize(size: number): number {
  if (size === 0) return 0;
  if (size <= 0xff) return 1;
  if (size <= 0xffff) return 2;
  if (size <= 0xffffffff) return 4;
  return 8;
}

/** Swaps the bytes of a 32-bit unsigned integer: ostree's `GUINT32_TO_BE` on a little-endian host. */
export function bswap32(n: number): number {
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

/** Swaps the bytes of a 64-bit unsigned integer: ostree's `GUINT64_TO_BE` on a little-endian host. */
export function bswap64(n: bigint): bigint {
  let out = 0n;
  let v = BigInt.asUintN(64, n);
  for (let i = 0; i < 8; i++) {
    out = (out << 8n) | (v & 0xffn);
    v >>= 8n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Growable byte buffer with alignment padding. */
class Out {
  buf = new Uint8Array(64);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Pads with zero bytes to a multiple of `align` (relative to the container start). */
  pad(align: number): void {
    const target = alignUp(this.len, align);
    this.reserve(target - this.len);
    this.buf.fill(0, this.len, target);
    this.len = target;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  byte(v: number): void {
    this.reserve(1);
    this.buf[this.len++] = v;
  }

  uint(v: number, width: number): void {
    this.reserve(width);
    const view = new DataView(this.buf.buffer, this.len, width);
    if (width === 1) view.setUint8(0, v);
    else if (width === 2) view.setUint16(0, v, true);
    else if (width === 4) view.setUint32(0, v, true);
    else view.setBigUint64(0, BigInt(v), true);
    this.len += width;
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const encoder = new TextEncoder();

/**
 * Serializes `value` as type `type` in normal form.
 *
 * @throws {GVariantError} the value does not have the shape the type needs (names where).
 * @example
 * ```ts
 * serialize("(uu)", [1, 2]); // 01 00 00 00 02 00 00 00
 * serialize("as", ["test"]); // "test\0" + end offset 05
 * ```
 */
export function serialize(type: string | GType, value: GValue): Uint8Array {
  const t = typeof type === "string" ? parseType(type) : type;
  const out = new Out();
  write(out, t, value, t.sig);
  return out.result();
}

function fail(t: GType, where: string, expected: string, found: unknown): never {
  const shown = found instanceof Uint8Array
    ? `${found.length} bytes`
    : found instanceof Variant
    ? `Variant<${found.type}>`
    : Array.isArray(found)
    ? `array of ${found.length}`
    : typeof found === "string"
    ? JSON.stringify(found.length > 40 ? found.slice(0, 40) + "…" : found)
    : String(found);
  throw new GVariantError(t.sig, `at ${where}: expected ${expected}, found ${shown}`);
}

function write(out: Out, t: GType, v: GValue, where: string): void {
  switch (t.kind) {
    case "basic":
      return writeBasic(out, t, v, where);
    case "variant": {
      if (!(v instanceof Variant)) fail(t, where, "a Variant", v);
      const inner = parseType(v.type);
      // The child is laid out as if it started at offset 0 of an 8-aligned buffer.
      const child = new Out();
      write(child, inner, v.value, `${where}<${v.type}>`);
      out.bytes(child.result());
      out.byte(0);
      out.bytes(encoder.encode(inner.sig));
      return;
    }
    case "maybe": {
      if (v === null) return;
      const elem = t.children[0];
      const child = new Out();
      write(child, elem, v, `${where}?`);
      out.bytes(child.result());
      if (elem.fixedSize === null) out.byte(0);
      return;
    }
    case "array":
      return writeArray(out, t, v, where);
    case "tuple":
    case "dict":
      return writeTuple(out, t, v, where);
  }
}

function writeBasic(out: Out, t: GType, v: GValue, where: string): void {
  const c = t.sig;
  const int = (min: number, max: number): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      fail(t, where, `an integer in [${min}, ${max}]`, v);
    }
    return v;
  };
  const big = (min: bigint, max: bigint): bigint => {
    const b = typeof v === "number" && Number.isSafeInteger(v) ? BigInt(v) : v;
    if (typeof b !== "bigint" || b < min || b > max) fail(t, where, `a 64-bit integer`, v);
    return b;
  };
  const start = out.len;
  switch (c) {
    case "b":
      if (typeof v !== "boolean") fail(t, where, "a boolean", v);
      out.byte(v ? 1 : 0);
      return;
    case "y":
      out.uint(int(0, 0xff), 1);
      return;
    case "n":
      out.uint(int(-0x8000, 0x7fff) & 0xffff, 2);
      return;
    case "q":
      out.uint(int(0, 0xffff), 2);
      return;
    case "i":
    case "h":
      out.uint(int(-0x80000000, 0x7fffffff) >>> 0, 4);
      return;
    case "u":
      out.uint(int(0, 0xffffffff), 4);
      return;
    case "x":
    case "t": {
      const b = c === "x" ? big(-(1n << 63n), (1n << 63n) - 1n) : big(0n, (1n << 64n) - 1n);
      out.bytes(new Uint8Array(8));
      new DataView(out.buf.buffer, start, 8).setBigUint64(0, BigInt.asUintN(64, b), true);
      return;
    }
    case "d": {
      if (typeof v !== "number") fail(t, where, "a number", v);
      out.bytes(new Uint8Array(8));
      new DataView(out.buf.buffer, start, 8).setFloat64(0, v, true);
      return;
    }
    default: {
      if (typeof v !== "string") fail(t, where, "a string", v);
      if (v.includes("\0")) fail(t, where, "a string without NUL", v);
      out.bytes(encoder.encode(v));
      out.byte(0);
      return;
    }
  }
}

function writeArray(out: Out, t: GType, v: GValue, where: string): void {
  const elem = t.children[0];
  if (elem.sig === "y" && v instanceof Uint8Array) {
    out.bytes(v);
    return;
  }
  if (!Array.isArray(v)) fail(t, where, elem.sig === "y" ? "a Uint8Array" : "an array", v);
  const items = v as readonly GValue[];
  const child = new Out();
  if (elem.fixedSize !== null) {
    items.forEach((item, i) => write(child, elem, item, `${where}[${i}]`));
    out.bytes(child.result());
    return;
  }
  const ends: number[] = [];
  items.forEach((item, i) => {
    child.pad(elem.align);
    write(child, elem, item, `${where}[${i}]`);
    ends.push(child.len);
  });
  const w = offsetWidthForBody(child.len, ends.length);
  for (const end of ends) child.uint(end, w);
  out.bytes(child.result());
}

function writeTuple(out: Out, t: GType, v: GValue, where: string): void {
  const members = t.children;
  if (!Array.isArray(v) || v.length !== members.length) {
    fail(t, where, `${members.length} members`, v);
  }
  const values = v as readonly GValue[];
  const child = new Out();
  const ends: number[] = [];
  members.forEach((m, i) => {
    child.pad(m.align);
    write(child, m, values[i], `${where}.${i}`);
    if (m.fixedSize === null && i !== members.length - 1) ends.push(child.len);
  });
  if (t.fixedSize !== null) {
    if (members.length === 0) child.byte(0);
    else child.pad(t.align);
  } else {
    const w = offsetWidthForBody(child.len, ends.length);
    for (const end of ends.reverse()) child.uint(end, w);
  }
  out.bytes(child.result());
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Options of {@linkcode deserialize}. */
export interface DeserializeOptions {
  /**
   * Refuse bytes that are not in normal form (non-zero padding, wider offsets than needed,
   * slack). Default true: only normal form has the checksum libostree computes.
   */
  normalForm?: boolean;
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses `bytes` as a value of `type`.
 *
 * @throws {GVariantError} the bytes are malformed for the type (says what and at which offset),
 *   or, by default, not in normal form.
 * @example
 * ```ts
 * deserialize("(uu)", new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0])); // [1, 2]
 * ```
 */
export function deserialize(
  type: string | GType,
  bytes: Uint8Array,
  opts: DeserializeOptions = {},
): GValue {
  const t = typeof type === "string" ? parseType(type) : type;
  const value = read(t, bytes, 0, bytes.length);
  if (opts.normalForm ?? true) {
    const again = serialize(t, value);
    if (!equalBytes(again, bytes)) {
      let at = 0;
      while (at < again.length && at < bytes.length && again[at] === bytes[at]) at++;
      throw new GVariantError(
        t.sig,
        `not in normal form (first difference from the normal encoding at byte ${at} of ` +
          `${bytes.length}; normal form is ${again.length} bytes)`,
      );
    }
  }
  return value;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function bad(t: GType, start: number, message: string): never {
  throw new GVariantError(t.sig, `${message} (value at byte ${start})`);
}

function readUint(bytes: Uint8Array, at: number, width: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, width);
  switch (width) {
    case 1:
      return view.getUint8(0);
    case 2:
      return view.getUint16(0, true);
    case 4:
      return view.getUint32(0, true);
    default: {
      const big = view.getBigUint64(0, true);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
      return Number(big);
    }
  }
}

/** Reads the value of type `t` stored in bytes[start, end). */
function read(t: GType, bytes: Uint8Array, start: number, end: number): GValue {
  const size = end - start;
  if (t.fixedSize !== null && size !== t.fixedSize) {
    bad(t, start, `expected ${t.fixedSize} bytes, found ${size}`);
  }
  switch (t.kind) {
    case "basic":
      return readBasic(t, bytes, start, end);
    case "variant": {
      let nul = end - 1;
      while (nul >= start && bytes[nul] !== 0) nul--;
      if (nul < start) bad(t, start, "variant without a type string");
      const sig = new TextDecoder().decode(bytes.subarray(nul + 1, end));
      let inner: GType;
      try {
        inner = parseType(sig);
      } catch {
        bad(t, start, `variant holds an invalid type string ${JSON.stringify(sig)}`);
      }
      return new Variant(sig, read(inner, bytes, start, nul));
    }
    case "maybe": {
      if (size === 0) return null;
      const elem = t.children[0];
      if (elem.fixedSize !== null) return read(elem, bytes, start, end);
      if (bytes[end - 1] !== 0) bad(t, start, "maybe value without its trailing zero byte");
      return read(elem, bytes, start, end - 1);
    }
    case "array":
      return readArray(t, bytes, start, end);
    case "tuple":
    case "dict":
      return readTuple(t, bytes, start, end);
  }
}

function readBasic(t: GType, bytes: Uint8Array, start: number, end: number): GValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, end - start);
  switch (t.sig) {
    case "b": {
      const b = view.getUint8(0);
      if (b > 1) bad(t, start, `boolean byte is ${b}, expected 0 or 1`);
      return b === 1;
    }
    case "y":
      return view.getUint8(0);
    case "n":
      return view.getInt16(0, true);
    case "q":
      return view.getUint16(0, true);
    case "i":
    case "h":
      return view.getInt32(0, true);
    case "u":
      return view.getUint32(0, true);
    case "x":
      return view.getBigInt64(0, true);
    case "t":
      return view.getBigUint64(0, true);
    case "d":
      return view.getFloat64(0, true);
    default: {
      if (end === start || bytes[end - 1] !== 0) bad(t, start, "string without terminating NUL");
      const body = bytes.subarray(start, end - 1);
      if (body.includes(0)) bad(t, start, "string with an embedded NUL");
      try {
        return strictDecoder.decode(body);
      } catch {
        bad(t, start, "string is not valid UTF-8");
      }
    }
  }
}

function readArray(t: GType, bytes: Uint8Array, start: number, end: number): GValue {
  const elem = t.children[0];
  const size = end - start;
  if (elem.sig === "y") return bytes.slice(start, end);
  const out: GValue[] = [];
  if (size === 0) return out;
  if (elem.fixedSize !== null) {
    if (size % elem.fixedSize !== 0) {
      bad(t, start, `${size} bytes is not a multiple of the element size ${elem.fixedSize}`);
    }
    for (let at = start; at < end; at += elem.fixedSize) {
      out.push(read(elem, bytes, at, at + elem.fixedSize));
    }
    return out;
  }
  const w = offsetWidthForSize(size);
  const tableStart = readUint(bytes, end - w, w);
  if (tableStart > size || (size - tableStart) % w !== 0) {
    bad(t, start, `framing offset table starts at ${tableStart}, outside ${size} bytes`);
  }
  const n = (size - tableStart) / w;
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const elemEnd = readUint(bytes, start + tableStart + i * w, w);
    const elemStart = alignUp(pos, elem.align);
    if (elemEnd < elemStart || elemEnd > tableStart) {
      bad(t, start, `element ${i} ends at ${elemEnd}, outside [${elemStart}, ${tableStart}]`);
    }
    out.push(read(elem, bytes, start + elemStart, start + elemEnd));
    pos = elemEnd;
  }
  return out;
}

function readTuple(t: GType, bytes: Uint8Array, start: number, end: number): GValue {
  const members = t.children;
  const size = end - start;
  const w = offsetWidthForSize(size);
  const out: GValue[] = [];
  let pos = 0;
  let table = size; // framing offsets are read backwards from the end
  for (let i = 0; i < members.length; i++) {
    const m = members[i];
    pos = alignUp(pos, m.align);
    let memberEnd: number;
    if (m.fixedSize !== null) {
      memberEnd = pos + m.fixedSize;
    } else if (i === members.length - 1) {
      memberEnd = table;
    } else {
      table -= w;
      if (table < 0) bad(t, start, "framing offsets run past the start of the tuple");
      memberEnd = readUint(bytes, start + table, w);
    }
    if (pos > size || memberEnd < pos || memberEnd > table) {
      bad(t, start, `member ${i} (${m.sig}) spans [${pos}, ${memberEnd}), outside the tuple`);
    }
    out.push(read(m, bytes, start + pos, start + memberEnd));
    pos = memberEnd;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// a{sv} helpers

/**
 * Looks `key` up in an `a{sv}` value and returns its Variant, or undefined.
 * When a key occurs twice, the first one wins (as `g_variant_lookup` does).
 */
export function lookupVariant(dict: readonly VariantDictEntry[], key: string): Variant | undefined {
  for (const [k, v] of dict) if (k === key) return v;
  return undefined;
}

/** Reads an `a{sv}` from a deserialized value, checking its shape. */
export function asVariantDict(value: GValue, what: string): VariantDictEntry[] {
  if (!Array.isArray(value)) throw new GVariantError("a{sv}", `${what}: not a dictionary`);
  return (value as GValue[]).map((e) => {
    const [k, v] = e as [GValue, GValue];
    if (typeof k !== "string" || !(v instanceof Variant)) {
      throw new GVariantError("a{sv}", `${what}: malformed entry`);
    }
    return [k, v] as const;
  });
}
