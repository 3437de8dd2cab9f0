/**
 * An image seen as one filesystem tree: its layers applied in order, as a container runtime
 * would extract them, kept in memory as metadata only (one node per path; file contents stay in
 * the composefs objects, small payloads of at most 64 bytes inline). The result is the
 * {@linkcode TreeEntry} stream a store writer takes (lib/stores/ostree `writeTree`).
 *
 * Layer semantics (OCI image spec, image-layout "Applying Changesets" and "Whiteouts"):
 * - a later entry for a path replaces the earlier one; a directory over a directory keeps the
 *   children and takes the new metadata; anything else over a directory replaces the subtree;
 * - `DIR/.wh.NAME` removes `DIR/NAME` as the lower layers had it; `DIR/.wh..wh..opq` removes
 *   everything the lower layers had below `DIR`. Whiteouts apply only to lower layers: what the
 *   same layer adds (before or after the whiteout) stays. Whiteout files never appear in the
 *   result, nor do other `.wh..wh.*` names (aufs bookkeeping);
 * - a hardlink names a path that exists when it is applied (in this layer or a lower one) and
 *   shares that path's inode from then on: a later layer replacing or deleting the target does
 *   not change the link. So every hardlink is resolved here to its inode;
 * - parent directories a layer does not list are created (0755 root, written as implicit); a
 *   parent that is a symlink or another non-directory is refused, as composefs-rs and
 *   containers-storage refuse it.
 *
 * composefs-rs (`composefs-oci/src/image.rs process_entry`) clears an opaque directory at the
 * marker, which also drops entries of the same layer listed before it; this follows the OCI spec
 * instead. Layers written by real tools list the marker first, where both agree.
 *
 * Names are kept as their raw bytes (a non-UTF-8 name is a valid Linux name); entry paths are
 * strings when they are UTF-8 and `Uint8Array` otherwise, as `TreeEntry` allows.
 *
 * @module
 */

import { binaryFromBytes, bytesFromBinary } from "../oci/binary_string.ts";
import type { TarEntry, TarTime } from "../oci/tar.ts";
import type { ObjectId } from "../stores/composefs/object_id.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import { readStoredImage, type StoredImage } from "../stores/composefs/oci_image.ts";
import type { Xattr } from "../stores/ostree/checksum.ts";
import type { TreeEntry } from "../stores/ostree/tree_entry.ts";
import { MergedTreeError } from "./errors.ts";
import { type FileContent, layerEntries, type LayerEntry } from "./layer_entries.ts";

/** Prefix of whiteout names (OCI image spec "Whiteouts"; aufs heritage). */
export const WHITEOUT_PREFIX = ".wh.";
/** Name of the opaque-directory marker. */
export const OPAQUE_WHITEOUT = ".wh..wh..opq";
/** Prefix of aufs metadata names (`.wh..wh.plnk`, …): never image content. */
const AUFS_META_PREFIX = ".wh..wh.";

/** Owner, mode, xattrs and mtime of a path as the layer gave them. */
export interface EntryMeta {
  uid: number;
  gid: number;
  /** Permission bits, setuid/setgid/sticky included (type bits dropped). */
  mode: number;
  xattrs: Xattr[];
  mtime: TarTime;
}

/** What a non-directory path is. */
export type LeafType = "file" | "symlink" | "char" | "block" | "fifo";

/** One inode: what every hardlink to it shares. */
interface Inode {
  /** Distinct per inode: hardlinks are the paths that share it. */
  id: number;
  type: LeafType;
  meta: EntryMeta;
  /** Regular files. */
  content?: FileContent;
  /** Symlinks: the target bytes. */
  target?: Uint8Array;
  devMajor?: number;
  devMinor?: number;
}

interface DirNode {
  kind: "dir";
  /** null: created implicitly as a parent, never listed by a layer. */
  meta: EntryMeta | null;
  /** The last layer that added or changed this directory or anything below it. */
  touched: number;
  /** Children by raw name (one char per byte). */
  children: Map<string, Node>;
}

interface LeafNode {
  kind: "leaf";
  /** The layer that put this path here. */
  layer: number;
  inode: Inode;
}

type Node = DirNode | LeafNode;

/** A {@linkcode TreeEntry} with what the layers said beyond what every store needs. */
export interface MergedEntry extends TreeEntry {
  /** Modification time from the layer (ostree ignores it; containers-storage keeps it). */
  mtime?: TarTime;
  /** `file`: the composefs object holding the content (absent for inline content). */
  objectId?: ObjectId;
  /** `char`/`block`: the device numbers. */
  devMajor?: number;
  devMinor?: number;
  /** `dir`: true when no layer listed the directory (the writer's implicit metadata applies). */
  implicit?: boolean;
}

/** Counters of a merge. */
export interface MergeStats {
  layers: number;
  /** Layer entries read (global pax headers included). */
  entries: number;
  /** `.wh.NAME` entries that removed something. */
  whiteouts: number;
  /** `.wh..wh..opq` markers applied. */
  opaqueDirs: number;
  /** Hardlink entries resolved to an inode. */
  hardlinks: number;
}

/** Options of {@linkcode MergedTree.entries}. */
export interface MergedEntriesOptions {
  /**
   * Paths to leave out (with everything below a directory left out). Checked before anchors are
   * chosen, so a hardlink never names a path that was left out.
   */
  include?: (path: string | Uint8Array) => boolean;
  /**
   * Whether a path may be the one the other paths of its inode name as `hardlinkTarget`: the
   * consumer must keep it (lib/stores/ostree refuses a hardlink whose target its path transform
   * dropped). A path refused here is written in full; the first accepted path becomes the anchor.
   * Default: every path.
   */
  canAnchor?: (path: string | Uint8Array) => boolean;
  /**
   * Also emit files that are not hardlinks but have the same object, owner, mode and xattrs as
   * an earlier one as `hardlink` entries. Right for ostree, where such files are one object
   * anyway (it records no hardlinks): the object is then cloned and hashed once. Wrong for a
   * store that materializes hardlinks, so off by default.
   */
  shareIdenticalFiles?: boolean;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** For messages only: a non-UTF-8 name shown with replacement characters. */
const lossy = new TextDecoder();

/** A raw-byte path (one char per byte) as an entry path: UTF-8 text, or the bytes. */
function entryPath(raw: string): string | Uint8Array {
  const bytes = bytesFromBinary(raw);
  try {
    return utf8.decode(bytes);
  } catch {
    return bytes;
  }
}

/**
 * Splits a tar path into raw-byte components: leading `/` and `./`, empty and `.` components
 * dropped, `..` refused (an image path never leaves the image).
 */
function components(path: Uint8Array, where: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== 0x2f) continue;
    const len = i - start;
    const isDot = len === 1 && path[start] === 0x2e;
    const isDotDot = len === 2 && path[start] === 0x2e && path[start + 1] === 0x2e;
    if (isDotDot) {
      throw new MergedTreeError(where, `".." in an image path is not allowed`);
    }
    if (len > 0 && !isDot) out.push(binaryFromBytes(path.subarray(start, i)));
    start = i + 1;
  }
  return out;
}

function leafType(e: TarEntry): LeafType | "dir" | "hardlink" | "skip" | null {
  switch (e.type) {
    case "file":
    case "contiguous":
      return "file";
    case "directory":
      return "dir";
    case "symlink":
      return "symlink";
    case "hardlink":
      return "hardlink";
    case "char":
    case "block":
    case "fifo":
      return e.type;
    case "pax-global":
      return "skip";
    default:
      return null;
  }
}

function metaOf(e: TarEntry): EntryMeta {
  return {
    uid: e.uid,
    gid: e.gid,
    mode: e.mode & 0o7777,
    xattrs: [...e.xattrs.entries()],
    mtime: e.mtime,
  };
}

/**
 * An image's merged filesystem tree.
 *
 * @example
 * ```ts ignore
 * using repo = await ComposefsRepo.open("/sysroot/composefs");
 * const tree = await MergedTree.fromComposefs(repo, "quay.io/example/os:42");
 * for (const e of tree.entries()) console.log(e.type, e.path);
 * ```
 */
export class MergedTree {
  readonly #root: DirNode = { kind: "dir", meta: null, touched: -1, children: new Map() };
  readonly #openObject: (id: ObjectId) => number;
  #nextInode = 0;
  #layer = -1;
  #layerName = "layer";
  readonly stats: MergeStats = { layers: 0, entries: 0, whiteouts: 0, opaqueDirs: 0, hardlinks: 0 };

  /**
   * An empty tree. `openObject` opens a content object for reading (the entries' `openContent`
   * call it); composefs's `repo.openObject` in practice.
   */
  constructor(openObject: (id: ObjectId) => number) {
    this.#openObject = openObject;
  }

  /**
   * The merged tree of an image stored in composefs (by tag or manifest digest, or an image
   * already read with `readStoredImage`): each layer's splitstream is read in `rootfs.diff_ids`
   * order; no object is read.
   */
  static async fromComposefs(
    repo: ComposefsRepo,
    image: string | StoredImage,
  ): Promise<MergedTree> {
    const stored = typeof image === "string" ? await readStoredImage(repo, image) : image;
    const tree = new MergedTree((id) => repo.openObject(id));
    for (const diffId of stored.diffIds) {
      const where = `${repo.path}/streams/oci-layer-${diffId}`;
      tree.beginLayer(where);
      for await (const e of layerEntries(repo, stored.layerStreams.get(diffId)!, where)) {
        tree.apply(e);
      }
    }
    return tree;
  }

  /** Starts the next layer; later {@linkcode apply} calls belong to it. `name` is for errors. */
  beginLayer(name = `layer ${this.#layer + 1}`): void {
    this.#layer++;
    this.#layerName = name;
    this.stats.layers++;
  }

  /** Applies one entry of the current layer. */
  apply(entry: LayerEntry): void {
    if (this.#layer < 0) this.beginLayer();
    const e = entry.tar;
    this.stats.entries++;
    const where = `${this.#layerName}: entry ${JSON.stringify(e.pathText)}`;
    const kind = leafType(e);
    if (kind === "skip") return;
    if (kind === null) {
      throw new MergedTreeError(
        where,
        `unsupported tar entry type "${e.type}" (typeflag ${JSON.stringify(e.typeflag)})`,
      );
    }
    const parts = components(e.path, where);
    if (parts.length === 0) {
      if (kind !== "dir") {
        throw new MergedTreeError(where, `the root must be a directory, found a ${kind}`);
      }
      this.#root.meta = metaOf(e);
      this.#root.touched = this.#layer;
      return;
    }
    const name = parts[parts.length - 1];
    if (name.startsWith(WHITEOUT_PREFIX)) {
      this.#whiteout(parts.slice(0, -1), name);
      return;
    }
    const parent = this.#parentFor(parts, where);
    const existing = parent.children.get(name);
    switch (kind) {
      case "dir": {
        if (existing?.kind === "dir") {
          existing.meta = metaOf(e);
          existing.touched = this.#layer;
        } else {
          parent.children.set(name, {
            kind: "dir",
            meta: metaOf(e),
            touched: this.#layer,
            children: new Map(),
          });
        }
        return;
      }
      case "hardlink": {
        const targetParts = components(e.linkPath, where);
        const target = this.#lookup(targetParts);
        if (!target) {
          throw new MergedTreeError(
            where,
            `hardlink target ${
              JSON.stringify(e.linkPathText)
            } does not exist in this or a lower layer`,
          );
        }
        if (target.kind !== "leaf") {
          throw new MergedTreeError(
            where,
            `hardlink target ${JSON.stringify(e.linkPathText)} is a directory`,
          );
        }
        if (target === existing) return; // a link to itself changes nothing
        this.stats.hardlinks++;
        parent.children.set(name, { kind: "leaf", layer: this.#layer, inode: target.inode });
        return;
      }
      default: {
        const inode: Inode = { id: this.#nextInode++, type: kind, meta: metaOf(e) };
        if (kind === "file") {
          inode.content = entry.content ?? { kind: "inline", bytes: new Uint8Array(0) };
          if (!entry.content && e.payloadSize > 0) {
            throw new MergedTreeError(
              where,
              `regular file of ${e.payloadSize} bytes without content`,
            );
          }
        } else if (kind === "symlink") {
          inode.target = e.linkPath.slice();
        } else if (kind === "char" || kind === "block") {
          inode.devMajor = e.devMajor;
          inode.devMinor = e.devMinor;
        }
        parent.children.set(name, { kind: "leaf", layer: this.#layer, inode });
      }
    }
  }

  /**
   * The directory that will hold `parts`' last component, creating missing parents. A parent
   * that is a symlink or another non-directory is refused, as composefs-rs (`split_mut`: "is
   * not a subdirectory") and containers-storage refuse it: replacing it by a directory would
   * give a tree no runtime sees, following it would leave the tree the layer describes.
   */
  #parentFor(parts: string[], where: string): DirNode {
    let dir = this.#root;
    dir.touched = this.#layer;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i];
      let next = dir.children.get(p);
      if (next?.kind === "leaf") {
        const raw = entryPath(parts.slice(0, i + 1).join("/"));
        const at = JSON.stringify(typeof raw === "string" ? raw : lossy.decode(raw));
        throw new MergedTreeError(
          where,
          `expected a directory at ${at} (a parent of the entry), found a ${next.inode.type} ` +
            "left by this or a lower layer; an entry cannot go through it (a layer must list " +
            "the directory first to replace it)",
        );
      }
      if (!next) {
        // Parents a layer does not list exist implicitly (extraction creates them).
        next = { kind: "dir", meta: null, touched: this.#layer, children: new Map() };
        dir.children.set(p, next);
      }
      next.touched = this.#layer;
      dir = next;
    }
    return dir;
  }

  #lookup(parts: string[]): Node | undefined {
    let node: Node = this.#root;
    for (const p of parts) {
      if (node.kind !== "dir") return undefined;
      const next: Node | undefined = node.children.get(p);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  /** Applies `.wh.NAME` or `.wh..wh..opq` found in directory `dirParts`. */
  #whiteout(dirParts: string[], name: string): void {
    const dir = this.#lookup(dirParts);
    if (!dir || dir.kind !== "dir") return; // nothing below to hide
    if (name === OPAQUE_WHITEOUT) {
      for (const [child, node] of [...dir.children]) {
        if (this.#removeLower(node)) dir.children.delete(child);
      }
      this.stats.opaqueDirs++;
      return;
    }
    if (name.startsWith(AUFS_META_PREFIX)) return;
    const victim = name.slice(WHITEOUT_PREFIX.length);
    const node = dir.children.get(victim);
    if (node && this.#removeLower(node)) {
      dir.children.delete(victim);
      this.stats.whiteouts++;
    }
  }

  /**
   * Removes what lower layers put in `node`'s subtree; true when nothing of the current layer is
   * in it (the caller then unlinks the node itself).
   */
  #removeLower(node: Node): boolean {
    if (node.kind === "leaf") return node.layer < this.#layer;
    if (node.touched < this.#layer) return true;
    for (const [child, sub] of [...node.children]) {
      if (this.#removeLower(sub)) node.children.delete(child);
    }
    return false;
  }

  /**
   * The tree as entries: a directory before its children, children in byte order of their
   * names, so the stream is the same on every run. A path that shares an inode with a path
   * already emitted (and, with `shareIdenticalFiles`, a file identical to one) comes as a
   * `hardlink` naming that earlier path.
   */
  *entries(opts: MergedEntriesOptions = {}): Generator<MergedEntry> {
    const include = opts.include ?? (() => true);
    const canAnchor = opts.canAnchor ?? (() => true);
    /** Inode id (or content key) → the path written in full that later paths link to. */
    const anchors = new Map<string, string | Uint8Array>();
    const openObject = this.#openObject;

    const walk = function* (dir: DirNode, raw: string): Generator<MergedEntry> {
      const names = [...dir.children.keys()].sort();
      for (const name of names) {
        const node = dir.children.get(name)!;
        const childRaw = `${raw}/${name}`;
        const path = entryPath(childRaw);
        if (!include(path)) continue;
        if (node.kind === "dir") {
          yield dirEntry(path, node);
          yield* walk(node, childRaw);
          continue;
        }
        const inode = node.inode;
        const key = opts.shareIdenticalFiles && inode.content?.kind === "object"
          ? contentKey(inode)
          : `inode:${inode.id}`;
        const anchor = anchors.get(key);
        const base = {
          path,
          uid: inode.meta.uid,
          gid: inode.meta.gid,
          mode: inode.meta.mode,
          xattrs: inode.meta.xattrs,
          mtime: inode.meta.mtime,
        };
        if (anchor !== undefined) {
          yield { ...base, type: "hardlink", hardlinkTarget: anchor };
          continue;
        }
        if (canAnchor(path)) anchors.set(key, path);
        yield leafEntry(base, inode, openObject);
      }
    };

    if (!include("/")) return;
    yield dirEntry("/", this.#root);
    yield* walk(this.#root, "");
  }

  /** Number of paths in the tree (directories included, the root excluded). */
  get size(): number {
    let n = 0;
    const count = (d: DirNode) => {
      for (const c of d.children.values()) {
        n++;
        if (c.kind === "dir") count(c);
      }
    };
    count(this.#root);
    return n;
  }
}

const IMPLICIT_DIR_META: EntryMeta = {
  uid: 0,
  gid: 0,
  mode: 0o755,
  xattrs: [],
  mtime: { sec: 0, nsec: 0 },
};

function dirEntry(path: string | Uint8Array, node: DirNode): MergedEntry {
  const meta = node.meta ?? IMPLICIT_DIR_META;
  return {
    path,
    type: "dir",
    uid: meta.uid,
    gid: meta.gid,
    mode: meta.mode,
    xattrs: meta.xattrs,
    mtime: meta.mtime,
    implicit: node.meta === null,
  };
}

function leafEntry(
  base: Omit<MergedEntry, "type">,
  inode: Inode,
  openObject: (id: ObjectId) => number,
): MergedEntry {
  switch (inode.type) {
    case "file": {
      const c = inode.content!;
      if (c.kind === "inline") {
        return { ...base, type: "file", size: c.bytes.length, content: c.bytes };
      }
      const id = c.id;
      return {
        ...base,
        type: "file",
        size: c.size,
        objectId: id,
        openContent: () => openObject(id),
      };
    }
    case "symlink": {
      const raw = inode.target!;
      let target: string | Uint8Array;
      try {
        target = utf8.decode(raw);
      } catch {
        target = raw;
      }
      return { ...base, type: "symlink", symlinkTarget: target };
    }
    default:
      return {
        ...base,
        type: inode.type,
        devMajor: inode.devMajor,
        devMinor: inode.devMinor,
      };
  }
}

/** Files with equal keys are one ostree object: same content object, owner, mode and xattrs. */
function contentKey(inode: Inode): string {
  const c = inode.content as { id: ObjectId };
  const xattrs = [...inode.meta.xattrs]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([n, v]) => `${n}=${binaryFromBytes(v)}`)
    .join("\0");
  return `object:${c.id}:${inode.meta.uid}:${inode.meta.gid}:${inode.meta.mode}:${xattrs}`;
}
