/**
 * Splitstreams: a file format stored as an object that reassembles another byte stream (a
 * layer tar, a manifest) from inline data and references to other objects.
 *
 * Spec: specs/composefs-repo.md §5 (composefs-rs `splitstream.rs`, `splitstream_format.rs`).
 * All integers little-endian. As written here (the current layout):
 *
 * ```
 * [0   .. 32)  header: "SplitStream" (11) ‖ version u8 = 0 ‖ flags u16 = 0 ‖ algorithm u8
 *              (1 sha256, 2 sha512) ‖ lg_blocksize u8 = 12 ‖ info FileRange {u64 start, u64 end}
 * [32  .. 112) info: stream_refs, object_refs, stream, named_refs (4 FileRanges),
 *              content_type u64 (8 ASCII bytes), stream_size u64
 * [112 .. )    stream_refs (N × hash), object_refs (M × hash),
 *              named_refs (one zstd frame of "<idx>:<name>\0" records, sorted by name),
 *              stream (one zstd frame of chunks: i64 n < 0 → -n inline bytes follow;
 *                      n ≥ 0 → the whole content of object_refs[n])
 * ```
 *
 * The legacy header layout (bootc ≤ 1.15) puts the info range first (bytes 0..16), flags at 16,
 * the magic at 18, version, algorithm, lg_blocksize at 29..31; everything after byte 32 is the
 * same. Readers accept both; this writer emits the current one. Sections are located only
 * through their ranges.
 *
 * @module
 */

import { close, closeQuietly, fstat, pread, pwriteAll } from "../../../ffi/fs.ts";
import { fromHex, HASH_SIZES, type HashAlgorithm, toHex } from "../../digest/hash.ts";
import { ByteReader } from "../../oci/byte_reader.ts";
import {
  concatBytes,
  type TransformPump,
  zstdCompressFrame,
  zstdCompressPump,
  zstdDecompressAll,
  zstdDecompressStream,
} from "../../oci/compression.ts";
import { ComposefsNotFoundError, SplitstreamFormatError } from "./errors.ts";
import type { ObjectId } from "./object_id.ts";
import { ObjectRefTable } from "./object_ref_table.ts";
import type { ComposefsRepo } from "./repository.ts";

/** The 11 magic bytes. Changing them makes every splitstream unreadable. */
export const SPLITSTREAM_MAGIC = new TextEncoder().encode("SplitStream");
/** The only format version (readers reject others). */
export const SPLITSTREAM_VERSION = 0;
/** log2 fs-verity block size recorded in the header (composefs-rs requires 12). */
export const SPLITSTREAM_LG_BLOCKSIZE = 12;
/** Size of the header; the info section starts here in files this writer produces. */
export const SPLITSTREAM_HEADER_SIZE = 32;
/** Size of the info section as written; longer ones are accepted (excess ignored). */
export const SPLITSTREAM_INFO_SIZE = 80;
/**
 * Regular files of a tar layer up to this size are stored inline, bigger ones as objects
 * (composefs-rs `INLINE_CONTENT_MAX_V0`). Its reader rejects streams that break the rule both
 * ways, so another value makes our layers unreadable by composefs-rs.
 */
export const INLINE_CONTENT_MAX = 64;

/** kernel fs-verity algorithm ids as stored in the header. */
const ALGORITHM_IDS: Record<HashAlgorithm, number> = { sha256: 1, sha512: 2 };

/**
 * Content type identifiers (§5.8): 8 ASCII bytes read as a little-endian u64, so the ASCII
 * appears verbatim on disk. Readers check them; other values make streams unrecognized.
 */
export const CONTENT_TYPE = {
  ociLayer: contentType("ocilayer"),
  ociConfig: contentType("ociconfg"),
  ociManifest: contentType("ocimanif"),
  ociBlob: contentType("oci_blob"),
  ostreeSummary: contentType("osummary"),
  /** Not ASCII: composefs-rs `OSTREE_COMMIT_CONTENT_TYPE`. */
  ostreeCommit: 0xAFE138C18C463EF1n,
} as const;

/** The u64 content type of an 8-character ASCII tag. */
export function contentType(ascii: string): bigint {
  if (ascii.length !== 8 || !/^[\x20-\x7e]{8}$/.test(ascii)) {
    throw new RangeError(
      `content type must be 8 printable ASCII characters, got ${JSON.stringify(ascii)}`,
    );
  }
  const b = new TextEncoder().encode(ascii);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** A content type for messages: its ASCII when printable, else hex. */
export function contentTypeName(value: bigint): string {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b.every((x) => x >= 0x20 && x <= 0x7e)
    ? new TextDecoder().decode(b)
    : `0x${value.toString(16).padStart(16, "0")}`;
}

/** Inline data buffered before it may be flushed at an entry boundary (keeps memory flat). */
const INLINE_FLUSH_THRESHOLD = 4 << 20;
/**
 * Stream section bytes staged before one write to the zstd compressor. A layer has a chunk
 * header per file; one compressor write each cost a stream round trip and short-lived buffers
 * that only a full GC reclaims (hundreds of MiB of RSS over a 120,000-file image). Only memory
 * and speed depend on it, not the bytes written.
 */
const STAGE_SIZE = 256 << 10;
/** Capacity the inline buffer starts at and shrinks back to after a long run was flushed. */
const INLINE_INITIAL = 16 << 10;
/** Piece size when reading objects and inline data back. */
const READ_CHUNK = 1 << 20;
/** Where {@linkcode SplitStream.cat} reads objects before copying out what it read. */
let catReadBuffer: Uint8Array<ArrayBuffer> | null = null;

/**
 * Writes a splitstream into a repository. Inline data is coalesced: consecutive
 * {@linkcode writeInline} calls become one chunk, so a tar header never straddles two chunks
 * and the padding after an external chunk sits in the next inline chunk (what composefs-rs'
 * tar reader requires). Only at {@linkcode markBoundary} (between tar entries) may a long run
 * of inline data be cut, to keep memory flat.
 *
 * The compressed stream section is spooled to an anonymous scratch file, and the finished
 * splitstream is written as an object with {@linkcode finish}; registering it under a name
 * (`streams/<id>`) is the caller's next step (`repo.registerStream`).
 *
 * @example
 * ```ts ignore
 * const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociManifest);
 * w.addNamedStreamRef(`config:${configDigest}`, configStreamId);
 * await w.writeExternal(manifestBytes);
 * const id = await w.finish();
 * repo.registerStream(`oci-manifest-${manifestDigest}`, id);
 * ```
 */
export class SplitStreamWriter {
  readonly #repo: ComposefsRepo;
  readonly #contentType: bigint;
  readonly #streamRefs = new Map<ObjectId, number>();
  readonly #namedRefs = new Map<string, number>();
  readonly #objectRefs: ObjectRefTable;
  #inline = new Uint8Array(INLINE_INITIAL);
  #inlineLen = 0;
  readonly #stage = new Uint8Array(STAGE_SIZE);
  readonly #stageView = new DataView(this.#stage.buffer);
  #stageLen = 0;
  #total = 0;
  #pump: TransformPump;
  #scratch: number;
  #scratchLen = 0;
  #done = false;
  readonly #flushThreshold: number;

  constructor(
    repo: ComposefsRepo,
    contentType: bigint,
    opts: { inlineFlushThreshold?: number } = {},
  ) {
    this.#repo = repo;
    this.#contentType = contentType;
    this.#objectRefs = new ObjectRefTable(HASH_SIZES[repo.algorithm]);
    this.#flushThreshold = opts.inlineFlushThreshold ?? INLINE_FLUSH_THRESHOLD;
    this.#scratch = repo.scratchFile();
    this.#pump = zstdCompressPump(`${repo.path} (new splitstream)`);
  }

  /** Total bytes of the reassembled stream so far. */
  get size(): number {
    return this.#total;
  }

  /**
   * Adds a named reference to another stream (or any object, e.g. an EROFS image): kept alive
   * by GC through this stream. A second call with the same name replaces the first.
   */
  addNamedStreamRef(name: string, id: ObjectId): void {
    this.#repo.checkObjectId(id, `named ref ${JSON.stringify(name)}`);
    if (name.includes("\0")) throw new SplitstreamFormatError(name, "named ref contains NUL");
    let idx = this.#streamRefs.get(id);
    if (idx === undefined) {
      idx = this.#streamRefs.size;
      this.#streamRefs.set(id, idx);
    }
    this.#namedRefs.set(name, idx);
  }

  /** Appends inline bytes (copied; coalesced with adjacent inline data). */
  writeInline(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const need = this.#inlineLen + bytes.length;
    if (need > this.#inline.length) {
      const grown = new Uint8Array(Math.max(need, 2 * this.#inline.length));
      grown.set(this.#inline.subarray(0, this.#inlineLen));
      this.#inline = grown;
    }
    this.#inline.set(bytes, this.#inlineLen);
    this.#inlineLen = need;
    this.#total += bytes.length;
  }

  /** Says "a chunk may end here" (between tar entries): flushes a large inline buffer. */
  async markBoundary(): Promise<void> {
    if (this.#inlineLen >= this.#flushThreshold) await this.#flushInline();
  }

  /** Appends an external chunk: the whole content of an existing object of `size` bytes. */
  async writeReference(id: ObjectId, size: number): Promise<void> {
    await this.#flushInline();
    await this.#chunkHeader(this.#objectRefs.indexOf(id));
    this.#total += size;
  }

  /** Stores `bytes` as an object and appends a reference to it. */
  async writeExternal(bytes: Uint8Array): Promise<ObjectId> {
    const id = this.#repo.ensureObject(bytes);
    await this.writeReference(id, bytes.length);
    return id;
  }

  async #flushInline(): Promise<void> {
    if (this.#inlineLen === 0) return;
    await this.#chunkHeader(-this.#inlineLen);
    await this.#stageBytes(this.#inline.subarray(0, this.#inlineLen));
    this.#inlineLen = 0;
    if (this.#inline.length > INLINE_FLUSH_THRESHOLD) this.#inline = new Uint8Array(INLINE_INITIAL);
  }

  /** Stages a chunk header: an i64 (little-endian), `n` < 0 for inline bytes, else an index. */
  async #chunkHeader(n: number): Promise<void> {
    if (this.#stageLen + 8 > STAGE_SIZE) await this.#flushStage();
    // Two 32-bit halves: exact for |n| < 2^53, and no BigInt per chunk.
    const high = Math.floor(n / 0x1_0000_0000);
    this.#stageView.setUint32(this.#stageLen, n - high * 0x1_0000_0000, true);
    this.#stageView.setInt32(this.#stageLen + 4, high, true);
    this.#stageLen += 8;
  }

  async #stageBytes(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length;) {
      if (this.#stageLen === STAGE_SIZE) await this.#flushStage();
      const n = Math.min(bytes.length - off, STAGE_SIZE - this.#stageLen);
      this.#stage.set(bytes.subarray(off, off + n), this.#stageLen);
      this.#stageLen += n;
      off += n;
    }
  }

  /** Feeds the staged bytes to the compressor; the stage is free again once it returns. */
  async #flushStage(): Promise<void> {
    if (this.#stageLen === 0) return;
    this.#spool(await this.#pump.write(this.#stage.subarray(0, this.#stageLen)));
    this.#stageLen = 0;
  }

  #spool(parts: Uint8Array[]): void {
    for (const p of parts) {
      pwriteAllAt(this.#scratch, p, this.#scratchLen, this.#repo.path);
      this.#scratchLen += p.length;
    }
  }

  /** Writes the splitstream object and returns its id. The writer cannot be used afterwards. */
  async finish(): Promise<ObjectId> {
    if (this.#done) throw new Error("SplitStreamWriter.finish() called twice");
    await this.#flushInline();
    await this.#flushStage();
    this.#spool(await this.#pump.end());
    this.#done = true;
    if (this.#scratchLen === 0) this.#spool([zstdCompressFrame(new Uint8Array(0))]);

    const hashLen = HASH_SIZES[this.#repo.algorithm];
    const streamRefs = [...this.#streamRefs.keys()];
    const objectRefs = this.#objectRefs.digests();
    const enc = new TextEncoder();
    const named = [...this.#namedRefs.entries()]
      .map(([name, idx]) => ({ key: enc.encode(name), rec: enc.encode(`${idx}:${name}\0`) }))
      .sort((a, b) => compareBytes(a.key, b.key));
    const namedSection = zstdCompressFrame(concatBytes(named.map((n) => n.rec)));

    const infoStart = SPLITSTREAM_HEADER_SIZE;
    const infoEnd = infoStart + SPLITSTREAM_INFO_SIZE;
    const streamRefsEnd = infoEnd + streamRefs.length * hashLen;
    const objectRefsEnd = streamRefsEnd + objectRefs.length;
    const namedEnd = objectRefsEnd + namedSection.length;
    const streamEnd = namedEnd + this.#scratchLen;

    const prefix = new Uint8Array(namedEnd);
    const v = new DataView(prefix.buffer);
    prefix.set(SPLITSTREAM_MAGIC, 0);
    prefix[11] = SPLITSTREAM_VERSION;
    v.setUint16(12, 0, true);
    prefix[14] = ALGORITHM_IDS[this.#repo.algorithm];
    prefix[15] = SPLITSTREAM_LG_BLOCKSIZE;
    setRange(v, 16, infoStart, infoEnd);
    setRange(v, infoStart + 0, infoEnd, streamRefsEnd);
    setRange(v, infoStart + 16, streamRefsEnd, objectRefsEnd);
    setRange(v, infoStart + 32, namedEnd, streamEnd);
    setRange(v, infoStart + 48, objectRefsEnd, namedEnd);
    v.setBigUint64(infoStart + 64, this.#contentType, true);
    v.setBigUint64(infoStart + 72, BigInt(this.#total), true);
    let off = infoEnd;
    for (const id of streamRefs) {
      prefix.set(fromHex(id, hashLen), off);
      off += hashLen;
    }
    prefix.set(objectRefs, streamRefsEnd);
    prefix.set(namedSection, objectRefsEnd);

    const w = this.#repo.createObjectWriter();
    try {
      w.write(prefix);
      const buf = new Uint8Array(READ_CHUNK);
      for (let pos = 0; pos < this.#scratchLen;) {
        const n = pread(this.#scratch, buf, pos);
        if (n === 0) throw new Error("splitstream scratch file shorter than written");
        w.write(buf.subarray(0, n));
        pos += n;
      }
      return w.finish().id;
    } catch (e) {
      w.abort();
      throw e;
    } finally {
      closeQuietly(this.#scratch);
    }
  }

  /** Drops everything (after an error elsewhere). */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    this.#pump.destroy();
    closeQuietly(this.#scratch);
  }
}

function pwriteAllAt(fd: number, bytes: Uint8Array, offset: number, repo: string): void {
  // Positional writes: the scratch file needs no seeking.
  pwriteAll(fd, bytes as Uint8Array<ArrayBuffer>, offset, `${repo}/objects (new splitstream)`);
}

function setRange(v: DataView, at: number, start: number, end: number): void {
  v.setBigUint64(at, BigInt(start), true);
  v.setBigUint64(at + 8, BigInt(end), true);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** A half-open byte range of the file. */
export interface FileRange {
  start: number;
  end: number;
}

/** Everything a splitstream's header, info and reference sections say. */
export interface SplitStreamIndex {
  /** Which header layout the file uses. */
  layout: "current" | "legacy";
  algorithm: HashAlgorithm;
  contentType: bigint;
  /** Total size of the reassembled stream as recorded (advisory). */
  streamSize: number;
  streamRefs: ObjectId[];
  objectRefs: ObjectId[];
  /** name → stream (or object) id. */
  namedRefs: Map<string, ObjectId>;
  ranges: {
    info: FileRange;
    streamRefs: FileRange;
    objectRefs: FileRange;
    stream: FileRange;
    namedRefs: FileRange;
  };
  fileSize: number;
}

/** One piece of a splitstream's content, in order. */
export type SplitStreamChunk =
  | {
    kind: "inline";
    /** Inline bytes (a piece of at most 1 MiB of one inline chunk). */
    bytes: Uint8Array;
    /** This piece starts a new inline chunk. */
    chunkStart: boolean;
    /** Size of the whole inline chunk this piece belongs to. */
    chunkSize: number;
  }
  | { kind: "external"; id: ObjectId; index: number };

function preadExact(fd: number, range: FileRange, what: string, where: string): Uint8Array {
  const out = new Uint8Array(range.end - range.start);
  let off = 0;
  while (off < out.length) {
    const n = pread(fd, out.subarray(off), range.start + off);
    if (n === 0) {
      throw new SplitstreamFormatError(
        where,
        `${what} section truncated at byte ${range.start + off}`,
      );
    }
    off += n;
  }
  return out;
}

function magicAt(b: Uint8Array, at: number): boolean {
  for (let i = 0; i < SPLITSTREAM_MAGIC.length; i++) {
    if (b[at + i] !== SPLITSTREAM_MAGIC[i]) return false;
  }
  return true;
}

function readRange(v: DataView, at: number): FileRange {
  const start = v.getBigUint64(at, true);
  const end = v.getBigUint64(at + 8, true);
  if (start > BigInt(Number.MAX_SAFE_INTEGER) || end > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { start: Number.MAX_SAFE_INTEGER, end: Number.MAX_SAFE_INTEGER };
  }
  return { start: Number(start), end: Number(end) };
}

/**
 * Parses a splitstream's header, info, reference arrays and named refs from an open file.
 * Checks magic (either layout), version 0, the repository's algorithm, block size 12, section
 * ranges inside the file, and (when given) the content type.
 */
export function readSplitStreamIndex(
  fd: number,
  algorithm: HashAlgorithm,
  where: string,
  expectedContentType?: bigint,
): SplitStreamIndex {
  const fileSize = fstat(fd).size;
  if (fileSize < SPLITSTREAM_HEADER_SIZE) {
    throw new SplitstreamFormatError(
      where,
      `file of ${fileSize} bytes is shorter than the 32-byte header`,
    );
  }
  const header = preadExact(fd, { start: 0, end: SPLITSTREAM_HEADER_SIZE }, "header", where);
  const hv = new DataView(header.buffer);
  let layout: "current" | "legacy";
  let version: number, alg: number, lg: number, info: FileRange;
  if (magicAt(header, 0)) {
    layout = "current";
    [version, alg, lg] = [header[11], header[14], header[15]];
    info = readRange(hv, 16);
  } else if (magicAt(header, 18)) {
    layout = "legacy";
    [version, alg, lg] = [header[29], header[30], header[31]];
    info = readRange(hv, 0);
  } else {
    throw new SplitstreamFormatError(
      where,
      `not a splitstream: no "SplitStream" magic at byte 0 or 18`,
    );
  }
  if (version !== SPLITSTREAM_VERSION) {
    throw new SplitstreamFormatError(
      where,
      `unsupported splitstream version ${version} (expected 0)`,
    );
  }
  if (alg !== ALGORITHM_IDS[algorithm]) {
    throw new SplitstreamFormatError(
      where,
      `fs-verity algorithm id ${alg} does not match the repository's ${algorithm} (${
        ALGORITHM_IDS[algorithm]
      })`,
    );
  }
  if (lg !== SPLITSTREAM_LG_BLOCKSIZE) {
    throw new SplitstreamFormatError(where, `fs-verity block size 2^${lg}, expected 2^12`);
  }
  const check = (r: FileRange, what: string) => {
    if (r.start > r.end || r.end > fileSize) {
      throw new SplitstreamFormatError(
        where,
        `${what} section [${r.start}, ${r.end}) does not fit in the file (${fileSize} bytes): truncated?`,
      );
    }
  };
  check(info, "info");
  if (info.end - info.start < SPLITSTREAM_INFO_SIZE) {
    throw new SplitstreamFormatError(
      where,
      `info section of ${info.end - info.start} bytes, expected ≥ 80`,
    );
  }
  const infoBytes = preadExact(
    fd,
    { start: info.start, end: info.start + SPLITSTREAM_INFO_SIZE },
    "info",
    where,
  );
  const iv = new DataView(infoBytes.buffer);
  const ranges = {
    info,
    streamRefs: readRange(iv, 0),
    objectRefs: readRange(iv, 16),
    stream: readRange(iv, 32),
    namedRefs: readRange(iv, 48),
  };
  check(ranges.streamRefs, "stream_refs");
  check(ranges.objectRefs, "object_refs");
  check(ranges.stream, "stream");
  check(ranges.namedRefs, "named_refs");
  const contentTypeValue = iv.getBigUint64(64, true);
  if (expectedContentType !== undefined && contentTypeValue !== expectedContentType) {
    throw new SplitstreamFormatError(
      where,
      `content type ${contentTypeName(contentTypeValue)}, expected ${
        contentTypeName(expectedContentType)
      }`,
    );
  }
  const hashLen = HASH_SIZES[algorithm];
  const idList = (r: FileRange, what: string): ObjectId[] => {
    const bytes = preadExact(fd, r, what, where);
    if (bytes.length % hashLen !== 0) {
      throw new SplitstreamFormatError(
        where,
        `${what} section of ${bytes.length} bytes is not a multiple of ${hashLen}`,
      );
    }
    const out: ObjectId[] = [];
    for (let i = 0; i < bytes.length; i += hashLen) out.push(toHex(bytes.subarray(i, i + hashLen)));
    return out;
  };
  const streamRefs = idList(ranges.streamRefs, "stream_refs");
  const objectRefs = idList(ranges.objectRefs, "object_refs");
  const namedRefs = parseNamedRefs(
    zstdDecompressAll(preadExact(fd, ranges.namedRefs, "named_refs", where), `${where} named_refs`),
    streamRefs,
    where,
  );
  return {
    layout,
    algorithm,
    contentType: contentTypeValue,
    streamSize: Number(iv.getBigUint64(72, true)),
    streamRefs,
    objectRefs,
    namedRefs,
    ranges,
    fileSize,
  };
}

/** Parses `"<idx>:<name>\0"` records (split on the first `:`; names may contain `:`). */
export function parseNamedRefs(
  section: Uint8Array,
  streamRefs: ObjectId[],
  where: string,
): Map<string, ObjectId> {
  const out = new Map<string, ObjectId>();
  const dec = new TextDecoder("utf-8", { fatal: true });
  let p = 0;
  while (p < section.length) {
    const nul = section.indexOf(0, p);
    if (nul < 0) {
      throw new SplitstreamFormatError(
        where,
        "named_refs: trailing bytes without a NUL terminator",
      );
    }
    let rec: string;
    try {
      rec = dec.decode(section.subarray(p, nul));
    } catch {
      throw new SplitstreamFormatError(where, "named_refs: record is not UTF-8");
    }
    const colon = rec.indexOf(":");
    if (colon < 0 || !/^[0-9]+$/.test(rec.slice(0, colon))) {
      throw new SplitstreamFormatError(
        where,
        `named_refs: malformed record ${JSON.stringify(rec)}`,
      );
    }
    const idx = Number(rec.slice(0, colon));
    if (idx >= streamRefs.length) {
      throw new SplitstreamFormatError(
        where,
        `named_refs: index ${idx} out of range (${streamRefs.length} stream refs) in ${
          JSON.stringify(rec)
        }`,
      );
    }
    out.set(rec.slice(colon + 1), streamRefs[idx]);
    p = nul + 1;
  }
  return out;
}

/**
 * An open splitstream: its index, and its content as chunks or reassembled.
 *
 * @example
 * ```ts ignore
 * using s = SplitStream.openStream(repo, `oci-layer-${diffId}`, CONTENT_TYPE.ociLayer);
 * await s.cat(repo, (chunk) => out.write(chunk));
 * ```
 */
export class SplitStream implements Disposable {
  private constructor(
    readonly fd: number,
    readonly index: SplitStreamIndex,
    /** Path of the stream (or object) for messages. */
    readonly where: string,
  ) {}

  /** Opens the stream named `streams/<contentId>`. */
  static openStream(
    repo: ComposefsRepo,
    contentId: string,
    expectedContentType?: bigint,
  ): SplitStream {
    const id = repo.streamObjectId(contentId);
    if (id === null) {
      throw new ComposefsNotFoundError(`${repo.path}/streams/${contentId}`, "no such stream");
    }
    return SplitStream.openObject(
      repo,
      id,
      expectedContentType,
      `${repo.path}/streams/${contentId}`,
    );
  }

  /** Opens a splitstream stored as object `id`. */
  static openObject(
    repo: ComposefsRepo,
    id: ObjectId,
    expectedContentType?: bigint,
    where = `${repo.path}/${repo.objectPath(id)}`,
  ): SplitStream {
    const fd = repo.openObject(id);
    try {
      return new SplitStream(
        fd,
        readSplitStreamIndex(fd, repo.algorithm, where, expectedContentType),
        where,
      );
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }

  close(): void {
    close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** The compressed stream section, read in fresh 1 MiB buffers. */
  async *#sectionChunks(): AsyncGenerator<Uint8Array> {
    const { start, end } = this.index.ranges.stream;
    for (let pos = start; pos < end;) {
      const buf = new Uint8Array(Math.min(READ_CHUNK, end - pos));
      const n = pread(this.fd, buf, pos);
      if (n === 0) {
        throw new SplitstreamFormatError(this.where, `stream section truncated at byte ${pos}`);
      }
      pos += n;
      yield buf.subarray(0, n);
    }
  }

  /**
   * The content chunks in order. Throws {@linkcode SplitstreamFormatError} for a truncated
   * chunk, an object index out of range, or corrupt compression.
   */
  async *chunks(): AsyncGenerator<SplitStreamChunk> {
    const r = new ByteReader(zstdDecompressStream(this.#sectionChunks(), `${this.where} stream`));
    const refs = this.index.objectRefs;
    for (;;) {
      if (!(await r.fill(8))) {
        if (r.length === 0) return;
        throw new SplitstreamFormatError(
          this.where,
          `stream ends inside a chunk header at byte ${r.offset}`,
        );
      }
      const n = new DataView(r.take(8).slice().buffer).getBigInt64(0, true);
      if (n < 0n) {
        const size = Number(-n);
        let left = size;
        let first = true;
        while (left > 0) {
          if (!(await r.fill(1))) {
            throw new SplitstreamFormatError(
              this.where,
              `stream ends inside an inline chunk: ${left} of ${size} bytes missing`,
            );
          }
          const bytes = r.takeUpTo(Math.min(left, READ_CHUNK));
          left -= bytes.length;
          yield { kind: "inline", bytes, chunkStart: first, chunkSize: size };
          first = false;
        }
      } else {
        if (n >= BigInt(refs.length)) {
          throw new SplitstreamFormatError(
            this.where,
            `external chunk index ${n} out of range (${refs.length} object refs)`,
          );
        }
        yield { kind: "external", id: refs[Number(n)], index: Number(n) };
      }
    }
  }

  /**
   * Reassembles the stream: inline bytes and the contents of referenced objects, in order, to
   * `sink` (each chunk is a fresh buffer the sink may keep). Returns the bytes written.
   */
  async cat(
    repo: ComposefsRepo,
    sink: (chunk: Uint8Array) => void | Promise<void>,
  ): Promise<number> {
    let total = 0;
    for await (const c of this.chunks()) {
      if (c.kind === "inline") {
        await sink(c.bytes);
        total += c.bytes.length;
        continue;
      }
      const fd = repo.openObject(c.id);
      try {
        const buf = catReadBuffer ??= new Uint8Array(READ_CHUNK);
        for (let pos = 0;;) {
          const n = pread(fd, buf, pos);
          if (n === 0) break;
          pos += n;
          total += n;
          await sink(buf.slice(0, n)); // exactly sized: a 1 MiB buffer per small object was GC work
        }
      } finally {
        close(fd);
      }
    }
    return total;
  }
}
