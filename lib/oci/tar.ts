/**
 * A streaming tar reader that keeps every byte: raw header blocks, payloads, padding, and the
 * end-of-archive trailer, so an archive can be rebuilt bit for bit (composefs splitstreams,
 * containers-storage tar-split) while its entries are also parsed.
 *
 * Formats read: POSIX ustar and pax (local `x` and global `g` extended headers, `SCHILY.xattr.*`
 * and `LIBARCHIVE.xattr.*` extended attributes), GNU (`L`/`K` long names, base-256 numbers, old
 * sparse `S` headers with extension blocks), star (131-byte prefix) and V7. Field layout:
 * POSIX.1-2008 `pax` (ustar header), GNU tar manual "Basic Tar Format". Where formats disagree
 * the reader follows Go's `archive/tar`, which containers-storage and skopeo use: header-only
 * types (links, devices, directories, fifos) have no payload whatever their size field says,
 * a `\0` typeflag with a trailing `/` is a directory, and the first all-zero block ends the
 * archive.
 *
 * Layout of one entry in the archive, and where each part is exposed:
 *
 * ```
 * [ext header block + ext data + pad] …  [header block]   [payload]   [padding to 512]
 * └──────────────── entry.rawHeader ───────────────────┘  readPayload()  readPadding()
 * ```
 *
 * After the last entry, {@linkcode TarReader.readTrailer} returns everything from the first
 * zero block to the end of the input (end-of-archive blocks plus any record padding).
 *
 * @example
 * ```ts ignore
 * const tar = new TarReader(chunks, "layer sha256:ab…");
 * for (let e = await tar.next(); e !== null; e = await tar.next()) {
 *   out.push(e.rawHeader);
 *   for await (const chunk of tar.readPayload()) out.push(chunk);
 *   out.push(await tar.readPadding());
 * }
 * for await (const chunk of tar.readTrailer()) out.push(chunk);
 * ```
 *
 * @module
 */

import { type ByteChunks, ByteReader } from "./byte_reader.ts";
import { TarFormatError } from "./errors.ts";

/** Tar archives are sequences of 512-byte blocks; every offset below is in these units. */
export const TAR_BLOCK_SIZE = 512;

/**
 * Upper bound for extension data held in memory (pax records, GNU long names), as Go's
 * `archive/tar` has it (1 MiB): bigger ones are rejected instead of exhausting memory.
 */
export const MAX_EXTENSION_SIZE = 1 << 20;

/** What an entry is. `file` covers typeflag `0` and the old `\0`. */
export type TarEntryType =
  | "file"
  | "hardlink"
  | "symlink"
  | "char"
  | "block"
  | "directory"
  | "fifo"
  | "contiguous"
  | "pax-global"
  | "gnu-sparse"
  | "gnu-dumpdir"
  | "gnu-volume"
  | "gnu-multivolume"
  | "other";

/** The header format of an entry's main header block. */
export type TarHeaderFormat = "ustar" | "gnu" | "star" | "v7";

/** One header or extension record inside {@linkcode TarEntry.rawHeader}. */
export interface TarHeaderPart {
  /** The typeflag character of the block (`x`, `g`, `L`, `K`, `S`, or the entry's own). */
  typeflag: string;
  /** Offset within `rawHeader`. */
  start: number;
  /** Length in bytes (header block, plus data and padding for extension records). */
  length: number;
}

/** A timestamp: whole seconds and nanoseconds (pax mtimes carry fractions). */
export interface TarTime {
  sec: number;
  nsec: number;
}

/** One parsed entry, with its raw header bytes. */
export interface TarEntry {
  /**
   * Every header byte of the entry exactly as it appears: extension headers (`x`, `L`, `K`, …)
   * with their data and padding, then the entry's own 512-byte header block (and, for old GNU
   * sparse files, its extension blocks). For a pax global header (`type` `pax-global`) this is
   * the `g` block with its records.
   */
  rawHeader: Uint8Array;
  /** How `rawHeader` is made up, in order. */
  headerParts: TarHeaderPart[];
  /** Offset of `rawHeader` in the archive. */
  offset: number;
  /** The main header's typeflag character as stored (`"0"`, `"\0"`, `"5"`, …). */
  typeflag: string;
  type: TarEntryType;
  format: TarHeaderFormat;
  /** The path bytes as stored (pax `path`, GNU long name, or ustar prefix + name). */
  path: Uint8Array;
  /** `path` decoded as UTF-8 (U+FFFD for invalid bytes): for messages, not for file system use. */
  pathText: string;
  /** Link target bytes (hardlinks and symlinks; empty otherwise). */
  linkPath: Uint8Array;
  /** `linkPath` decoded as UTF-8, lossy like `pathText`. */
  linkPathText: string;
  /** The mode field as stored; usually permission bits only, some writers add file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: TarTime;
  devMajor: number;
  devMinor: number;
  /** Extended attributes from pax `SCHILY.xattr.<name>` (and `LIBARCHIVE.xattr.*`) records. */
  xattrs: Map<string, Uint8Array>;
  /** Every pax record that applies (global ones first, overridden by local ones). */
  pax: Map<string, Uint8Array>;
  /** GNU sparse file (old `S` type or pax `GNU.sparse.*`): payload is the sparse encoding. */
  sparse: boolean;
  /** The size field (or pax `size`) as stored, even for header-only types. */
  declaredSize: number;
  /** Offset of the payload in the archive (right after `rawHeader`). */
  payloadOffset: number;
  /** Payload bytes that follow the header (0 for header-only types). */
  payloadSize: number;
  /** Bytes of padding after the payload, up to the next 512-byte boundary. */
  paddingSize: number;
}

const decoder = new TextDecoder("utf-8", { fatal: false });
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
  "7": "contiguous",
  g: "pax-global",
  S: "gnu-sparse",
  D: "gnu-dumpdir",
  V: "gnu-volume",
  M: "gnu-multivolume",
};

/** Types that never have a payload in Go's reader, whatever the size field says. */
const HEADER_ONLY = new Set<TarEntryType>([
  "hardlink",
  "symlink",
  "char",
  "block",
  "directory",
  "fifo",
]);

/**
 * Longest name component the kernel (and EROFS, `EROFS_NAME_LEN`) accepts. An entry with a
 * longer one can be kept as data, but never mounted, checked out or extracted: every store
 * that writes a tree refuses it up front, naming the entry, rather than at its `ENAMETOOLONG`.
 */
export const NAME_MAX = 255;

/**
 * Length in bytes of the longest `/`-separated component of a tar entry path.
 *
 * @example
 * ```ts
 * import { longestNameComponent } from "./tar.ts";
 * longestNameComponent(new TextEncoder().encode("usr/lib64/libc.so.6")); // 9
 * ```
 */
export function longestNameComponent(path: Uint8Array): number {
  let longest = 0, start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      longest = Math.max(longest, i - start);
      start = i + 1;
    }
  }
  return longest;
}

/** Bytes needed to pad `size` to a whole number of blocks. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK_SIZE - (size % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
}

/**
 * Parses a numeric header field as Go's `archive/tar` does: GNU base-256 (two's complement)
 * when the top bit of the first byte is set, else octal text with surrounding spaces and NULs
 * ignored and anything after the first NUL cut off.
 */
function parseNumeric(
  block: Uint8Array,
  from: number,
  to: number,
  name: string,
  where: string,
  offset: number,
): number {
  // Indices into the header block rather than a subarray per field: views that lived for one
  // call, eight per entry, tens of MiB of garbage over a layer import.
  if (to > from && (block[from] & 0x80) !== 0) {
    const inv = (block[from] & 0x40) !== 0 ? 0xff : 0; // negative numbers are stored inverted
    let v = 0n;
    for (let i = from; i < to; i++) {
      let c = block[i] ^ inv;
      if (i === from) c &= 0x7f; // the base-256 marker bit is not part of the number
      v = (v << 8n) | BigInt(c);
    }
    const n = inv ? -Number(v) - 1 : Number(v);
    if (!Number.isSafeInteger(n)) {
      throw new TarFormatError(where, offset, `${name} field out of range`);
    }
    return n;
  }
  let start = from;
  let end = to;
  while (start < end && (block[start] === 0x20 || block[start] === 0)) start++;
  while (end > start && (block[end - 1] === 0x20 || block[end - 1] === 0)) end--;
  for (let i = start; i < end; i++) {
    if (block[i] === 0) {
      end = i;
      break;
    }
  }
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = block[i] - 0x30;
    if (d < 0 || d > 7) {
      throw new TarFormatError(
        where,
        offset,
        `invalid octal ${name} field ${JSON.stringify(decoder.decode(block.subarray(from, to)))}`,
      );
    }
    v = v * 8 + d;
  }
  if (!Number.isSafeInteger(v)) {
    throw new TarFormatError(where, offset, `${name} field out of range`);
  }
  return v;
}

/** The bytes of a NUL-terminated header string field. */
function cString(field: Uint8Array): Uint8Array {
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/** Verifies a header block's checksum (unsigned sum, or the signed sum old writers used). */
function checkChecksum(block: Uint8Array, where: string, offset: number): void {
  const stored = parseNumeric(block, 148, 156, "checksum", where, offset);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError(
      where,
      offset,
      `header checksum mismatch: stored ${stored}, computed ${unsigned} (not a tar header?)`,
    );
  }
}

/**
 * Parses pax extended header records (`"<len> <key>=<value>\n"`, POSIX.1-2008 pax "pax
 * Extended Header"). Values are kept as bytes: paths and xattr values need not be UTF-8.
 */
export function parsePaxRecords(
  data: Uint8Array,
  where = "pax header",
  offset = 0,
): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let p = 0;
  while (p < data.length) {
    if (data[p] === 0) break; // some writers NUL-pad the record area
    const sp = data.indexOf(0x20, p);
    if (sp < 0) throw new TarFormatError(where, offset + p, "pax record without length");
    const lenText = decoder.decode(data.subarray(p, sp));
    if (!/^[0-9]+$/.test(lenText)) {
      throw new TarFormatError(
        where,
        offset + p,
        `invalid pax record length ${JSON.stringify(lenText)}`,
      );
    }
    const len = Number(lenText);
    const end = p + len;
    if (len <= sp - p + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw new TarFormatError(where, offset + p, `pax record of length ${len} is malformed`);
    }
    const rec = data.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError(where, offset + p, "pax record without key=value");
    let key: string;
    try {
      key = strictDecoder.decode(rec.subarray(0, eq));
    } catch {
      throw new TarFormatError(where, offset + p, "pax record key is not UTF-8");
    }
    out.set(key, rec.slice(eq + 1));
    p = end;
  }
  return out;
}

const XATTR_PREFIXES = ["SCHILY.xattr.", "LIBARCHIVE.xattr."];

function paxNumber(value: Uint8Array, key: string, where: string, offset: number): number {
  const text = decoder.decode(value);
  if (!/^-?[0-9]+$/.test(text)) {
    throw new TarFormatError(
      where,
      offset,
      `pax ${key} is not an integer: ${JSON.stringify(text)}`,
    );
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new TarFormatError(where, offset, `pax ${key} out of range`);
  return n;
}

function paxTime(value: Uint8Array, where: string, offset: number): TarTime {
  const text = decoder.decode(value);
  const m = /^(-?[0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!m) {
    throw new TarFormatError(where, offset, `pax mtime is not a number: ${JSON.stringify(text)}`);
  }
  const frac = (m[2] ?? "").slice(0, 9).padEnd(9, "0");
  return { sec: Number(m[1]), nsec: Number(frac) };
}

/** Decodes `LIBARCHIVE.xattr.<urlencoded name>=<base64 value>`. */
function libarchiveXattr(encodedName: string, value: Uint8Array): [string, Uint8Array] {
  const name = decodeURIComponent(encodedName);
  const b64 = decoder.decode(value);
  const bin = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
  return [name, Uint8Array.from(bin, (c) => c.charCodeAt(0))];
}

/**
 * An entry as {@linkcode TarReader.next} parses it from its header block and extension records.
 * Numbers are read (and checked) at once; paths, text fields, extended attributes and the pax
 * map are made on first use: an import reads tens of thousands of entries and uses few of
 * these, and making them all was the largest source of garbage of its tar path.
 */
class ParsedTarEntry implements TarEntry {
  readonly rawHeader: Uint8Array;
  readonly headerParts: TarHeaderPart[];
  readonly offset: number;
  readonly typeflag: string;
  readonly type: TarEntryType;
  readonly format: TarHeaderFormat;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: TarTime;
  readonly devMajor: number;
  readonly devMinor: number;
  readonly sparse: boolean;
  readonly declaredSize: number;
  readonly payloadOffset: number;
  readonly payloadSize: number;
  readonly paddingSize: number;
  /** The main header block (a copy of the archive's bytes: the input may be reused). */
  readonly #block: Uint8Array;
  #pax: Map<string, Uint8Array> | null;
  readonly #longName: Uint8Array | null;
  readonly #longLink: Uint8Array | null;
  #path?: Uint8Array;
  #linkPath?: Uint8Array;
  #pathText?: string;
  #linkPathText?: string;
  #uname?: string;
  #gname?: string;
  #xattrs?: Map<string, Uint8Array>;

  constructor(
    header: { block: Uint8Array; offset: number; where: string },
    raw: {
      rawHeader: Uint8Array;
      parts: TarHeaderPart[];
      start: number;
      longName: Uint8Array | null;
      longLink: Uint8Array | null;
    },
    kind: {
      typeflag: string;
      type: TarEntryType;
      format: TarHeaderFormat;
      pax: Map<string, Uint8Array> | null;
      declaredSize: number;
      payloadSize: number;
      paddingSize: number;
    },
  ) {
    const { block, offset: blockOffset, where } = header;
    const num = (from: number, to: number, name: string) =>
      parseNumeric(block, from, to, name, where, blockOffset);
    const pax = kind.pax;
    this.#block = block;
    this.#pax = pax;
    this.rawHeader = raw.rawHeader;
    this.headerParts = raw.parts;
    this.offset = raw.start;
    this.typeflag = kind.typeflag;
    this.type = kind.type;
    this.format = kind.format;
    this.#longName = raw.longName;
    this.#longLink = raw.longLink;
    // Every numeric field is checked, even one a pax record overrides (as Go's reader does).
    const hasUstarFields = kind.format !== "v7";
    const uid = num(108, 116, "uid");
    const gid = num(116, 124, "gid");
    const mtime = num(136, 148, "mtime");
    this.devMajor = hasUstarFields ? num(329, 337, "devmajor") : 0;
    this.devMinor = hasUstarFields ? num(337, 345, "devminor") : 0;
    this.mode = num(100, 108, "mode");
    const paxUid = pax?.get("uid");
    this.uid = paxUid ? paxNumber(paxUid, "uid", where, blockOffset) : uid;
    const paxGid = pax?.get("gid");
    this.gid = paxGid ? paxNumber(paxGid, "gid", where, blockOffset) : gid;
    const paxMtime = pax?.get("mtime");
    this.mtime = paxMtime ? paxTime(paxMtime, where, blockOffset) : { sec: mtime, nsec: 0 };
    let sparse = kind.type === "gnu-sparse";
    if (pax) { for (const key of pax.keys()) if (key.startsWith("GNU.sparse.")) sparse = true; }
    this.sparse = sparse;
    this.declaredSize = kind.declaredSize;
    this.payloadOffset = raw.start + raw.rawHeader.length;
    this.payloadSize = kind.payloadSize;
    this.paddingSize = kind.paddingSize;
  }

  /** The path bytes as stored (pax `path`, GNU long name, or ustar prefix + name). */
  get path(): Uint8Array {
    if (this.#path) return this.#path;
    let path = this.#pax?.get("path") ?? this.#longName;
    if (!path) {
      const block = this.#block;
      path = cString(block.subarray(0, 100));
      if (this.format === "ustar" || this.format === "star") {
        const prefix = cString(block.subarray(345, this.format === "star" ? 476 : 500));
        if (prefix.length > 0) {
          const joined = new Uint8Array(prefix.length + 1 + path.length);
          joined.set(prefix);
          joined[prefix.length] = 0x2f;
          joined.set(path, prefix.length + 1);
          path = joined;
        }
      }
    }
    return this.#path = path;
  }

  get linkPath(): Uint8Array {
    return this.#linkPath ??= this.#pax?.get("linkpath") ?? this.#longLink ??
      cString(this.#block.subarray(157, 257));
  }

  get pathText(): string {
    return this.#pathText ??= decoder.decode(this.path);
  }

  get linkPathText(): string {
    return this.#linkPathText ??= decoder.decode(this.linkPath);
  }

  get uname(): string {
    return this.#uname ??= this.#name("uname", 265, 297);
  }

  get gname(): string {
    return this.#gname ??= this.#name("gname", 297, 329);
  }

  get pax(): Map<string, Uint8Array> {
    return this.#pax ??= new Map();
  }

  get xattrs(): Map<string, Uint8Array> {
    if (this.#xattrs) return this.#xattrs;
    const xattrs = new Map<string, Uint8Array>();
    for (const [key, value] of this.#pax ?? []) {
      if (key.startsWith(XATTR_PREFIXES[0])) {
        xattrs.set(key.slice(XATTR_PREFIXES[0].length), value);
      } else if (key.startsWith(XATTR_PREFIXES[1])) {
        const [name, v] = libarchiveXattr(key.slice(XATTR_PREFIXES[1].length), value);
        if (!xattrs.has(name)) xattrs.set(name, v);
      }
    }
    return this.#xattrs = xattrs;
  }

  /** A user or group name: its pax record, else the ustar field (absent from V7 headers). */
  #name(key: string, from: number, to: number): string {
    const fromPax = this.#pax?.get(key);
    if (fromPax) return decoder.decode(fromPax);
    return this.format === "v7" ? "" : decoder.decode(cString(this.#block.subarray(from, to)));
  }
}

/** The header blocks of an entry read so far (extension headers first), as next() collects them. */
interface HeaderContext {
  start: number;
  parts: TarHeaderPart[];
  raw: Uint8Array[];
  add: (typeflag: string, bytes: Uint8Array) => void;
  localPax: Map<string, Uint8Array> | null;
  longName: Uint8Array | null;
  longLink: Uint8Array | null;
}

/** An entry's main header block and what is read from it first. */
interface MainHeader {
  block: Uint8Array;
  blockOffset: number;
  typeflag: string;
  format: TarHeaderFormat;
  declaredSize: number;
}

/**
 * Reads a tar archive from a stream of chunks. Chunks are kept by reference until consumed, so
 * the source must hand out fresh buffers (as `node:zlib` and the layout reader do).
 *
 * Call {@linkcode next} for each entry; its payload and padding may then be read with
 * {@linkcode readPayload} and {@linkcode readPadding}, or are skipped by the next `next()`.
 * When `next()` returns `null`, {@linkcode readTrailer} yields the rest of the input.
 */
export class TarReader {
  readonly #queue: ByteReader;
  #payloadLeft = 0;
  #paddingLeft = 0;
  #ended = false;
  #globalPax = new Map<string, Uint8Array>();

  /**
   * @param source the archive bytes (uncompressed), in order.
   * @param where names the archive in errors (a blob digest, a file path).
   */
  constructor(source: AsyncIterable<ByteChunks>, readonly where = "tar archive") {
    this.#queue = new ByteReader(source);
  }

  /** Bytes of the archive consumed so far. */
  get offset(): number {
    return this.#queue.offset;
  }

  #fill(n: number): Promise<boolean> {
    return this.#queue.fill(n);
  }

  // The reads below take bytes already buffered without awaiting: a layer has tens of thousands
  // of entries, and an await per header block, payload and padding (most of them buffered
  // already) was most of the cost of reading one.

  async #take(n: number, what: string): Promise<Uint8Array> {
    if (!(await this.#fill(n))) {
      throw new TarFormatError(
        this.where,
        this.#queue.offset,
        `archive truncated: expected ${n} bytes of ${what}, found ${this.#queue.length}`,
      );
    }
    return this.#queue.take(n);
  }

  /** The next entry, or `null` at the end of the archive. Skips unread payload and padding. */
  async next(): Promise<TarEntry | null> {
    if (this.#ended) return null;
    if (this.#payloadLeft > 0 || this.#paddingLeft > 0) await this.readPadding();
    const parts: TarHeaderPart[] = [];
    const raw: Uint8Array[] = [];
    let rawLength = 0;
    const start = this.#queue.offset;
    let localPax: Map<string, Uint8Array> | null = null;
    let longName: Uint8Array | null = null;
    let longLink: Uint8Array | null = null;
    const add = (typeflag: string, bytes: Uint8Array) => {
      parts.push({ typeflag, start: rawLength, length: bytes.length });
      raw.push(bytes);
      rawLength += bytes.length;
    };
    for (;;) {
      if (this.#queue.length < TAR_BLOCK_SIZE && !(await this.#fill(TAR_BLOCK_SIZE))) {
        if (this.#queue.length === 0 && parts.length === 0) {
          // Clean end of input at a block boundary without end-of-archive blocks.
          this.#ended = true;
          return null;
        }
        throw new TarFormatError(
          this.where,
          this.#queue.offset,
          parts.length > 0
            ? `archive truncated after extension header(s) ${parts.map((p) => p.typeflag).join("")}`
            : `archive truncated inside a header block (${this.#queue.length} of 512 bytes)`,
        );
      }
      const peeked = this.#queue.peek(TAR_BLOCK_SIZE);
      if (isZeroBlock(peeked)) {
        if (parts.length > 0) {
          throw new TarFormatError(
            this.where,
            this.#queue.offset,
            `extension header(s) ${parts.map((p) => p.typeflag).join("")} not followed by an entry`,
          );
        }
        this.#ended = true;
        return null;
      }
      const blockOffset = this.#queue.offset;
      const block = new Uint8Array(this.#queue.take(TAR_BLOCK_SIZE)); // buffered: peeked above
      checkChecksum(block, this.where, blockOffset);
      const typeflag = String.fromCharCode(block[156]);
      if (typeflag === "x" || typeflag === "L" || typeflag === "K") {
        const size = parseNumeric(block, 124, 136, "size", this.where, blockOffset);
        if (size > MAX_EXTENSION_SIZE) {
          throw new TarFormatError(
            this.where,
            blockOffset,
            `extension header ${typeflag} of ${size} bytes exceeds ${MAX_EXTENSION_SIZE}`,
          );
        }
        const n = size + tarPadding(size);
        const data = this.#queue.length >= n
          ? this.#queue.take(n)
          : await this.#take(n, `${typeflag} extension data`);
        const whole = new Uint8Array(TAR_BLOCK_SIZE + data.length);
        whole.set(block);
        whole.set(data, TAR_BLOCK_SIZE);
        add(typeflag, whole);
        const content = whole.subarray(TAR_BLOCK_SIZE, TAR_BLOCK_SIZE + size);
        if (typeflag === "x") {
          localPax ??= new Map();
          for (const [k, v] of parsePaxRecords(content, this.where, blockOffset + 512)) {
            localPax.set(k, v);
          }
        } else if (typeflag === "L") longName = cString(content).slice();
        else longLink = cString(content).slice();
        continue;
      }
      return this.#mainHeader(block, blockOffset, typeflag, {
        start,
        parts,
        raw,
        add,
        localPax,
        longName,
        longLink,
      });
    }
  }

  /**
   * The entry of main header `block`: at once, unless a global header's records or an old GNU
   * sparse map's extension blocks are still to be read.
   */
  #mainHeader(
    block: Uint8Array,
    blockOffset: number,
    typeflag: string,
    ctx: HeaderContext,
  ): TarEntry | Promise<TarEntry> {
    let format: TarHeaderFormat = "v7";
    // magic at 257, version at 263
    if (eqAscii(block, 257, "ustar\0") && eqAscii(block, 263, "00")) {
      format = eqAscii(block, 508, "tar\0") ? "star" : "ustar";
    } else if (eqAscii(block, 257, "ustar ") && eqAscii(block, 263, " \0")) {
      format = "gnu";
    }
    const declaredSize = parseNumeric(block, 124, 136, "size", this.where, blockOffset);
    const header = { block, blockOffset, typeflag, format, declaredSize };
    if (typeflag === "g") return this.#globalHeader(header, ctx);
    ctx.add(typeflag, block);
    if (typeflag === "S" && format === "gnu" && block[482] !== 0) {
      return this.#sparseMap(ctx).then(() => this.#entry(header, ctx));
    }
    return this.#entry(header, ctx);
  }

  /** A global pax header: an entry of its own; its records apply to all later entries. */
  async #globalHeader(h: MainHeader, ctx: HeaderContext): Promise<TarEntry> {
    const { block, blockOffset, declaredSize } = h;
    if (declaredSize > MAX_EXTENSION_SIZE) {
      throw new TarFormatError(
        this.where,
        blockOffset,
        `global pax header of ${declaredSize} bytes`,
      );
    }
    const data = await this.#take(declaredSize + tarPadding(declaredSize), "g extension data");
    const whole = new Uint8Array(TAR_BLOCK_SIZE + data.length);
    whole.set(block);
    whole.set(data, TAR_BLOCK_SIZE);
    ctx.add(h.typeflag, whole);
    const records = parsePaxRecords(
      whole.subarray(TAR_BLOCK_SIZE, TAR_BLOCK_SIZE + declaredSize),
      this.where,
      blockOffset + 512,
    );
    for (const [k, v] of records) {
      if (v.length === 0) this.#globalPax.delete(k);
      else this.#globalPax.set(k, v);
    }
    const type = TYPES[h.typeflag] ?? "other";
    return this.#finish(ctx, h, type, records, declaredSize, 0);
  }

  /** Old GNU sparse: more sparse-map blocks follow the header, each flagging the next. */
  async #sparseMap(ctx: HeaderContext): Promise<void> {
    for (;;) {
      const ext = new Uint8Array(await this.#take(TAR_BLOCK_SIZE, "GNU sparse extension"));
      ctx.add("S", ext);
      if (ext[504] === 0) break;
    }
  }

  /** A file, directory, link or other entry, once all its header blocks are read. */
  #entry(h: MainHeader, ctx: HeaderContext): TarEntry {
    const { block, blockOffset, typeflag } = h;
    let type: TarEntryType = TYPES[typeflag] ?? "other";
    let declaredSize = h.declaredSize;
    // Most entries have no pax records at all: no map per entry for them (see ParsedTarEntry).
    let pax: Map<string, Uint8Array> | null = null;
    if (this.#globalPax.size > 0 || ctx.localPax) {
      pax = new Map(this.#globalPax);
      for (const [k, v] of ctx.localPax ?? []) {
        if (v.length === 0) pax.delete(k);
        else pax.set(k, v);
      }
    }
    const paxSize = pax?.get("size");
    if (paxSize) declaredSize = paxNumber(paxSize, "size", this.where, blockOffset);
    if (type === "file" && typeflag === "\0") {
      const name = pax?.get("path") ?? ctx.longName ?? cString(block.subarray(0, 100));
      if (name.length > 0 && name[name.length - 1] === 0x2f) type = "directory";
    }
    const payloadSize = HEADER_ONLY.has(type) ? 0 : declaredSize;
    return this.#finish(ctx, h, type, pax, declaredSize, payloadSize);
  }

  #finish(
    ctx: HeaderContext,
    h: MainHeader,
    type: TarEntryType,
    pax: Map<string, Uint8Array> | null,
    declaredSize: number,
    payloadSize: number,
  ): TarEntry {
    let rawHeader: Uint8Array;
    if (ctx.raw.length === 1) rawHeader = ctx.raw[0];
    else {
      let total = 0;
      for (const r of ctx.raw) total += r.length;
      rawHeader = new Uint8Array(total);
      let off = 0;
      for (const r of ctx.raw) {
        rawHeader.set(r, off);
        off += r.length;
      }
    }
    this.#payloadLeft = payloadSize;
    this.#paddingLeft = tarPadding(payloadSize);
    const { block, blockOffset, typeflag, format } = h;
    return new ParsedTarEntry(
      { block, offset: blockOffset, where: this.where },
      {
        rawHeader,
        parts: ctx.parts,
        start: ctx.start,
        longName: ctx.longName,
        longLink: ctx.longLink,
      },
      { typeflag, type, format, pax, declaredSize, payloadSize, paddingSize: this.#paddingLeft },
    );
  }

  /**
   * The current entry's payload, in chunks (views into the input: copy what you keep).
   * Ends after the payload; a second call yields what is left (nothing, once read).
   */
  async *readPayload(): AsyncGenerator<Uint8Array> {
    while (this.#payloadLeft > 0) {
      if (this.#queue.length === 0 && !(await this.#fill(1))) {
        throw this.#payloadMissing();
      }
      const part = this.#queue.takeUpTo(this.#payloadLeft);
      this.#payloadLeft -= part.length;
      yield part;
    }
  }

  #payloadMissing(): TarFormatError {
    return new TarFormatError(
      this.where,
      this.#queue.offset,
      `archive truncated: ${this.#payloadLeft} payload bytes missing`,
    );
  }

  /**
   * The padding after the current entry's payload (a view into the input), skipping unread
   * payload first.
   */
  async readPadding(): Promise<Uint8Array> {
    while (this.#payloadLeft > 0) {
      if (this.#queue.length === 0 && !(await this.#fill(1))) {
        throw this.#payloadMissing();
      }
      this.#payloadLeft -= this.#queue.takeUpTo(this.#payloadLeft).length;
    }
    const n = this.#paddingLeft;
    if (n === 0) return EMPTY;
    this.#paddingLeft = 0;
    return this.#queue.length >= n ? this.#queue.take(n) : await this.#take(n, "padding");
  }

  /**
   * Everything after the last entry: the end-of-archive zero blocks and any record padding or
   * other bytes up to the end of the input. Only valid once {@linkcode next} returned `null`.
   */
  async *readTrailer(): AsyncGenerator<Uint8Array> {
    if (!this.#ended) {
      throw new Error("TarReader.readTrailer() called before the end of the archive");
    }
    for (;;) {
      if (this.#queue.length === 0 && !(await this.#fill(1))) return;
      yield this.#queue.takeUpTo(this.#queue.length);
    }
  }
}

/** The padding of an entry that has none (shared: it has no bytes to change). */
const EMPTY = new Uint8Array(0);

/** Whether `bytes` holds `text` (ASCII) at `at`. */
function eqAscii(bytes: Uint8Array, at: number, text: string): boolean {
  if (at + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
}
