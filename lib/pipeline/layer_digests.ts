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
 * When no Worker can be started, the same {@linkcode LayerDigestState} runs on the calling
 * thread: slower, same results.
 *
 * @module
 */

import { pread } from "../../ffi/fs.ts";
import { FsVerityHasher } from "../digest/fsverity.ts";
import { type HashAlgorithm, StreamingHash } from "../digest/hash.ts";
import { SourceChangedError } from "../reflink/errors.ts";
import { assertUnchanged, type SourceVersion } from "../reflink/source_version.ts";
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
   */
  file(fd: number, version: SourceVersion, what: string, ostreeChecksum = ""): FileDigests {
    const verity = this.verity ? new FsVerityHasher(this.verity) : null;
    let size = 0;
    for (;;) {
      const n = pread(fd, this.#buf, size);
      if (n === 0) break;
      const chunk = this.#buf.subarray(0, n);
      this.#stream.update(chunk);
      verity?.update(chunk);
      size += n;
    }
    assertUnchanged(fd, version, what, size);
    const share = ostreeChecksum !== "" && this.ostreeObjectsDirfd !== null
      ? shareWithOstreeObject(fd, size, this.ostreeObjectsDirfd, ostreeChecksum, what)
      : null;
    return { size, verity: verity?.digest() ?? null, share };
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

/** The worker's module; `deno compile` must be told to include it (scripts/compile.ts). */
const WORKER_URL = new URL("./layer_digest_worker.ts", import.meta.url);

/** Files per message: one message per file cost more than the hashing it saved. */
const BATCH_FILES = 32;

interface Pending {
  what: string;
  resolve(r: FileDigests): void;
  reject(e: Error): void;
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
  #batchPending: Pending[] = [];
  /** Per batch sent, its files' settlers; `end` requests queue a single resolver. */
  readonly #sent: (Pending[] | ((d: Uint8Array) => void))[] = [];
  #failed: Error | null = null;
  #batchesSent = 0;
  #started = false;
  #readyResolve!: () => void;
  readonly #ready = new Promise<void>((resolve) => {
    this.#readyResolve = () => {
      this.#started = true;
      resolve();
    };
  });

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
   * Starts a layer: its stream hash, whether files get an fs-verity digest, and the `objects/`
   * of the ostree repository files may share blocks with.
   */
  begin(
    streamAlgorithm: HashAlgorithm,
    verity: HashAlgorithm | null,
    ostreeObjectsDirfd: number | null = null,
  ): void {
    if (this.#fds.length > 0 || this.#inline.length > 0) {
      // A layer was left without end(): its bytes would land in this one.
      throw new Error("LayerDigests.begin(): the previous layer was not ended");
    }
    if (this.#worker) {
      this.#worker.postMessage({ t: "begin", streamAlgorithm, verity, ostreeObjectsDirfd });
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
  ): PromiseLike<FileDigests> {
    if (this.#local) {
      try {
        return Promise.resolve(this.#local.file(fd, version, what, ostreeChecksum));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const inner = new Promise<FileDigests>((resolve, reject) => {
      this.#fds.push(fd);
      this.#versions.push(version);
      this.#inlineEnds.push(this.#inline.length);
      this.#ostreeChecksums.push(ostreeChecksum);
      this.#batchPending.push({ what, resolve, reject });
    });
    inner.catch(() => {}); // the caller sees the rejection when it awaits
    const batch = this.#batchesSent;
    if (this.#fds.length >= BATCH_FILES) this.#flush();
    return {
      then: (ok, fail) => {
        if (batch === this.#batchesSent) this.#flush(); // still unsent: send it now
        return inner.then(ok, fail);
      },
    };
  }

  /** The layer's stream digest, after every file before it. */
  async end(): Promise<Uint8Array> {
    if (this.#local) return this.#local.finish();
    this.#flush();
    if (this.#failed) throw this.#failed;
    const inline = this.#inline.take(this.#inline.length).slice(); // transferred: its own buffer
    return await new Promise<Uint8Array>((resolve) => {
      this.#sent.push(resolve);
      this.#worker!.postMessage({ t: "end", inline }, [inline.buffer]);
    });
  }

  #flush(): void {
    const n = this.#fds.length;
    if (n === 0) return;
    this.#batchesSent++;
    const pending = this.#batchPending;
    const versions = new Float64Array(5 * n);
    this.#versions.forEach((v, i) => packVersion(versions, i, v));
    const last = this.#inlineEnds[n - 1];
    const batch: FileBatch = {
      t: "files",
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
    this.#batchPending = [];
    if (this.#failed) {
      for (const p of pending) p.reject(this.#failed);
      return;
    }
    this.#sent.push(pending);
    const transfer = [batch.fds, batch.versions, batch.inline, batch.inlineEnds];
    this.#worker!.postMessage(batch, transfer.map((a) => a.buffer as ArrayBuffer));
  }

  #receive(r: LayerDigestReply): void {
    if (r.t === "error") return this.#fail(new Error(`layer digest worker: ${r.message}`));
    const waiter = this.#sent.shift();
    if (r.t === "end") {
      if (typeof waiter === "function") waiter(r.digest);
      return;
    }
    if (!Array.isArray(waiter)) return;
    const failed = new Map(r.failures.map((f) => [f.index, f]));
    // From the reply itself: a batch's algorithm is the one of the layer it was sent in.
    const hashSize = r.verity ? r.verity.length / r.sizes.length : 0;
    waiter.forEach((p, i) => {
      const f = failed.get(i);
      if (f) return p.reject(failureError(p.what, f));
      const verity = r.verity ? r.verity.slice(i * hashSize, (i + 1) * hashSize) : null;
      const outcome = SHARE_CODES[r.shares[i]];
      const share = outcome ? { outcome, bytes: r.sharedBytes[i] } : null;
      p.resolve({ size: r.sizes[i], verity, share });
    });
  }

  #fail(e: Error): void {
    this.#failed ??= e;
    for (const w of this.#sent.splice(0)) {
      if (Array.isArray(w)) { for (const p of w) p.reject(e); }
    }
    for (const p of this.#batchPending.splice(0)) p.reject(e);
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
