/**
 * The digests of a layer being imported, computed on a second thread.
 *
 * Importing a containers-storage layer into composefs needs, for every byte, the layer's
 * sha256 (its diff_id) and for every file the fs-verity digest that names its object. Hashing
 * is half the CPU time of an import, and the other half (tar-split, clones, links, splitstream)
 * does not need the bytes at all, so the hashing runs in a Worker that reads the files itself
 * (same process, same fds) while the main thread goes on cloning the next ones. Results come
 * back in order; the caller links each object once its digest is known.
 *
 * Which thread is the slower one changes with the files: through a run of large files the
 * worker falls behind, through many small ones the caller's per-file work (opens, links) does.
 * So the work moves to the idle side, through memory both threads share: a caller that would
 * wait takes files' fs-verity digests itself ({@linkcode LayerDigests.steal}; one
 * compare-and-swap per file decides who hashes it, the stream hash stays the worker's), and a
 * worker far ahead of the caller's placing stages the copies itself (copy mode,
 * {@linkcode CopyTarget}) of the bytes it has just hashed (written from its buffer for files
 * up to one read, copied in the kernel from the cached pages for larger ones), and, where the
 * repository names objects by the digest it computed, links them as objects too.
 *
 * When no Worker can be started, the same {@linkcode LayerDigestState} runs on the calling
 * thread: slower, same results.
 *
 * @module
 */

import { closeQuietly, pread } from "../../ffi/fs.ts";
import { FsVerityHasher } from "../digest/fsverity.ts";
import { type HashAlgorithm, StreamingHash } from "../digest/hash.ts";
import { SourceChangedError } from "../reflink/errors.ts";
import type { ObjectId } from "../stores/composefs/object_id.ts";
import { linkObjectAt, type ObjectOutcome } from "../stores/composefs/object_link.ts";
import {
  type ByteSink,
  cloneToTmpfile,
  discardClone,
  type PlaceMethod,
  readThrough,
  type TmpClone,
  writeToTmpfile,
} from "../reflink/place.ts";
import {
  assertUnchanged,
  sameVersion,
  type SourceVersion,
  sourceVersion,
} from "../reflink/source_version.ts";
import { type ShareOutcome, shareWithOstreeObject } from "./block_sharing.ts";
import { ByteQueue } from "./byte_queue.ts";

/** The digests of one file, in the order files were given. */
export interface FileDigests {
  /** Bytes read (equal to the version's size, or the read fails). */
  size: number;
  /** fs-verity digest of the bytes, when asked for. */
  verity: Uint8Array | null;
  /** How sharing blocks with the file's ostree object went, when one was named. */
  share: { outcome: ShareOutcome; bytes: number } | null;
  /**
   * A copy of the file the worker staged in the copy target given to
   * {@linkcode LayerDigests.begin}, while it was ahead of the caller, of the bytes it hashed
   * (the source was still the version it was handed in at once copied); the caller links or
   * discards it.
   */
  copy?: TmpClone | null;
  /**
   * The worker's copy, already linked as the object `verity` names ({@linkcode CopyTarget.link};
   * `copy` is then null): how it was copied, and whether the object was new.
   */
  linked?: { method: PlaceMethod; outcome: ObjectOutcome } | null;
}

/**
 * Where the worker may stage copies of the files it hashes: a directory and the files' mode,
 * for files at least `minAhead` files ahead of the one the caller places
 * ({@linkcode LayerDigests.placing}). Far ahead, the caller is the slower thread (many small
 * files) and the worker has time to spare; close behind, the worker is the slower one (large
 * files) and must only hash. A quarter of the caller's window of files in flight.
 */
export interface CopyTarget {
  dirfd: number;
  mode: number;
  minAhead: number;
  /**
   * Also name each copy as the object its fs-verity digest names, `XX/<rest>` in `dirfd` (a
   * composefs `objects/`): for repositories that name objects by the digest computed in
   * userspace. Where the kernel measures it (fs-verity enabled on the object), the caller names
   * the copy, as it does its own. Off, the copy is handed over unnamed.
   */
  link: boolean;
}

/** Place methods as the worker's reply codes them (0: no copy). Internal to this module. */
const COPY_CODES: readonly (PlaceMethod | null)[] = [null, "copy_file_range", "readwrite"];

/**
 * A copy of `fd` (`size` bytes, still at `version` once copied) staged as an unnamed file in
 * `target` by the thread that just hashed it, or null when none could be made: the caller then
 * copies the file itself, and meets any error (a full disk, a changed source) there, with its
 * own message. With `held`, the file's bytes as hashed (see
 * {@linkcode LayerDigestState.heldBytes}), those are written: no second read of the source.
 */
export function stageCopy(
  fd: number,
  size: number,
  version: SourceVersion,
  target: CopyTarget,
  held: Uint8Array<ArrayBuffer> | null = null,
): TmpClone | null {
  // The bytes just hashed, still in memory, are the copy's by construction.
  const fromHeld = held !== null && held.length === size;
  let tmp: TmpClone;
  try {
    if (fromHeld) tmp = writeToTmpfile(held, target.dirfd, { mode: target.mode });
    else {
      tmp = cloneToTmpfile(fd, target.dirfd, {
        policy: "reflink-or-copy",
        copyOnly: true,
        mode: target.mode,
        size,
        stopAtSize: true, // the version is checked below
      });
    }
  } catch {
    return null;
  }
  // A named temporary (no O_TMPFILE) cannot be handed over as a bare fd; a copy of another
  // length, or made from the source after it changed, is not of the bytes hashed.
  if (
    tmp.tmpName !== undefined || tmp.size !== size ||
    (!fromHeld && !sameVersion(version, sourceVersion(fd)))
  ) {
    discardClone(tmp);
    return null;
  }
  return tmp;
}

/** The reply code of a staged copy. */
export function copyCode(copy: TmpClone | null): number {
  return copy ? Math.max(0, COPY_CODES.indexOf(copy.method)) : 0;
}

/** Link outcomes as the worker's reply codes them (0: not linked). Internal to this module. */
const LINK_CODES: readonly (ObjectOutcome | null)[] = [null, "written", "already-present"];

/**
 * Names a copy {@linkcode stageCopy} made as object `id` in the copy target (see
 * {@linkcode CopyTarget.link}), creating `XX/` unless `prefixes` has it. Returns the outcome's
 * reply code, or 0 when it could not be linked: the copy is gone then, and the caller copies and
 * links the file itself, meeting the error there with its own message.
 */
export function linkCopyCode(
  copy: TmpClone,
  id: ObjectId,
  target: CopyTarget,
  prefixes: Set<string>,
): number {
  try {
    return LINK_CODES.indexOf(linkObjectAt(target.dirfd, copy, id, prefixes));
  } catch {
    return 0;
  }
}

/**
 * Outcomes of {@linkcode shareWithOstreeObject} as the worker's reply codes them (0: no ostree
 * object named). Only ever read back by this module: the order is internal.
 */
const SHARE_CODES: readonly (ShareOutcome | null)[] = [
  null,
  "shared",
  "inline",
  "deduped",
  "differed",
];

/** Read size: whole fs-verity blocks, few calls. */
const READ_CHUNK = 1 << 20;

/**
 * Reads all of `fd` from offset 0 through `buf` into `sink` and returns its size, and its bytes
 * when one read held them all (a file up to `buf`'s size: a view of `buf`); throws
 * {@linkcode SourceChangedError} when the file is no longer at `version` after the read.
 */
function readWhole(
  fd: number,
  version: SourceVersion,
  what: string,
  buf: Uint8Array<ArrayBuffer>,
  sink: ByteSink,
): { size: number; held: Uint8Array<ArrayBuffer> | null } {
  // No read past the version's size: a file that grew changed its version too.
  const whole = buf.subarray(0, version.size);
  let size: number;
  let held: Uint8Array<ArrayBuffer> | null = null;
  if (version.size > 0 && version.size <= buf.length && pread(fd, whole, 0) === version.size) {
    sink.update(whole); // one read held it all: the bytes stay in `buf`
    [size, held] = [version.size, whole];
  } else size = readThrough(fd, sink, buf, version.size);
  assertUnchanged(fd, version, what, size);
  return { size, held };
}

/**
 * The hashing itself, thread-agnostic: a stream hash over everything fed in order (inline
 * bytes and whole files), and a per-file fs-verity digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LayerDigestState } from "./layer_digests.ts";
 * import { toHex } from "../digest/hash.ts";
 *
 * const s = new LayerDigestState("sha256", null);
 * s.inline(new TextEncoder().encode("hello world"));
 * assert.equal(
 *   toHex(s.finish()),
 *   "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
 * );
 * ```
 */
export class LayerDigestState {
  #stream: StreamingHash;
  readonly #buf = new Uint8Array(READ_CHUNK);
  #held: Uint8Array<ArrayBuffer> | null = null;

  /**
   * @param ostreeObjectsDirfd `objects/` of an ostree repository whose file objects the files
   *   may be deduplicated against ({@linkcode file}'s `ostreeChecksum`), or null.
   */
  constructor(
    readonly streamAlgorithm: HashAlgorithm,
    readonly verity: HashAlgorithm | null,
    readonly ostreeObjectsDirfd: number | null = null,
  ) {
    this.#stream = new StreamingHash(streamAlgorithm);
  }

  /** Feeds bytes that are not a file's (tar headers, padding, small inline files). */
  inline(bytes: Uint8Array): void {
    this.#stream.update(bytes);
  }

  /**
   * Reads all of `fd` from offset 0 into the stream hash and a fresh fs-verity hasher. Throws
   * {@linkcode SourceChangedError} when the file is not at `version` after the read. With an
   * `ostreeChecksum`, then makes that ostree file object share `fd`'s blocks while its pages
   * are still cached ({@linkcode shareWithOstreeObject}: the kernel compares the bytes first).
   * Without `withVerity` (the file's fs-verity digest was taken by the other thread, see
   * {@linkcode LayerDigests.steal}) only the stream hash is fed.
   */
  file(
    fd: number,
    version: SourceVersion,
    what: string,
    ostreeChecksum = "",
    withVerity = true,
  ): FileDigests {
    const verity = this.verity && withVerity ? new FsVerityHasher(this.verity) : null;
    const stream = this.#stream;
    const sink = verity
      ? { update: (c: Uint8Array) => (stream.update(c), verity.update(c)) }
      : stream;
    this.#held = null; // a read that throws leaves nothing held
    const { size, held } = readWhole(fd, version, what, this.#buf, sink);
    this.#held = held;
    const share = ostreeChecksum !== "" && this.ostreeObjectsDirfd !== null
      ? shareWithOstreeObject(fd, size, this.ostreeObjectsDirfd, ostreeChecksum, what)
      : null;
    return { size, verity: verity?.digest() ?? null, share };
  }

  /**
   * The bytes of the file {@linkcode file} just read, when one read held all of it (a file up
   * to 1 MiB): a view of this state's buffer, valid until the next call of `file`.
   */
  heldBytes(): Uint8Array<ArrayBuffer> | null {
    return this.#held;
  }

  /** The stream digest; the state starts over for the next layer. */
  finish(): Uint8Array {
    const d = this.#stream.digest();
    this.#stream = new StreamingHash(this.streamAlgorithm);
    return d;
  }
}

/**
 * A batch of files for the worker, as flat typed arrays (structured-cloning an object per file
 * cost a tenth of the import's main-thread time). File `i` is preceded in the stream by
 * `inline[inlineEnds[i-1] .. inlineEnds[i])`; its version is `versions[5i .. 5i+5)` (size,
 * mtime sec and nsec, ctime sec and nsec).
 */
export interface FileBatch {
  t: "files";
  /** Sequence number of the batch's first file (its claim, see {@linkcode takeForWorker}). */
  firstSeq: number;
  fds: Int32Array;
  versions: Float64Array;
  inline: Uint8Array;
  inlineEnds: Uint32Array;
  /** Per file, the ostree object to share blocks with ("" for none). */
  ostreeChecksums: string[];
}

/** Messages to the worker (lib/pipeline/layer_digest_worker.ts). */
export type LayerDigestRequest =
  | {
    t: "begin";
    streamAlgorithm: HashAlgorithm;
    verity: HashAlgorithm | null;
    ostreeObjectsDirfd: number | null;
    /** The claims both threads share (a SharedArrayBuffer's view, not a copy). */
    claims: Int32Array;
    /** Where to stage copies of files far enough ahead of the caller, or null for none. */
    copyTo: CopyTarget | null;
  }
  | FileBatch
  | { t: "end"; inline: Uint8Array };

/** Why the worker could not hash file `index` of a batch. */
export interface FileFailure {
  index: number;
  message: string;
  /** Set when the file changed: its versions before and after, described. */
  changed?: { before: string; after: string };
}

/** Messages from the worker, one per `files` and `end` request, in order. */
export type LayerDigestReply =
  | {
    t: "files";
    sizes: Float64Array;
    verity: Uint8Array | null;
    /** Per file, {@linkcode SHARE_CODES} index, and the bytes deduplicated. */
    shares: Uint8Array;
    sharedBytes: Float64Array;
    /** Per file, the fd of a staged copy (-1 for none), and its {@linkcode COPY_CODES} index. */
    copyFds: Int32Array;
    copyMethods: Uint8Array;
    /** Per file, the {@linkcode LINK_CODES} index of a copy the worker linked (its fd is -1). */
    links: Uint8Array;
    failures: FileFailure[];
  }
  | { t: "end"; digest: Uint8Array }
  | { t: "error"; message: string };

/** Packs a version into `out` at file `i`. */
export function packVersion(out: Float64Array, i: number, v: SourceVersion): void {
  out.set([v.size, v.mtime.sec, v.mtime.nsec, v.ctime.sec, v.ctime.nsec], 5 * i);
}

/** The version of file `i` packed by {@linkcode packVersion}. */
export function unpackVersion(a: Float64Array, i: number): SourceVersion {
  const o = 5 * i;
  return {
    size: a[o],
    mtime: { sec: a[o + 1], nsec: a[o + 2] },
    ctime: { sec: a[o + 3], nsec: a[o + 4] },
  };
}

/** The reply code of a share outcome. */
export function shareCode(share: FileDigests["share"]): number {
  return share ? SHARE_CODES.indexOf(share.outcome) : 0;
}

/**
 * Who computes a file's fs-verity digest: the worker, or the main thread when it would otherwise
 * wait for the worker ({@linkcode LayerDigests.steal}). Each file has a slot (its sequence number
 * modulo this) in memory both threads share, holding the sequence number and who took it; each
 * side takes a file with one compare-and-swap from "nobody", so exactly one of them hashes it.
 * A slot that holds another file's number (a reused slot) lets the worker hash and the main
 * thread not, so the count only needs to exceed the files usually in flight (1,024).
 */
const CLAIM_SLOTS = 4096;
/** After the claims: the sequence number of the file the caller is placing now. */
const PLACING_SLOT = CLAIM_SLOTS;
/** Then: the last file of the last batch the worker has answered (-1 before the first). */
const ANSWERED_SLOT = CLAIM_SLOTS + 1;
const CLAIM_FREE = 0;
const CLAIM_WORKER = 1;
const CLAIM_CALLER = 2;

/** The slot value for file `seq` taken by `who` (30 bits of the number: no sign, no overflow). */
function claimTag(seq: number, who: number): number {
  return ((seq & 0x1fffffff) << 2) | who;
}

/**
 * Takes file `seq` for `who` if nobody has: one compare-and-swap on its slot. Returns the slot's
 * value before, which says who had it (or that the slot now holds another file's number).
 */
function claim(claims: Int32Array, seq: number, who: number): number {
  return Atomics.compareExchange(
    claims,
    seq % CLAIM_SLOTS,
    claimTag(seq, CLAIM_FREE),
    claimTag(seq, who),
  );
}

/**
 * The worker's claim on file `seq`: true unless the main thread took it first (then the worker
 * feeds the file to the stream hash only).
 */
export function takeForWorker(claims: Int32Array, seq: number): boolean {
  return claim(claims, seq, CLAIM_WORKER) !== claimTag(seq, CLAIM_CALLER);
}

/** Records, just before the worker posts a batch's results, that files up to `lastSeq` are answered. */
export function markAnswered(claims: Int32Array, lastSeq: number): void {
  Atomics.store(claims, ANSWERED_SLOT, lastSeq);
}

/** Whether the worker, at file `seq`, is far enough ahead of the caller to stage its copy. */
export function farAheadOfPlacing(claims: Int32Array, seq: number, target: CopyTarget): boolean {
  return seq - Atomics.load(claims, PLACING_SLOT) >= target.minAhead;
}

/** The worker's module; `deno compile` must be told to include it (scripts/compile.ts). */
const WORKER_URL = new URL("./layer_digest_worker.ts", import.meta.url);

/** Files per message: one message per file cost more than the hashing it saved. */
const BATCH_FILES = 32;

/**
 * The results of one batch of files, settled together when the worker's reply comes in (or the
 * request fails). Every file of the batch awaits the one promise it holds: a promise and its
 * handlers per file were most of what an import kept alive per file in flight.
 */
class DigestBatch {
  /** The results came in (or the request failed). */
  settled = false;
  readonly done: Promise<void>;
  #resolve!: () => void;
  #result: ((index: number, what: string) => FileDigests) | null = null;

  constructor(
    /** Sends the batch to the worker if it is still being filled. */
    readonly send: () => void,
  ) {
    this.done = new Promise<void>((resolve) => this.#resolve = resolve);
  }

  /** Settles every file of the batch: `result` gives file `index`'s digests, or throws. */
  settle(result: (index: number, what: string) => FileDigests): void {
    if (this.settled) return;
    this.#result = result;
    this.settled = true;
    this.#resolve();
  }

  fail(e: Error): void {
    this.settle(() => {
      throw e;
    });
  }

  /** File `index`'s digests, once settled; throws its failure. */
  result(index: number, what: string): FileDigests {
    return this.#result!(index, what);
  }
}

/** Who waits for the stream digest of an `end` request. */
interface EndWaiter {
  resolve(digest: Uint8Array): void;
  reject(e: Error): void;
}

/** Batch of one for a result computed at once (no worker). */
function settledBatch(r: FileDigests | Error): DigestBatch {
  const b = new DigestBatch(() => {});
  if (r instanceof Error) b.fail(r);
  else b.settle(() => r);
  return b;
}

/**
 * A file's digests on their way, as {@linkcode LayerDigests.file} hands them out: awaitable
 * (awaiting sends the batch it is in), and, while unsettled, open to
 * {@linkcode LayerDigests.steal}.
 */
export class PendingDigests implements PromiseLike<FileDigests> {
  #digests: FileDigests | null = null;

  constructor(
    /** The file's sequence number; -1 without a worker (computed when handed in). */
    readonly seq: number,
    readonly fd: number,
    readonly version: SourceVersion,
    readonly what: string,
    /** False when the worker must hash the file itself (it shares blocks with ostree). */
    readonly stealable: boolean,
    readonly batch: DigestBatch,
    /** The file's place in its batch. */
    readonly index: number,
  ) {}

  /** The worker's result came in (or the request failed). */
  get settled(): boolean {
    return this.batch.settled;
  }

  /** The digests once settled (the same object every time); throws the file's failure. */
  #result(): FileDigests {
    return this.#digests ??= this.batch.result(this.index, this.what);
  }

  then<A = FileDigests, B = never>(
    ok?: ((v: FileDigests) => A | PromiseLike<A>) | null,
    fail?: ((e: unknown) => B | PromiseLike<B>) | null,
  ): PromiseLike<A | B> {
    this.batch.send(); // still unsent: send it now
    return this.batch.done.then(() => this.#result()).then(ok, fail);
  }
}

function failureError(what: string, f: FileFailure): Error {
  if (f.changed) return new SourceChangedError(what, f.changed.before, f.changed.after);
  return new Error(`${what}: ${f.message}`);
}

/**
 * The main thread's side: `inline()` and `file()` in stream order, `end()` for the stream
 * digest. `file()` returns at once; files are sent to the worker in batches, and awaiting a
 * result sends the batch it is in. The caller keeps `fd` open until its result settles.
 *
 * @example
 * ```ts ignore
 * using d = await LayerDigests.start();
 * d.begin("sha256", "sha512");
 * d.inline(header);
 * const p = d.file(fd, sourceVersion(fd), path); // hashed on the worker
 * const { verity } = await p;
 * const diffId = await d.end();
 * ```
 */
export class LayerDigests implements Disposable {
  #worker: Worker | null = null;
  #local: LayerDigestState | null = null;
  /** Inline bytes not sent yet (a batch carries those before its last file). */
  readonly #inline = new ByteQueue();
  #fds: number[] = [];
  #versions: SourceVersion[] = [];
  #inlineEnds: number[] = [];
  #ostreeChecksums: string[] = [];
  /** The batch being filled (its files are the ones in #fds), made with its first file. */
  #batch: DigestBatch | null = null;
  /** Per request sent, in order: a batch of files, or the settlers of an `end`. */
  readonly #sent: (DigestBatch | EndWaiter)[] = [];
  #failed: Error | null = null;
  /** Sequence number of the next file; the claims of files by number (see CLAIM_SLOTS). */
  #seq = 0;
  #batchFirstSeq = 0;
  readonly #claims = LayerDigests.#sharedClaims();
  #copyTo: CopyTarget | null = null;
  /** The layer's fs-verity algorithm, and the read buffer of steals (made on the first). */
  #verity: HashAlgorithm | null = null;
  #stealBuf: Uint8Array<ArrayBuffer> | null = null;
  #started = false;
  #readyResolve!: () => void;
  readonly #ready = new Promise<void>((resolve) => {
    this.#readyResolve = () => {
      this.#started = true;
      resolve();
    };
  });

  static #sharedClaims(): Int32Array {
    const claims = new Int32Array(new SharedArrayBuffer(4 * (CLAIM_SLOTS + 2)));
    claims[ANSWERED_SLOT] = -1;
    return claims;
  }

  /**
   * Use {@linkcode LayerDigests.start}, which waits until the worker is running. Constructed
   * directly, a worker that fails to load fails every request.
   */
  constructor(workerUrl: string | URL = WORKER_URL) {
    try {
      this.#worker = new Worker(workerUrl, { type: "module" });
    } catch {
      this.#worker = null; // hash on this thread instead
      this.#readyResolve();
      return;
    }
    this.#worker.onmessage = (ev: MessageEvent<LayerDigestReply | { t: "ready" }>) => {
      if (ev.data.t === "ready") this.#readyResolve();
      else this.#receive(ev.data);
    };
    this.#worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      if (!this.#started) {
        // It never ran (a binary compiled without it, say): hash on this thread instead.
        this.#worker?.terminate();
        this.#worker = null;
        this.#readyResolve();
        return;
      }
      this.#fail(new Error(`layer digest worker failed: ${ev.message}`));
    };
  }

  /**
   * A `LayerDigests` whose worker is running, or that hashes on this thread when no worker
   * could be started (then {@linkcode threaded} is false; the results are the same).
   */
  static async start(workerUrl: string | URL = WORKER_URL): Promise<LayerDigests> {
    const d = new LayerDigests(workerUrl);
    await d.#ready;
    return d;
  }

  /** Whether the hashing runs on a second thread. */
  get threaded(): boolean {
    return this.#worker !== null;
  }

  /**
   * Starts a layer: its stream hash, whether files get an fs-verity digest, the `objects/` of
   * the ostree repository files may share blocks with, and where the worker may stage copies
   * of the files it is far ahead on (only with an fs-verity digest: it copies what it hashed).
   */
  begin(
    streamAlgorithm: HashAlgorithm,
    verity: HashAlgorithm | null,
    ostreeObjectsDirfd: number | null = null,
    copyTo: CopyTarget | null = null,
  ): void {
    if (this.#fds.length > 0 || this.#inline.length > 0) {
      // A layer was left without end(): its bytes would land in this one.
      throw new Error("LayerDigests.begin(): the previous layer was not ended");
    }
    this.#verity = verity;
    // Copies only where the worker hashes for fs-verity (it stages what it has just read).
    this.#copyTo = verity ? copyTo : null;
    if (this.#worker) {
      const claims = this.#claims;
      this.#worker.postMessage(
        {
          t: "begin",
          streamAlgorithm,
          verity,
          ostreeObjectsDirfd,
          claims,
          copyTo: this.#copyTo,
        } satisfies LayerDigestRequest,
      );
    } else {
      this.#local = new LayerDigestState(streamAlgorithm, verity, ostreeObjectsDirfd);
    }
  }

  /** Feeds bytes that are not a file's. Copied: the caller may reuse its buffer. */
  inline(bytes: Uint8Array): void {
    if (this.#local) return this.#local.inline(bytes);
    this.#inline.push(bytes);
  }

  /**
   * Hashes all of `fd` (kept open by the caller until the result settles), then shares its
   * blocks with the ostree file object `ostreeChecksum` when one is given.
   */
  file(
    fd: number,
    version: SourceVersion,
    what: string,
    ostreeChecksum = "",
  ): PendingDigests {
    if (this.#local) {
      let r: FileDigests | Error;
      try {
        r = this.#local.file(fd, version, what, ostreeChecksum);
      } catch (e) {
        r = e instanceof Error ? e : new Error(String(e));
      }
      return new PendingDigests(-1, fd, version, what, false, settledBatch(r), 0);
    }
    const seq = this.#seq++;
    if (this.#fds.length === 0) this.#batchFirstSeq = seq;
    Atomics.store(this.#claims, seq % CLAIM_SLOTS, claimTag(seq, CLAIM_FREE));
    const batch = this.#batch ??= this.#newBatch();
    const index = this.#fds.length;
    this.#fds.push(fd);
    this.#versions.push(version);
    this.#inlineEnds.push(this.#inline.length);
    this.#ostreeChecksums.push(ostreeChecksum);
    if (this.#fds.length >= BATCH_FILES) this.#flush();
    const stealable = this.#verity !== null && ostreeChecksum === "";
    return new PendingDigests(seq, fd, version, what, stealable, batch, index);
  }

  #newBatch(): DigestBatch {
    const batch: DigestBatch = new DigestBatch(() => {
      if (this.#batch === batch) this.#flush();
    });
    return batch;
  }

  /**
   * Tells the worker which file the caller places now: the worker stages copies only of files
   * far ahead of it (see {@linkcode CopyTarget}).
   */
  placing(p: PendingDigests): void {
    if (p.seq >= 0) Atomics.store(this.#claims, PLACING_SLOT, p.seq);
  }

  /**
   * Whether the worker has posted the result of `p` (it may not have arrived on this thread
   * yet: only the event loop delivers it, and a caller stealing work is not yielding to it).
   */
  answered(p: PendingDigests): boolean {
    return p.settled || (p.seq >= 0 && Atomics.load(this.#claims, ANSWERED_SLOT) >= p.seq);
  }

  /**
   * Computes the fs-verity digest of a file handed to {@linkcode file} on this thread, when the
   * worker has not started on it (it then feeds the file to the stream hash only): for a caller
   * that would otherwise sit waiting for a worker that is behind. Returns null when the worker
   * has the file or already hashed it, and for files it must hash itself (no fs-verity digest
   * wanted, blocks to share with ostree, no worker). The file's own result still settles later,
   * and its fd must stay open until then, as for any file.
   *
   * @throws {SourceChangedError} when the file is no longer the version it was handed in at.
   */
  steal(p: PendingDigests): FileDigests | null {
    if (!p.stealable || this.answered(p) || this.#failed) return null;
    p.batch.send(); // the worker works on while this thread hashes
    if (claim(this.#claims, p.seq, CLAIM_CALLER) !== claimTag(p.seq, CLAIM_FREE)) return null;
    const verity = new FsVerityHasher(this.#verity!);
    this.#stealBuf ??= new Uint8Array(READ_CHUNK);
    const { size } = readWhole(p.fd, p.version, p.what, this.#stealBuf, verity);
    return { size, verity: verity.digest(), share: null };
  }

  /** The layer's stream digest, after every file before it. */
  async end(): Promise<Uint8Array> {
    if (this.#local) return this.#local.finish();
    this.#flush();
    if (this.#failed) throw this.#failed;
    const inline = this.#inline.take(this.#inline.length).slice(); // transferred: its own buffer
    return await new Promise<Uint8Array>((resolve, reject) => {
      this.#sent.push({ resolve, reject });
      this.#worker!.postMessage({ t: "end", inline }, [inline.buffer]);
    });
  }

  #flush(): void {
    const n = this.#fds.length;
    if (n === 0) return;
    const pending = this.#batch!;
    this.#batch = null;
    const versions = new Float64Array(5 * n);
    this.#versions.forEach((v, i) => packVersion(versions, i, v));
    const last = this.#inlineEnds[n - 1];
    const batch: FileBatch = {
      t: "files",
      firstSeq: this.#batchFirstSeq,
      fds: Int32Array.from(this.#fds),
      versions,
      // Inline bytes fed after the last file of the batch stay for the next one.
      inline: this.#inline.take(last).slice(), // transferred: its own buffer
      inlineEnds: Uint32Array.from(this.#inlineEnds),
      ostreeChecksums: this.#ostreeChecksums,
    };
    this.#fds = [];
    this.#versions = [];
    this.#inlineEnds = [];
    this.#ostreeChecksums = [];
    if (this.#failed) return pending.fail(this.#failed);
    this.#sent.push(pending);
    const transfer = [batch.fds, batch.versions, batch.inline, batch.inlineEnds];
    this.#worker!.postMessage(batch, transfer.map((a) => a.buffer as ArrayBuffer));
  }

  #receive(r: LayerDigestReply): void {
    if (r.t === "error") return this.#fail(new Error(`layer digest worker: ${r.message}`));
    const waiter = this.#sent.shift();
    if (r.t === "end") {
      if (waiter && !(waiter instanceof DigestBatch)) waiter.resolve(r.digest);
      return;
    }
    if (!(waiter instanceof DigestBatch)) {
      for (const fd of r.copyFds) if (fd >= 0) closeQuietly(fd); // the batch failed already
      return;
    }
    const failed = new Map(r.failures.map((f) => [f.index, f]));
    // From the reply itself: a batch's algorithm is the one of the layer it was sent in.
    const hashSize = r.verity ? r.verity.length / r.sizes.length : 0;
    const copyTo = this.#copyTo;
    // Each file's digests are made from the reply when it is awaited, not all at once here.
    waiter.settle((i, what) => {
      const f = failed.get(i);
      if (f) throw failureError(what, f);
      const verity = r.verity ? r.verity.slice(i * hashSize, (i + 1) * hashSize) : null;
      const outcome = SHARE_CODES[r.shares[i]];
      const share = outcome ? { outcome, bytes: r.sharedBytes[i] } : null;
      const method = COPY_CODES[r.copyMethods[i]];
      const copy = method && copyTo && r.copyFds[i] >= 0
        ? { fd: r.copyFds[i], method, size: r.sizes[i], dirfd: copyTo.dirfd }
        : null;
      const linkOutcome = LINK_CODES[r.links[i]];
      const linked = method && linkOutcome ? { method, outcome: linkOutcome } : null;
      return { size: r.sizes[i], verity, share, copy, linked };
    });
  }

  #fail(e: Error): void {
    this.#failed ??= e;
    for (const w of this.#sent.splice(0)) {
      if (w instanceof DigestBatch) w.fail(e);
      else w.reject(e);
    }
    this.#batch?.fail(e);
    this.#batch = null;
    this.#fds = [];
    this.#versions = [];
    this.#inlineEnds = [];
    this.#ostreeChecksums = [];
  }

  [Symbol.dispose](): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#fail(new Error("layer digests closed"));
  }
}
