/**
 * The worker half of {@linkcode LayerDigests} (lib/pipeline/layer_digests.ts): runs a
 * {@linkcode LayerDigestState} on its own thread and answers each `files` and `end` request in
 * order. It reads the files through the fds the main thread passes (one process, one fd table).
 *
 * `deno compile` must be given `--include lib/pipeline/layer_digest_worker.ts` (scripts/compile.ts
 * does): workers are not bundled by default.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { HASH_SIZES, toHex } from "../digest/hash.ts";
import { SourceChangedError } from "../reflink/errors.ts";
import {
  copyCode,
  type CopyTarget,
  farAheadOfPlacing,
  type FileBatch,
  type FileFailure,
  type LayerDigestReply,
  type LayerDigestRequest,
  LayerDigestState,
  linkCopyCode,
  markAnswered,
  shareCode,
  stageCopy,
  takeForWorker,
  unpackVersion,
} from "./layer_digests.ts";

let state: LayerDigestState | null = null;
let claims: Int32Array = new Int32Array(0);
let copyTo: CopyTarget | null = null;
/** The `objects/XX/` directories made or found by this thread's links, per layer. */
let prefixes = new Set<string>();

/**
 * Hashes a batch: the stream hash over every file, the fs-verity digest of each file the main
 * thread has not taken (`claims`), and a staged copy of those far enough ahead of its placing
 * (`copyTo`, copy mode only), linked as its object when `copyTo.link` says so.
 */
function hashBatch(
  s: LayerDigestState,
  claims: Int32Array,
  copyTo: CopyTarget | null,
  b: FileBatch,
): LayerDigestReply {
  const n = b.fds.length;
  const hashSize = s.verity ? HASH_SIZES[s.verity] : 0;
  const sizes = new Float64Array(n);
  const verity = s.verity ? new Uint8Array(n * hashSize) : null;
  const shares = new Uint8Array(n);
  const sharedBytes = new Float64Array(n);
  const copyFds = new Int32Array(n).fill(-1);
  const copyMethods = new Uint8Array(n);
  const links = new Uint8Array(n);
  const failures: FileFailure[] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    s.inline(b.inline.subarray(start, b.inlineEnds[i]));
    start = b.inlineEnds[i];
    try {
      const withVerity = takeForWorker(claims, b.firstSeq + i);
      const version = unpackVersion(b.versions, i);
      const r = s.file(b.fds[i], version, "", b.ostreeChecksums[i], withVerity);
      sizes[i] = r.size;
      shares[i] = shareCode(r.share);
      sharedBytes[i] = r.share?.bytes ?? 0;
      if (verity && r.verity) verity.set(r.verity, i * hashSize);
      if (copyTo && withVerity && farAheadOfPlacing(claims, b.firstSeq + i, copyTo)) {
        const copy = stageCopy(b.fds[i], r.size, version, copyTo, s.heldBytes());
        copyMethods[i] = copyCode(copy);
        if (copy && copyTo.link) {
          links[i] = linkCopyCode(copy, toHex(r.verity!), copyTo, prefixes);
          if (links[i] === 0) copyMethods[i] = 0; // gone: the caller copies it itself
        } else copyFds[i] = copy?.fd ?? -1;
      }
    } catch (e) {
      const changed = e instanceof SourceChangedError
        ? { before: e.before, after: e.after }
        : undefined;
      failures.push({ index: i, message: e instanceof Error ? e.message : String(e), changed });
    }
  }
  return { t: "files", sizes, verity, shares, sharedBytes, copyFds, copyMethods, links, failures };
}

self.onmessage = (ev: MessageEvent<LayerDigestRequest>) => {
  const req = ev.data;
  try {
    if (req.t === "begin") {
      state = new LayerDigestState(req.streamAlgorithm, req.verity, req.ostreeObjectsDirfd);
      claims = req.claims;
      copyTo = req.copyTo;
      prefixes = new Set();
      return;
    }
    if (!state) throw new Error(`"${req.t}" before "begin"`);
    if (req.t === "files") {
      const r = hashBatch(state, claims, copyTo, req);
      markAnswered(claims, req.firstSeq + req.fds.length - 1);
      const arrays = r.t === "files"
        ? [
          r.sizes,
          r.shares,
          r.sharedBytes,
          r.copyFds,
          r.copyMethods,
          r.links,
          ...(r.verity ? [r.verity] : []),
        ]
        : [];
      self.postMessage(r, arrays.map((a) => a.buffer as ArrayBuffer));
    } else {
      state.inline(req.inline);
      self.postMessage({ t: "end", digest: state.finish() } satisfies LayerDigestReply);
    }
  } catch (e) {
    self.postMessage(
      {
        t: "error",
        message: e instanceof Error ? e.message : String(e),
      } satisfies LayerDigestReply,
    );
  }
};

// Tells the main thread this module loaded: until then a load failure means "hash there".
self.postMessage({ t: "ready" });
