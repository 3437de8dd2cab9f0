/**
 * Checking a composefs repository: `meta.json`, object names and digests, stream symlinks and
 * the splitstreams behind them, refs and tags, and the OCI images the streams describe.
 *
 * Spec: specs/composefs-repo.md §7.2 (composefs-rs `Repository::fsck`, `cfsctl oci fsck`).
 * Finding kinds use composefs-rs' names where it has one (`object-digest-mismatch`,
 * `broken-symlink`, `missing-object-ref`, …) and add unistore's own for checks it makes beyond
 * them (`stream-read-failed` covers walking every chunk, `layer-diff-id-mismatch` the deep
 * reassembly of layers). Every finding carries the repository-relative path it is about.
 *
 * Modes: the default checks structure (names, symlinks, every splitstream parsed and walked,
 * referenced objects present, OCI manifests/configs against their digests) and, in secure
 * repositories, each object's kernel-measured fs-verity digest. `deep` re-reads every object
 * and recomputes its digest in userspace, and reassembles every layer to compare its sha256
 * with the diff_id. EROFS images under `images/` are checked as symlinks only (not parsed).
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import {
  close,
  DT,
  O,
  openAt,
  openDirAt,
  pread,
  readDir,
  readlinkAt,
  S,
  statAt,
} from "../../../ffi/fs.ts";
import { StreamingHash, toHex } from "../../digest/hash.ts";
import { sha256Digest } from "../../oci/digest.ts";
import { parseImageConfig, parseManifest } from "../../oci/manifest.ts";
import { checkRepoMetadata, parseRepoMetadata, REPO_METADATA_FILENAME } from "./meta.ts";
import { isObjectId, type ObjectId, objectIdFromTarget } from "./object_id.ts";
import { ComposefsRepo, measureOrNull } from "./repository.ts";
import { CONTENT_TYPE, contentTypeName, SplitStream } from "./splitstream.ts";

/** What kind of problem a finding is. */
export type FsckKind =
  | "metadata-parse-failed"
  | "metadata-algorithm-mismatch"
  | "object-invalid-name"
  | "object-open-failed"
  | "object-digest-mismatch"
  | "object-verity-missing"
  | "unexpected-file-type"
  | "entry-not-symlink"
  | "broken-symlink"
  | "stream-open-failed"
  | "stream-read-failed"
  | "stream-content-type"
  | "missing-object-ref"
  | "missing-named-ref"
  | "ref-invalid-target"
  | "image-digest-mismatch"
  | "image-missing-ref"
  | "image-invalid"
  | "layer-diff-id-mismatch";

/** One problem, with the repository-relative path it is about. */
export interface FsckFinding {
  kind: FsckKind;
  /** `objects/ab/cd…`, `streams/oci-layer-sha256:…`, `streams/refs/oci/latest`, `meta.json`. */
  path: string;
  /** The object involved, when there is one (a missing or corrupt object). */
  objectId?: string;
  detail: string;
}

/** The outcome of {@linkcode fsckRepo}. */
export interface FsckReport {
  /** `meta.json` present (absent in legacy repositories, which is not an error). */
  hasMetadata: boolean;
  deep: boolean;
  /** Objects found under `objects/00..ff`. */
  objectsListed: number;
  /** Objects whose digest was checked (kernel measurement or userspace). */
  objectsChecked: number;
  objectsCorrupted: number;
  streamsChecked: number;
  streamsCorrupted: number;
  imagesChecked: number;
  refsChecked: number;
  brokenLinks: number;
  missingObjects: number;
  /** `oci-manifest-*` streams whose manifest and config were checked. */
  ociImagesChecked: number;
  /** Layers reassembled and compared with their diff_id (deep mode). */
  layersVerified: number;
  findings: FsckFinding[];
  /** No findings. */
  ok: boolean;
}

const EXPECTED_TYPES: [string, bigint[]][] = [
  ["oci-layer-", [CONTENT_TYPE.ociLayer, CONTENT_TYPE.ociBlob]],
  ["oci-config-", [CONTENT_TYPE.ociConfig]],
  ["oci-manifest-", [CONTENT_TYPE.ociManifest]],
  ["oci-blob-", [CONTENT_TYPE.ociBlob]],
  ["ostree-commit-", [CONTENT_TYPE.ostreeCommit]],
];

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The module of {@linkcode fsckRepoOnWorker}'s thread; `deno compile` must be told to include it. */
const FSCK_WORKER_URL = new URL("./fsck_worker.ts", import.meta.url);

/** What lib/stores/composefs/fsck_worker.ts is asked: the repository to check deeply. */
export interface FsckWorkerRequest {
  path: string;
}

/** Its reply: the report, or what stopped the check. */
export type FsckWorkerReply =
  | { t: "report"; report: FsckReport }
  | { t: "error"; message: string };

/**
 * {@linkcode fsckRepo} with `deep`, of the repository at `path` opened read-only on a second
 * thread, so that the caller checks other stores meanwhile: re-hashing every object is a third
 * of `fsck images --deep`, and the other stores' checks need the CPU and the disk too. Where no
 * worker can be started, or the check stops there, it runs on this thread instead (and an error
 * is thrown with its own type and message).
 *
 * @example
 * ```ts ignore
 * const pending = fsckRepoOnWorker("/sysroot/composefs");
 * checkOtherStores();
 * const { findings } = await pending;
 * ```
 */
export function fsckRepoOnWorker(
  path: string,
  workerUrl: string | URL = FSCK_WORKER_URL,
): Promise<FsckReport> {
  const here = async () => {
    using repo = await ComposefsRepo.open(path, { readOnly: true });
    return await fsckRepo(repo, { deep: true });
  };
  let worker: Worker;
  try {
    worker = new Worker(workerUrl, { type: "module" });
  } catch {
    return here();
  }
  // Asked at once (the message waits for the module to load), not after a "ready" reply: a
  // caller busy with synchronous work would see that only when done, and the worker would idle.
  worker.postMessage({ path } satisfies FsckWorkerRequest);
  return new Promise<FsckReport>((resolve, reject) => {
    const fallBack = () => {
      worker.terminate();
      here().then(resolve, reject);
    };
    worker.onmessage = (ev: MessageEvent<FsckWorkerReply>) => {
      const r = ev.data;
      if (r.t === "error") return fallBack();
      worker.terminate();
      resolve(r.report);
    };
    worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      fallBack();
    };
  });
}

/**
 * Checks the repository and returns every finding (it does not stop at the first). Never
 * throws for corruption; throws only when the check itself cannot run.
 *
 * @example
 * ```ts ignore
 * const r = await fsckRepo(repo, { deep: true });
 * for (const f of r.findings) console.log(`${f.kind}: ${f.path}: ${f.detail}`);
 * ```
 */
export async function fsckRepo(
  repo: ComposefsRepo,
  opts: { deep?: boolean } = {},
): Promise<FsckReport> {
  const r: FsckReport = {
    hasMetadata: false,
    deep: opts.deep ?? false,
    objectsListed: 0,
    objectsChecked: 0,
    objectsCorrupted: 0,
    streamsChecked: 0,
    streamsCorrupted: 0,
    imagesChecked: 0,
    refsChecked: 0,
    brokenLinks: 0,
    missingObjects: 0,
    ociImagesChecked: 0,
    layersVerified: 0,
    findings: [],
    ok: true,
  };
  checkMetadata(repo, r);
  checkObjects(repo, r);
  const goodStreams = await checkStreams(repo, r);
  checkImages(repo, r);
  checkRefs(repo, r, "streams");
  checkRefs(repo, r, "images");
  await checkOciImages(repo, r, goodStreams);
  r.ok = r.findings.length === 0;
  return r;
}

function add(r: FsckReport, f: FsckFinding): void {
  r.findings.push(f);
}

function checkMetadata(repo: ComposefsRepo, r: FsckReport): void {
  let bytes: Uint8Array;
  try {
    const fd = openAt(repo.dirfd, REPO_METADATA_FILENAME, O.RDONLY | O.NOFOLLOW);
    try {
      const parts: Uint8Array[] = [];
      for (let pos = 0;;) {
        const buf = new Uint8Array(65536);
        const n = pread(fd, buf, pos);
        if (n === 0) break;
        parts.push(buf.subarray(0, n));
        pos += n;
      }
      bytes = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
      let off = 0;
      for (const p of parts) {
        bytes.set(p, off);
        off += p.length;
      }
    } finally {
      close(fd);
    }
  } catch (e) {
    if (isErrno(e, "ENOENT")) {
      if (!repo.legacy) {
        add(r, { kind: "metadata-parse-failed", path: REPO_METADATA_FILENAME, detail: "missing" });
      }
      return;
    }
    add(r, { kind: "metadata-parse-failed", path: REPO_METADATA_FILENAME, detail: message(e) });
    return;
  }
  r.hasMetadata = true;
  try {
    const check = checkRepoMetadata(
      parseRepoMetadata(bytes, REPO_METADATA_FILENAME),
      REPO_METADATA_FILENAME,
    );
    if (check.algorithm !== repo.algorithm) {
      add(r, {
        kind: "metadata-algorithm-mismatch",
        path: REPO_METADATA_FILENAME,
        detail: `meta.json says ${check.algorithm}, repository opened as ${repo.algorithm}`,
      });
    }
  } catch (e) {
    add(r, { kind: "metadata-parse-failed", path: REPO_METADATA_FILENAME, detail: message(e) });
  }
}

function entryType(dirfd: number, ent: { type: number; nameBytes: Uint8Array }): number {
  if (ent.type !== DT.UNKNOWN) return ent.type;
  const m = statAt(dirfd, ent.nameBytes).mode & S.IFMT;
  return m === S.IFDIR ? DT.DIR : m === S.IFLNK ? DT.LNK : m === S.IFREG ? DT.REG : DT.UNKNOWN;
}

function checkObjects(repo: ComposefsRepo, r: FsckReport): void {
  let objects: number;
  try {
    objects = repo.objectsDirfd();
  } catch {
    return; // an empty repository has no objects/ yet
  }
  const hexLen = repo.idLength;
  for (const sub of readDir(objects)) {
    // composefs-rs iterates only objects/00..ff; staging files in objects/ are not objects.
    if (!/^[0-9a-f]{2}$/.test(sub.name) || entryType(objects, sub) !== DT.DIR) continue;
    const subfd = openDirAt(objects, sub.name);
    try {
      for (const ent of readDir(subfd)) {
        r.objectsListed++;
        const path = `objects/${sub.name}/${ent.name}`;
        const id = sub.name + ent.name;
        if (ent.name.length !== hexLen - 2 || !isObjectId(id, repo.algorithm)) {
          r.objectsCorrupted++;
          add(r, {
            kind: "object-invalid-name",
            path,
            detail: `expected ${hexLen - 2} lowercase hex digits for a ${repo.algorithm} object`,
          });
          continue;
        }
        if (entryType(subfd, ent) !== DT.REG) {
          r.objectsCorrupted++;
          add(r, {
            kind: "unexpected-file-type",
            path,
            objectId: id,
            detail: "expected a regular file",
          });
          continue;
        }
        checkObjectDigest(repo, r, subfd, ent.name, id, path);
      }
    } finally {
      close(subfd);
    }
  }
}

function checkObjectDigest(
  repo: ComposefsRepo,
  r: FsckReport,
  subfd: number,
  name: string,
  id: ObjectId,
  path: string,
): void {
  const secure = repo.verity === "secure";
  if (!secure && !r.deep) return;
  let fd: number;
  try {
    fd = openAt(subfd, name, O.RDONLY | O.NOFOLLOW);
  } catch (e) {
    r.objectsCorrupted++;
    add(r, { kind: "object-open-failed", path, objectId: id, detail: message(e) });
    return;
  }
  try {
    r.objectsChecked++;
    if (secure) {
      const measured = measureOrNull(fd, path);
      if (measured === null) {
        r.objectsCorrupted++;
        add(r, {
          kind: "object-verity-missing",
          path,
          objectId: id,
          detail: "secure repository, object has no fs-verity",
        });
        return;
      }
      if (toHex(measured) !== id) {
        r.objectsCorrupted++;
        add(r, {
          kind: "object-digest-mismatch",
          path,
          objectId: id,
          detail: `measured ${toHex(measured)}`,
        });
        return;
      }
    }
    if (r.deep) {
      const computed = repo.computeDigest(fd);
      if (computed !== id) {
        r.objectsCorrupted++;
        add(r, {
          kind: "object-digest-mismatch",
          path,
          objectId: id,
          detail: `content hashes to ${computed}`,
        });
      }
    }
  } catch (e) {
    r.objectsCorrupted++;
    add(r, { kind: "object-open-failed", path, objectId: id, detail: message(e) });
  } finally {
    close(fd);
  }
}

/** Checks `streams/*`; returns the streams that parsed, name → object id. */
async function checkStreams(repo: ComposefsRepo, r: FsckReport): Promise<Map<string, ObjectId>> {
  const good = new Map<string, ObjectId>();
  let dirfd: number;
  try {
    dirfd = openDirAt(repo.dirfd, "streams");
  } catch (e) {
    if (isErrno(e, "ENOENT")) return good;
    throw e;
  }
  try {
    for (const ent of readDir(dirfd)) {
      if (ent.name === "refs") continue;
      r.streamsChecked++;
      const path = `streams/${ent.name}`;
      const id = checkCategoryLink(repo, r, dirfd, ent, path);
      if (id === null) {
        r.streamsCorrupted++;
        continue;
      }
      if (await checkSplitstream(repo, r, ent.name, id, path)) good.set(ent.name, id);
      else r.streamsCorrupted++;
    }
  } finally {
    close(dirfd);
  }
  return good;
}

/**
 * A first-level `streams/` or `images/` entry must be a symlink `../objects/XX/…` to an
 * existing object; returns the object id, or null after recording why not.
 */
function checkCategoryLink(
  repo: ComposefsRepo,
  r: FsckReport,
  dirfd: number,
  ent: { name: string; nameBytes: Uint8Array; type: number },
  path: string,
): ObjectId | null {
  if (entryType(dirfd, ent) !== DT.LNK) {
    add(r, {
      kind: "entry-not-symlink",
      path,
      detail: "every entry here must be a symlink to an object",
    });
    return null;
  }
  const target = readlinkAt(dirfd, ent.nameBytes);
  const id = target.startsWith("../") ? objectIdFromTarget(target, repo.algorithm) : null;
  if (id === null) {
    r.brokenLinks++;
    add(r, {
      kind: "broken-symlink",
      path,
      detail: `target ${
        JSON.stringify(target)
      } does not name a ${repo.algorithm} object (../objects/XX/…)`,
    });
    return null;
  }
  if (!repo.hasObject(id)) {
    r.brokenLinks++;
    r.missingObjects++;
    add(r, {
      kind: "broken-symlink",
      path,
      objectId: id,
      detail: `object ${repo.objectPath(id)} is missing`,
    });
    return null;
  }
  return id;
}

async function checkSplitstream(
  repo: ComposefsRepo,
  r: FsckReport,
  name: string,
  id: ObjectId,
  path: string,
): Promise<boolean> {
  let stream: SplitStream;
  try {
    stream = SplitStream.openObject(repo, id, undefined, path);
  } catch (e) {
    add(r, { kind: "stream-open-failed", path, objectId: id, detail: message(e) });
    return false;
  }
  try {
    let ok = true;
    const expected = EXPECTED_TYPES.find(([prefix]) => name.startsWith(prefix))?.[1];
    if (expected && !expected.includes(stream.index.contentType)) {
      ok = false;
      add(r, {
        kind: "stream-content-type",
        path,
        objectId: id,
        detail: `content type ${contentTypeName(stream.index.contentType)}, expected ${
          expected.map(contentTypeName).join(" or ")
        }`,
      });
    }
    for (const ref of stream.index.objectRefs) {
      if (!repo.hasObject(ref)) {
        ok = false;
        r.missingObjects++;
        add(r, {
          kind: "missing-object-ref",
          path,
          objectId: ref,
          detail: `object ${repo.objectPath(ref)} is missing`,
        });
      }
    }
    for (const [refName, ref] of stream.index.namedRefs) {
      if (!repo.hasObject(ref)) {
        ok = false;
        r.missingObjects++;
        add(r, {
          kind: "missing-named-ref",
          path,
          objectId: ref,
          detail: `named ref ${JSON.stringify(refName)}: object ${repo.objectPath(ref)} is missing`,
        });
      }
    }
    // Walk every chunk: the stream section decompresses and every external index is in range.
    const isLayer = name.startsWith("oci-layer-") &&
      stream.index.contentType === CONTENT_TYPE.ociLayer;
    const diffId = name.slice("oci-layer-".length);
    const hash = r.deep && isLayer
      ? new StreamingHash(diffId.startsWith("sha512:") ? "sha512" : "sha256")
      : null;
    let missing = false;
    try {
      for await (const c of stream.chunks()) {
        if (!hash) continue;
        if (c.kind === "inline") hash.update(c.bytes);
        else if (!repo.hasObject(c.id)) missing = true;
        else hashObject(repo, c.id, hash);
      }
    } catch (e) {
      add(r, { kind: "stream-read-failed", path, objectId: id, detail: message(e) });
      return false;
    }
    if (hash && !missing) {
      r.layersVerified++;
      const found = `${diffId.startsWith("sha512:") ? "sha512" : "sha256"}:${toHex(hash.digest())}`;
      if (found !== diffId) {
        ok = false;
        add(r, {
          kind: "layer-diff-id-mismatch",
          path,
          objectId: id,
          detail: `reassembled layer hashes to ${found}`,
        });
      }
    }
    return ok;
  } finally {
    stream.close();
  }
}

/** {@linkcode hashObject}'s read buffer, reused (one per object was the fsck's main garbage). */
let hashReadBuffer: Uint8Array<ArrayBuffer> | null = null;

function hashObject(repo: ComposefsRepo, id: ObjectId, hash: StreamingHash): void {
  const fd = repo.openObject(id);
  try {
    const buf = hashReadBuffer ??= new Uint8Array(1 << 20);
    for (let pos = 0;;) {
      const n = pread(fd, buf, pos);
      if (n === 0) return;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    close(fd);
  }
}

function checkImages(repo: ComposefsRepo, r: FsckReport): void {
  let dirfd: number;
  try {
    dirfd = openDirAt(repo.dirfd, "images");
  } catch (e) {
    if (isErrno(e, "ENOENT")) return;
    throw e;
  }
  try {
    for (const ent of readDir(dirfd)) {
      if (ent.name === "refs") continue;
      r.imagesChecked++;
      checkCategoryLink(repo, r, dirfd, ent, `images/${ent.name}`);
    }
  } finally {
    close(dirfd);
  }
}

/** Resolves a ref's relative target against its own directory (both repository-relative). */
function resolveRelative(refPath: string, target: string): string | null {
  if (target.startsWith("/")) return null;
  const parts = refPath.split("/").slice(0, -1);
  for (const t of target.split("/")) {
    if (t === "..") {
      if (parts.length === 0) return null;
      parts.pop();
    } else if (t !== "." && t !== "") parts.push(t);
  }
  return parts.join("/");
}

function checkRefs(repo: ComposefsRepo, r: FsckReport, category: "streams" | "images"): void {
  let refsfd: number;
  try {
    refsfd = openAt(repo.dirfd, `${category}/refs`, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return;
    throw e;
  }
  const walk = (dirfd: number, rel: string) => {
    for (const ent of readDir(dirfd)) {
      const path = `${rel}/${ent.name}`;
      const type = entryType(dirfd, ent);
      if (type === DT.DIR) {
        const sub = openDirAt(dirfd, ent.nameBytes);
        try {
          walk(sub, path);
        } finally {
          close(sub);
        }
        continue;
      }
      if (type !== DT.LNK) {
        add(r, {
          kind: "unexpected-file-type",
          path,
          detail: "only directories and symlinks belong under refs/",
        });
        continue;
      }
      r.refsChecked++;
      const target = readlinkAt(dirfd, ent.nameBytes);
      const resolved = resolveRelative(path, target);
      // GC follows a ref by the basename of its target as a first-level entry of the category.
      const base = resolved?.slice(category.length + 1) ?? "";
      if (
        resolved === null || !resolved.startsWith(`${category}/`) || base.includes("/") ||
        base === "refs"
      ) {
        add(r, {
          kind: "ref-invalid-target",
          path,
          detail: `target ${
            JSON.stringify(target)
          } is not a first-level ${category}/ entry (GC would not follow it)`,
        });
        continue;
      }
      try {
        close(openAt(dirfd, ent.nameBytes, O.PATH)); // follows the chain to the object
      } catch (e) {
        if (!isErrno(e, "ENOENT") && !isErrno(e, "ENOTDIR") && !isErrno(e, "ELOOP")) throw e;
        r.brokenLinks++;
        add(r, {
          kind: "broken-symlink",
          path,
          detail: `target ${JSON.stringify(target)} (${resolved}) does not resolve`,
        });
      }
    }
  };
  try {
    walk(refsfd, `${category}/refs`);
  } finally {
    close(refsfd);
  }
}

/** The single external object of a manifest or config stream, or null (finding recorded). */
async function externalData(
  repo: ComposefsRepo,
  r: FsckReport,
  id: ObjectId,
  path: string,
  contentType: bigint,
): Promise<{ data: Uint8Array; namedRefs: Map<string, ObjectId> } | null> {
  try {
    using s = SplitStream.openObject(repo, id, contentType, path);
    const ext: ObjectId[] = [];
    for await (const c of s.chunks()) {
      if (c.kind === "inline") {
        throw new Error("expected exactly one external chunk, found inline data");
      }
      ext.push(c.id);
    }
    if (ext.length !== 1) {
      throw new Error(`expected exactly one external chunk, found ${ext.length}`);
    }
    return { data: repo.readObject(ext[0]), namedRefs: s.index.namedRefs };
  } catch (e) {
    add(r, { kind: "image-invalid", path, objectId: id, detail: message(e) });
    return null;
  }
}

async function checkOciImages(
  repo: ComposefsRepo,
  r: FsckReport,
  good: Map<string, ObjectId>,
): Promise<void> {
  for (const [name, id] of good) {
    if (!name.startsWith("oci-manifest-")) continue;
    r.ociImagesChecked++;
    const path = `streams/${name}`;
    const digest = name.slice("oci-manifest-".length);
    const m = await externalData(repo, r, id, path, CONTENT_TYPE.ociManifest);
    if (!m) continue;
    if (digest.startsWith("sha256:") && sha256Digest(m.data) !== digest) {
      add(r, {
        kind: "image-digest-mismatch",
        path,
        objectId: id,
        detail: `manifest hashes to ${sha256Digest(m.data)}`,
      });
      continue;
    }
    let configDigest: string, layerCount: number;
    try {
      const manifest = parseManifest(m.data, path);
      configDigest = manifest.config.digest;
      layerCount = manifest.layers.length;
    } catch (e) {
      add(r, { kind: "image-invalid", path, objectId: id, detail: message(e) });
      continue;
    }
    const configId = m.namedRefs.get(`config:${configDigest}`);
    if (configId === undefined) {
      add(r, { kind: "image-missing-ref", path, detail: `no named ref config:${configDigest}` });
      continue;
    }
    if (!repo.hasObject(configId)) continue; // reported as missing-named-ref already
    const cpath = `streams/oci-config-${configDigest}`;
    const c = await externalData(repo, r, configId, cpath, CONTENT_TYPE.ociConfig);
    if (!c) continue;
    if (configDigest.startsWith("sha256:") && sha256Digest(c.data) !== configDigest) {
      add(r, {
        kind: "image-digest-mismatch",
        path: cpath,
        objectId: configId,
        detail: `config hashes to ${sha256Digest(c.data)}`,
      });
      continue;
    }
    try {
      const config = parseImageConfig(c.data, cpath, layerCount);
      for (const diffId of config.rootfs.diff_ids) {
        if (!c.namedRefs.has(diffId)) {
          add(r, {
            kind: "image-missing-ref",
            path: cpath,
            detail: `no named ref for layer ${diffId}`,
          });
        } else if (!good.has(`oci-layer-${diffId}`) && !repo.hasObject(c.namedRefs.get(diffId)!)) {
          add(r, {
            kind: "image-missing-ref",
            path: cpath,
            detail: `layer stream oci-layer-${diffId} is missing`,
          });
        }
      }
    } catch (e) {
      add(r, { kind: "image-invalid", path: cpath, objectId: configId, detail: message(e) });
    }
  }
}

/**
 * The report in the shape `cfsctl fsck` prints (`objects: N/M ok`, …, `status: ok`), one
 * finding per line. For commands to print; this module prints nothing.
 */
export function formatFsckReport(r: FsckReport): string {
  const meta = r.findings.some((f) => f.kind.startsWith("metadata-"))
    ? "error"
    : r.hasMetadata
    ? "ok"
    : "absent";
  const lines = [
    `meta.json: ${meta}`,
    `objects: ${
      r.objectsChecked - Math.min(r.objectsCorrupted, r.objectsChecked)
    }/${r.objectsChecked} ok` +
    ` (${r.objectsListed} listed${r.deep ? ", deep" : ""})`,
    `streams: ${r.streamsChecked - r.streamsCorrupted}/${r.streamsChecked} ok`,
    `images: ${r.imagesChecked} checked (symlinks only)`,
    `refs: ${r.refsChecked} checked`,
    `oci images: ${r.ociImagesChecked} checked${
      r.deep ? `, ${r.layersVerified} layers reassembled` : ""
    }`,
  ];
  if (r.brokenLinks > 0) lines.push(`broken symlinks: ${r.brokenLinks}`);
  if (r.missingObjects > 0) lines.push(`missing objects: ${r.missingObjects}`);
  lines.push(r.ok ? "status: ok" : `status: ${r.findings.length} error(s)`);
  for (const f of r.findings) {
    lines.push(`  - ${f.kind}: ${f.path}${f.objectId ? ` (${f.objectId})` : ""}: ${f.detail}`);
  }
  return lines.join("\n");
}
