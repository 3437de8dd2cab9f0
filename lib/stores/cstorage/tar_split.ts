/**
 * tar-split: how containers-storage keeps the bytes of a layer tar that `diff/` cannot hold
 * (headers, padding, end blocks), so the exact tar, and thus its DiffID, can be rebuilt later
 * (specs/containers-storage.md §4; upstream vbatts/tar-split `tar/storage`).
 *
 * `overlay-layers/<id>.tar-split.gz` is gzip of newline-separated JSON entries, in tar order:
 *
 * ```
 * {"type":2,"payload":"<base64 raw bytes>","position":0}
 * {"type":1,"name":"etc/hello.txt","size":31,"payload":"<base64 CRC-64>","position":1}
 * {"type":1,"name_raw":"<base64 name>","payload":null,"position":3}
 * ```
 *
 * - type 2 (segment): raw archive bytes: the previous entry's padding, then every header block
 *   of the next entry (pax/GNU extension headers included); after the last entry the end
 *   blocks and anything after them, in chunks of at most 1 MiB.
 * - type 1 (file): one per tar entry; `name` as stored in the header (`name_raw`, base64, when
 *   it is not valid UTF-8), `size` the header's size (omitted when 0), `payload` the 8-byte
 *   big-endian CRC-64/GO-ISO of the content, `null` when the size is 0.
 * - `position` counts all entries from 0. Two file entries whose names clean to the same path
 *   are refused (tar-split's `ErrDuplicatePath`).
 *
 * The JSON is written the way Go's `encoding/json` writes it (key order, `omitempty`, `<>&`
 * escaped), so a layer unistore stores has the same tar-split lines as one c/storage stores.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import { writeAll } from "../../../ffi/fs.ts";
import { concatBytes, TransformPump } from "../../oci/compression.ts";
import { binaryFromBytes, type BinaryString } from "../../oci/binary_string.ts";
import { goClean, printable } from "./entry_path.ts";
import { StoreFormatError, UnsupportedLayerError } from "./errors.ts";
import { NameFingerprintSet } from "./name_fingerprints.ts";

/** Entry type numbers. Swapping them turns headers into file names for every reader. */
export const TAR_SPLIT_TYPE = { file: 1, segment: 2 } as const;

/**
 * Largest segment tar-split writes for the bytes after the last entry (`paddingChunkSize`).
 * Readers accept any size; keeping it makes our files match c/storage's.
 */
export const TRAILER_CHUNK = 1 << 20;

/** One tar-split entry. */
export type TarSplitEntry =
  | { type: "segment"; payload: Uint8Array; position: number }
  | {
    type: "file";
    /** The entry name's bytes as a binary string (see entry_path.ts). */
    name: BinaryString;
    size: number;
    /** 8-byte big-endian CRC-64 of the content; null when `size` is 0. */
    crc: Uint8Array | null;
    position: number;
  };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A string in Go `encoding/json` form: `<`, `>`, `&`, U+2028 and U+2029 escaped as `\uXXXX`. */
function goJsonString(s: string): string {
  return JSON.stringify(s).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/**
 * One entry as a JSON line (with the trailing newline), byte-compatible with tar-split's Go
 * packer.
 *
 * @example
 * ```ts
 * encodeTarSplitEntry({ type: "file", name: "etc/", size: 0, crc: null, position: 1 });
 * // '{"type":1,"name":"etc/","payload":null,"position":1}\n'
 * ```
 */
export function encodeTarSplitEntry(e: TarSplitEntry): string {
  if (e.type === "segment") {
    return `{"type":2,"payload":"${base64(e.payload)}","position":${e.position}}\n`;
  }
  let name = "";
  const nameBytes = Uint8Array.from(e.name, (c) => c.charCodeAt(0));
  try {
    const text = strictUtf8.decode(nameBytes);
    if (text !== "") name = `"name":${goJsonString(text)},`;
  } catch {
    name = `"name_raw":"${base64(nameBytes)}",`;
  }
  const size = e.size !== 0 ? `"size":${e.size},` : "";
  const payload = e.crc === null ? "null" : `"${base64(e.crc)}"`;
  return `{"type":1,${name}${size}"payload":${payload},"position":${e.position}}\n`;
}

function fromBase64(text: unknown, where: string, what: string): Uint8Array {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new StoreFormatError(
      where,
      `${what}: expected base64, found ${JSON.stringify(text)?.slice(0, 60)}`,
    );
  }
  // A plain view of the decoded Buffer (small ones share a pool): copying it out was a second
  // native allocation for every entry of every layer. Nothing here detaches or transfers it.
  const b = Buffer.from(text, "base64");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Parses one JSON line of a tar-split file. */
export function parseTarSplitLine(line: string, where: string): TarSplitEntry {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new StoreFormatError(where, `expected a JSON tar-split entry: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new StoreFormatError(where, "expected a JSON object per tar-split line");
  }
  const o = v as Record<string, unknown>;
  const position = o.position;
  if (typeof position !== "number" || !Number.isSafeInteger(position)) {
    throw new StoreFormatError(
      where,
      `tar-split entry without a numeric position: ${line.slice(0, 80)}`,
    );
  }
  const at = `${where} entry ${position}`;
  if (o.type === TAR_SPLIT_TYPE.segment) {
    return {
      type: "segment",
      payload: o.payload === null ? new Uint8Array(0) : fromBase64(o.payload, at, "payload"),
      position,
    };
  }
  if (o.type !== TAR_SPLIT_TYPE.file) {
    throw new StoreFormatError(at, `unknown tar-split entry type ${JSON.stringify(o.type)}`);
  }
  let name: BinaryString;
  const raw = o.name_raw === undefined || o.name_raw === null
    ? new Uint8Array(0)
    : fromBase64(o.name_raw, at, "name_raw");
  if (raw.length > 0) name = binaryFromBytes(raw);
  else if (o.name === undefined) name = "";
  else if (typeof o.name === "string") name = binaryFromBytes(new TextEncoder().encode(o.name));
  else throw new StoreFormatError(at, `"name" should be a string, found ${JSON.stringify(o.name)}`);
  const size = o.size ?? 0;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new StoreFormatError(
      at,
      `"size" should be a non-negative integer, found ${JSON.stringify(size)}`,
    );
  }
  const crc = o.payload === null || o.payload === undefined
    ? null
    : fromBase64(o.payload, at, "payload");
  if (crc !== null && crc.length !== 8) {
    throw new StoreFormatError(
      at,
      `file payload should be an 8-byte CRC-64, found ${crc.length} bytes`,
    );
  }
  return { type: "file", name, size, crc, position };
}

/**
 * Go's `ErrDuplicatePath` check: the cleaned names seen so far, as fingerprints (a layer's
 * worth of names as strings was the largest structure of an import).
 */
export class DuplicatePathCheck {
  readonly #seen = new NameFingerprintSet();
  constructor(readonly where: string) {}

  /** Throws {@linkcode UnsupportedLayerError} when `name` cleans to a path already seen. */
  add(name: BinaryString): void {
    if (!this.#seen.add(goClean(name))) {
      throw new UnsupportedLayerError(
        this.where,
        "the tar has more than one entry for this path; containers-storage (tar-split) refuses " +
          "duplicate paths",
        printable(name),
      );
    }
  }
}

/** Bytes buffered before they are handed to gzip: large enough to amortize the pump. */
const GZIP_BATCH = 256 * 1024;

/**
 * Writes a tar-split file: entries are numbered, encoded and gzipped in batches straight to `fd` (memory stays flat in the layer size).
 *
 * @example
 * ```ts ignore
 * const ts = new TarSplitWriter(tmpFd, "layer abc");
 * await ts.addSegment([header]);
 * await ts.addFile(name, 5, crcBytes);
 * await ts.finish();
 * ```
 */
export class TarSplitWriter {
  readonly #pump: TransformPump;
  #position = 0;
  #pending: string[] = [];
  #pendingLength = 0;
  #done = false;

  constructor(readonly fd: number, readonly where: string) {
    this.#pump = new TransformPump(zlib.createGzip(), where);
  }

  /** Adds one segment made of `parts` (skipped when empty, as tar-split does). */
  async addSegment(parts: readonly Uint8Array[]): Promise<void> {
    let total = 0;
    for (const p of parts) total += p.length;
    if (total === 0) return;
    const payload = parts.length === 1 ? parts[0] : concatBytes(parts);
    await this.#push({ type: "segment", payload, position: this.#position++ });
  }

  /**
   * Adds a file entry; `crc` must be given exactly when `size` > 0. Duplicate names are the
   * caller's to refuse ({@linkcode DuplicatePathCheck}), before anything is extracted.
   */
  async addFile(name: BinaryString, size: number, crc: Uint8Array | null): Promise<void> {
    await this.#push({ type: "file", name, size, crc, position: this.#position++ });
  }

  async #push(e: TarSplitEntry): Promise<void> {
    const line = encodeTarSplitEntry(e);
    this.#pending.push(line);
    this.#pendingLength += line.length;
    if (this.#pendingLength >= GZIP_BATCH) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const bytes = new TextEncoder().encode(this.#pending.join(""));
    this.#pending = [];
    this.#pendingLength = 0;
    for (const out of await this.#pump.write(bytes)) {
      writeAll(this.fd, new Uint8Array(out), this.where);
    }
  }

  /** Flushes everything and ends the gzip stream. The caller fsyncs and names the file. */
  async finish(): Promise<void> {
    if (this.#done) return;
    await this.#flush();
    for (const out of await this.#pump.end()) writeAll(this.fd, new Uint8Array(out), this.where);
    this.#done = true;
  }

  /** Drops the gzip stream after a failure. */
  abort(): void {
    if (!this.#done) this.#pump.destroy();
    this.#done = true;
  }
}

function* splitLines(bytes: Uint8Array): Generator<Uint8Array> {
  for (let start = 0; start <= bytes.length;) {
    const nl = bytes.indexOf(0x0a, start);
    const end = nl < 0 ? bytes.length : nl;
    yield bytes.subarray(start, end);
    start = end + 1;
  }
}

/**
 * Reads tar-split entries from the (already decompressed) JSON lines in `chunks`, rejecting
 * duplicate file names as tar-split's unpacker does.
 */
export async function* readTarSplitEntries(
  chunks: AsyncIterable<Uint8Array>,
  where: string,
): AsyncGenerator<TarSplitEntry> {
  for await (const batch of readTarSplitBatches(chunks, where)) yield* batch;
}

/**
 * {@linkcode readTarSplitEntries} in batches: the entries of each run of whole lines a chunk
 * completes, in order. An import walks a layer's tens of thousands of entries through several
 * stages; one step of an async iteration per entry, not per batch, was a quarter of that walk.
 *
 * @example
 * ```ts ignore
 * for await (const batch of readTarSplitBatches(jsonLines, where)) {
 *   for (const e of batch) if (e.type === "file") names.push(e.name);
 * }
 * ```
 */
export async function* readTarSplitBatches(
  chunks: AsyncIterable<Uint8Array>,
  where: string,
): AsyncGenerator<TarSplitEntry[]> {
  const dups = new DuplicatePathCheck(where);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let expect = 0;
  const emit = (text: string): TarSplitEntry | null => {
    if (text.trim() === "") return null;
    const e = parseTarSplitLine(text, where);
    if (e.position !== expect) {
      throw new StoreFormatError(
        where,
        `expected tar-split entry ${expect}, found position ${e.position}`,
      );
    }
    expect++;
    if (e.type === "file") dups.add(e.name);
    return e;
  };
  const emitAll = (lines: string[], out: TarSplitEntry[] = []): TarSplitEntry[] => {
    for (const text of lines) {
      const e = emit(text);
      if (e) out.push(e);
    }
    return out;
  };
  // Whole runs of lines are decoded at once: one decoder call per line was a tenth of an
  // import's time. A line is UTF-8 on its own iff the run is (a newline never sits inside a
  // multi-byte sequence), so the error can still name the line.
  const decodeLines = (bytes: Uint8Array): string[] => {
    try {
      return decoder.decode(bytes).split("\n");
    } catch {
      // Find the line: entries before it are numbered as emit() numbers them.
      let line = expect;
      for (const part of splitLines(bytes)) {
        let text: string;
        try {
          text = decoder.decode(part);
        } catch {
          break;
        }
        if (text.trim() !== "") line++;
      }
      throw new StoreFormatError(where, `tar-split line ${line} is not UTF-8`);
    }
  };
  let carry: Uint8Array = new Uint8Array(0);
  for await (const chunk of chunks) {
    const first = chunk.indexOf(0x0a);
    if (first < 0) {
      carry = concatBytes([carry, chunk]);
      continue;
    }
    // The line the carry began, completed; then the chunk's own whole lines, decoded in place
    // (joining the carry to the whole chunk copied every byte of the tar-split once more).
    const last = chunk.lastIndexOf(0x0a);
    const batch = emitAll(decodeLines(
      carry.length > 0 ? concatBytes([carry, chunk.subarray(0, first)]) : chunk.subarray(0, first),
    ));
    if (last > first) emitAll(decodeLines(chunk.subarray(first + 1, last)), batch);
    carry = chunk.slice(last + 1);
    if (batch.length > 0) yield batch;
  }
  if (carry.length > 0) {
    const batch = emitAll(decodeLines(carry));
    if (batch.length > 0) yield batch;
  }
}
