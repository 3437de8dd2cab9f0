/**
 * Writing a whole tree as an ostree commit from a stream of entries, the way `ostree commit`
 * would have stored the same files: content objects placed by reflink (or copy) from whatever
 * fd the producer hands over, then dirmeta and dirtree objects bottom-up, then the commit and
 * its ref, all in one transaction.
 *
 * The entry stream ({@linkcode TreeEntry}) is the interface the pipeline feeds from composefs
 * or containers-storage: one entry per path, in any order (a directory may come after its
 * children; a later entry for the same path replaces the earlier one, as in a tar stream), with
 * hardlinks naming an earlier path.
 *
 * What ostree cannot store is never silently lost (specs/ostree-repo.md, "Limits"):
 * - a name that is not valid UTF-8 is refused with an {@linkcode UnsupportedEntryError} naming
 *   the path, as `ostree commit` refuses it ("Invalid UTF-8 in filename");
 * - fifos, sockets and device nodes are refused the same way by default, matching
 *   `ostree commit --tree=dir=` ("Not a regular file or symlink: NAME"); with
 *   `onUnsupported: "skip"` they are left out and listed in the result's `skipped`.
 *
 * Bootable-image transforms (ostree-ext `tar/write.rs` `normalize_validate_path` and
 * `store.rs` `cleanup_root`), see {@linkcode TreeTransform}.
 *
 * @module
 */

import { closeQuietly, S } from "../../../ffi/fs.ts";
import type { CopyPolicy } from "../../reflink/place.ts";
import type { Xattr } from "./checksum.ts";
import { OstreeError, TreeEntryError, UnsupportedEntryError } from "./errors.ts";
import type { VariantDictEntry } from "./gvariant.ts";
import type { DirTreeDir, DirTreeFile } from "./objects.ts";
import type { OstreeRepo } from "./repo.ts";
import type { RepoTransaction, TransactionStats, WriteFileResult } from "./transaction.ts";
import { displayEntryPath, type TreeEntry } from "./tree_entry.ts";

export { displayEntryPath } from "./tree_entry.ts";
export type { TreeEntry, TreeEntryType } from "./tree_entry.ts";

/**
 * Path rewrites for bootable images, as ostree-ext applies them when it imports a layer
 * (`normalize_validate_path`) and merges an image (`cleanup_root`).
 */
export interface TreeTransform {
  /** `/etc/...` → `/usr/etc/...` (ostree keeps the image's /etc there; deploy merges it). */
  remapEtc: boolean;
  /** Keep `/var` as is; when false it moves to `/usr/share/factory/var` (ostree < 2024.3). */
  retainVar: boolean;
  /** Keep top-level paths outside `/usr` (`/bin` link, `/opt`, ...); ostree-ext keeps them only when the root is transient. */
  allowNonUsr: boolean;
  /** Keep the top-level `/run`, `/tmp`, `/proc`, `/sys`, `/dev` directories but none of their contents. */
  emptyApiDirs: boolean;
  /** Drop empty regular files `/usr/etc/hostname` and `/usr/etc/resolv.conf` that container builds inject. */
  dropRuntimeInjected: boolean;
}

/**
 * ostree-ext's defaults for a derived layer (`WriteTarOptions::default()`): bootc passes
 * `allowNonUsr` = "root is transient" and `retainVar` = "ostree ≥ 2024.3" per host.
 */
export const OSTREE_EXT_LAYER_TRANSFORM: Readonly<TreeTransform> = {
  remapEtc: true,
  retainVar: false,
  allowNonUsr: false,
  emptyApiDirs: true,
  dropRuntimeInjected: false,
};

/**
 * For a whole merged image (e.g. synthesized from composefs) that must deploy as is: `/etc`
 * moved to `/usr/etc`, API directories emptied, runtime-injected files dropped, everything else
 * (top-level links such as `/bin`, `/var`) kept.
 */
export const BOOTABLE_IMAGE_TRANSFORM: Readonly<TreeTransform> = {
  remapEtc: true,
  retainVar: true,
  allowNonUsr: true,
  emptyApiDirs: true,
  dropRuntimeInjected: true,
};

// ostree-ext EXCLUDED_TOPLEVEL_PATHS: kernel API filesystems, never image content.
const API_DIRS = new Set(["run", "tmp", "proc", "sys", "dev"]);
const RUNTIME_INJECTED = [["usr", "etc", "hostname"], ["usr", "etc", "resolv.conf"]];

/** Options of {@linkcode writeTree}. */
export interface WriteTreeOptions {
  /** Whether file data may be copied when it cannot be shared by reflink. */
  policy: CopyPolicy;
  /** Path rewrites; none when omitted. */
  transform?: Readonly<TreeTransform>;
  /** fifos, sockets, devices: `refuse` (default, as `ostree commit`) or `skip` (listed). */
  onUnsupported?: "refuse" | "skip";
  /** Owner and mode of directories the stream implies but never lists (default 0:0 0755). */
  implicitDirMeta?: { uid: number; gid: number; mode: number };
}

/** The root of a written tree and what happened on the way. */
export interface WriteTreeResult {
  rootTree: string;
  rootMeta: string;
  /** Entries left out because ostree cannot store them (`onUnsupported: "skip"`). */
  skipped: { path: string; reason: string }[];
  /** Paths dropped by the transform, counted per top-level name (as ostree-ext reports). */
  filtered: Map<string, number>;
  /** Regular files and symlinks in the tree (hardlinks counted once per path). */
  files: number;
  directories: number;
}

interface DirNode {
  kind: "dir";
  meta: { uid: number; gid: number; mode: number; xattrs: readonly Xattr[] } | null;
  children: Map<string, Node>;
}

interface FileNode {
  kind: "file";
  checksum: string;
  symlink: boolean;
  size: number | undefined;
}

type Node = DirNode | FileNode;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Splits and validates an entry path into UTF-8 components (no `.`/`..`/empty). */
function pathComponents(path: string | Uint8Array): string[] {
  const shown = displayEntryPath(path);
  let text: string;
  if (typeof path === "string") {
    if (!path.isWellFormed()) {
      throw new UnsupportedEntryError(shown, "Invalid UTF-8 in filename: ostree cannot store it");
    }
    text = path;
  } else {
    try {
      text = utf8.decode(path);
    } catch {
      throw new UnsupportedEntryError(shown, "Invalid UTF-8 in filename: ostree cannot store it");
    }
  }
  if (text.includes("\0")) throw new UnsupportedEntryError(shown, "NUL in path");
  const out: string[] = [];
  for (const part of text.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new TreeEntryError(shown, `".." in an image path is not allowed`);
    out.push(part);
  }
  return out;
}

type Mapped = { kind: "keep"; parts: string[] } | { kind: "filtered"; top: string };

/** Applies a transform to path components (ostree-ext `normalize_validate_path`). */
function transformPath(parts: string[], t: Readonly<TreeTransform> | undefined): Mapped {
  if (!t || parts.length === 0) return { kind: "keep", parts };
  const [first, ...rest] = parts;
  if (first === "usr") return { kind: "keep", parts };
  if (first === "etc" && t.remapEtc) return { kind: "keep", parts: ["usr", "etc", ...rest] };
  if (first === "var") {
    return {
      kind: "keep",
      parts: t.retainVar ? parts : ["usr", "share", "factory", "var", ...rest],
    };
  }
  if (API_DIRS.has(first) && t.emptyApiDirs) {
    return rest.length === 0 ? { kind: "keep", parts } : { kind: "filtered", top: rest[0] };
  }
  if (t.allowNonUsr || first === "etc") return { kind: "keep", parts };
  return { kind: "filtered", top: first };
}

/**
 * Where the commit writer puts `path` (split into components) under transform `t` (`/etc` →
 * `/usr/etc`, ...), or null when it filters the path out.
 */
export function transformedParts(
  parts: string[],
  t: Readonly<TreeTransform> | undefined,
): string[] | null {
  const m = transformPath(parts, t);
  return m.kind === "keep" ? m.parts : null;
}

/** Whether the commit writer keeps `path` under `t`: lets a caller choose hardlink anchors. */
export function transformKeepsParts(
  parts: string[],
  t: Readonly<TreeTransform> | undefined,
): boolean {
  return transformedParts(parts, t) !== null;
}

function checkId(value: number, field: string, shown: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new TreeEntryError(shown, `${field} must be an integer in [0, 2^32), found ${value}`);
  }
}

/**
 * Writes the tree described by `entries` into an open transaction and returns the root
 * dirtree/dirmeta checksums (no commit, no ref: see {@linkcode writeCommit}).
 *
 * @throws {UnsupportedEntryError} a non-UTF-8 name or (by default) a special file, naming it.
 * @throws {TreeEntryError} an inconsistent stream (hardlink to a missing path, a path below a
 *   file, a file without content source).
 */
export async function writeTree(
  txn: RepoTransaction,
  entries: Iterable<TreeEntry> | AsyncIterable<TreeEntry>,
  opts: WriteTreeOptions,
): Promise<WriteTreeResult> {
  const root: DirNode = { kind: "dir", meta: null, children: new Map() };
  const skipped: { path: string; reason: string }[] = [];
  const filtered = new Map<string, number>();
  const implicit = opts.implicitDirMeta ?? { uid: 0, gid: 0, mode: 0o755 };

  const lookup = (parts: string[]): Node | undefined => {
    let node: Node = root;
    for (const p of parts) {
      if (node.kind !== "dir") return undefined;
      const next: Node | undefined = node.children.get(p);
      if (!next) return undefined;
      node = next;
    }
    return node;
  };

  const parentDir = (parts: string[], shown: string): DirNode => {
    let dir = root;
    for (const p of parts.slice(0, -1)) {
      let next = dir.children.get(p);
      if (!next) {
        next = { kind: "dir", meta: null, children: new Map() };
        dir.children.set(p, next);
      } else if (next.kind !== "dir") {
        throw new TreeEntryError(shown, `parent component "${p}" is not a directory`);
      }
      dir = next;
    }
    return dir;
  };

  for await (const e of entries) {
    const shown = displayEntryPath(e.path);
    const parts = pathComponents(e.path);
    checkId(e.uid, "uid", shown);
    checkId(e.gid, "gid", shown);
    const mapped = transformPath(parts, opts.transform);
    if (mapped.kind === "filtered") {
      filtered.set(mapped.top, (filtered.get(mapped.top) ?? 0) + 1);
      continue;
    }
    const target = mapped.parts;
    const name = target[target.length - 1];

    switch (e.type) {
      case "dir": {
        const meta = {
          uid: e.uid,
          gid: e.gid,
          mode: S.IFDIR | (e.mode & 0o7777),
          xattrs: e.xattrs ?? [],
        };
        if (target.length === 0) {
          root.meta = meta;
          break;
        }
        const parent = parentDir(target, shown);
        const existing = parent.children.get(name);
        if (existing?.kind === "dir") existing.meta = meta;
        else parent.children.set(name, { kind: "dir", meta, children: new Map() });
        break;
      }
      case "file": {
        if (target.length === 0) throw new TreeEntryError(shown, "the root must be a directory");
        const r = await writeFileEntry(txn, e, shown, opts.policy);
        parentDir(target, shown).children.set(name, {
          kind: "file",
          checksum: r.checksum,
          symlink: false,
          size: r.size ?? e.size,
        });
        break;
      }
      case "symlink": {
        if (target.length === 0) throw new TreeEntryError(shown, "the root must be a directory");
        const linkTarget = symlinkTargetText(e, shown);
        const r = txn.writeSymlink({
          uid: e.uid,
          gid: e.gid,
          mode: S.IFLNK | 0o777,
          xattrs: e.xattrs,
          symlinkTarget: linkTarget,
        });
        parentDir(target, shown).children.set(name, {
          kind: "file",
          checksum: r.checksum,
          symlink: true,
          size: 0,
        });
        break;
      }
      case "hardlink": {
        if (target.length === 0) throw new TreeEntryError(shown, "the root must be a directory");
        if (e.hardlinkTarget === undefined) {
          throw new TreeEntryError(shown, "hardlink without a target");
        }
        const tShown = displayEntryPath(e.hardlinkTarget);
        const tMapped = transformPath(pathComponents(e.hardlinkTarget), opts.transform);
        if (tMapped.kind === "filtered") {
          throw new TreeEntryError(
            shown,
            `hardlink target ${tShown} was dropped by the path transform`,
          );
        }
        const node = lookup(tMapped.parts);
        if (!node) {
          throw new TreeEntryError(shown, `hardlink target ${tShown} is not an earlier entry`);
        }
        if (node.kind !== "file") {
          throw new TreeEntryError(shown, `hardlink target ${tShown} is a directory`);
        }
        parentDir(target, shown).children.set(name, { ...node });
        break;
      }
      default: {
        const reason = `Not a regular file or symlink (${e.type}): ostree stores only files, ` +
          `symlinks and directories`;
        if ((opts.onUnsupported ?? "refuse") === "refuse") {
          throw new UnsupportedEntryError(shown, reason);
        }
        skipped.push({ path: shown, reason });
      }
    }
  }

  if (opts.transform?.dropRuntimeInjected) {
    for (const parts of RUNTIME_INJECTED) {
      const node = lookup(parts);
      if (node?.kind === "file" && !node.symlink && node.size === 0) {
        (lookup(parts.slice(0, -1)) as DirNode).children.delete(parts[parts.length - 1]);
      }
    }
  }

  let files = 0, directories = 0;
  const defaultMeta = {
    uid: implicit.uid,
    gid: implicit.gid,
    mode: S.IFDIR | (implicit.mode & 0o7777),
    xattrs: [],
  };
  const writeDir = (dir: DirNode, path: string): { tree: string; meta: string } => {
    directories++;
    const fileList: DirTreeFile[] = [];
    const dirList: DirTreeDir[] = [];
    for (const [name, child] of dir.children) {
      const childPath = path === "/" ? `/${name}` : `${path}/${name}`;
      if (child.kind === "dir") dirList.push({ name, ...writeDir(child, childPath) });
      else {
        files++;
        fileList.push({ name, checksum: child.checksum });
      }
    }
    const meta = txn.writeDirMeta(dir.meta ?? defaultMeta);
    const tree = txn.writeDirTree({ files: fileList, dirs: dirList }, path);
    return { tree, meta };
  };
  const { tree, meta } = writeDir(root, "/");
  return { rootTree: tree, rootMeta: meta, skipped, filtered, files, directories };
}

function symlinkTargetText(e: TreeEntry, shown: string): string {
  const t = e.symlinkTarget;
  if (t === undefined || t.length === 0) {
    throw new TreeEntryError(shown, "symlink without a target");
  }
  if (typeof t === "string") {
    if (!t.isWellFormed()) {
      throw new UnsupportedEntryError(shown, "symlink target is not valid UTF-8");
    }
    return t;
  }
  try {
    return utf8.decode(t);
  } catch {
    throw new UnsupportedEntryError(
      shown,
      "symlink target is not valid UTF-8: ostree cannot store it",
    );
  }
}

async function writeFileEntry(
  txn: RepoTransaction,
  e: TreeEntry,
  shown: string,
  policy: CopyPolicy,
): Promise<WriteFileResult> {
  const meta = { uid: e.uid, gid: e.gid, mode: S.IFREG | (e.mode & 0o7777), xattrs: e.xattrs };
  let r: WriteFileResult;
  try {
    if (e.content !== undefined) {
      r = txn.writeFileFromBytes(meta, e.content);
    } else if (e.openContent) {
      const fd = await e.openContent();
      try {
        r = txn.writeFileFromFd(fd, meta, { policy, knownChecksum: e.contentChecksum });
      } finally {
        closeQuietly(fd);
      }
    } else if (!e.size) {
      r = txn.writeFileFromBytes(meta, new Uint8Array());
    } else {
      throw new TreeEntryError(shown, `file of ${e.size} bytes has no content source`);
    }
  } catch (err) {
    if (
      err instanceof OstreeError && !(err instanceof TreeEntryError) &&
      !(err instanceof UnsupportedEntryError)
    ) {
      throw new TreeEntryError(shown, err.message);
    }
    if (err instanceof Error && !(err instanceof OstreeError)) {
      // Keep the error's class (callers catch ReflinkUnsupportedError, SysError) and say which
      // entry it was about.
      err.message = `${shown}: ${err.message}`;
    }
    throw err;
  }
  if (e.size !== undefined && r.size !== undefined && r.size !== e.size) {
    throw new TreeEntryError(shown, `expected ${e.size} bytes of content, found ${r.size}`);
  }
  return r;
}

/** Options of {@linkcode writeCommit}. */
export interface WriteCommitOptions extends WriteTreeOptions {
  /** Local ref to point at the commit (written last). */
  ref?: string;
  subject?: string;
  body?: string;
  /** Seconds since the epoch; default now. */
  timestamp?: number;
  parent?: string | null;
  /** Commit metadata in the order it is stored. */
  metadata?: VariantDictEntry[];
  /** Lock wait (default: the repository's `lock-timeout-secs`). */
  lockTimeoutMs?: number;
}

/** A written commit. */
export interface WriteCommitResult extends WriteTreeResult {
  commit: string;
  ref?: string;
  stats: TransactionStats;
}

/**
 * Writes `entries` as one commit (and its ref) in a single transaction: all objects, one
 * `syncfs`, then the ref. On any error nothing becomes visible.
 *
 * @example
 * ```ts ignore
 * const r = await writeCommit(repo, entries, {
 *   policy: "reflink-or-copy", ref: "exampleos/stable", subject: "build 42", timestamp: 1700000000,
 * });
 * console.log(r.commit, r.stats.bytesByMethod);
 * ```
 */
export async function writeCommit(
  repo: OstreeRepo,
  entries: Iterable<TreeEntry> | AsyncIterable<TreeEntry>,
  opts: WriteCommitOptions,
): Promise<WriteCommitResult> {
  const txn = await repo.beginTransaction({ lockTimeoutMs: opts.lockTimeoutMs });
  try {
    const tree = await writeTree(txn, entries, opts);
    if (opts.parent) repo.resolveRev(opts.parent);
    const commit = txn.writeCommit({
      metadata: opts.metadata ?? [],
      parent: opts.parent ?? null,
      subject: opts.subject ?? "",
      body: opts.body ?? "",
      timestamp: opts.timestamp ?? Math.floor(Date.now() / 1000),
      rootTree: tree.rootTree,
      rootMeta: tree.rootMeta,
    });
    if (opts.ref) txn.setRef(opts.ref, commit);
    const stats = txn.commit();
    return { ...tree, commit, ref: opts.ref, stats };
  } catch (e) {
    txn.abort();
    throw e;
  }
}
