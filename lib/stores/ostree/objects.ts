/**
 * ostree metadata objects: dirmeta `(uuua(ayay))`, dirtree `(a(say)a(sayay))` and commit
 * `(a{sv}aya(say)sstayay)`, each named by the sha256 of its normal-form GVariant bytes; and the
 * loose-object path scheme `objects/XX/YYYY….ext`.
 *
 * Spec with byte-level vectors: ../../../../shared/specs/ostree-repo.md §1.2 (paths), §6
 * (metadata objects), §7.2 (`user.ostreemeta`, the dirmeta layout reused for bare-user files).
 *
 * @module
 */

import { O, openAt } from "../../../ffi/fs.ts";
import { fromHex, hashBytes, toHex } from "../../digest/hash.ts";
import { canonicalXattrs, compareBytes, type Xattr } from "./checksum.ts";
import { GVariantError, OstreeError } from "./errors.ts";
import {
  asVariantDict,
  bswap32,
  bswap64,
  deserialize,
  type GValue,
  serialize,
  Variant,
  type VariantDictEntry,
} from "./gvariant.ts";

/** The kinds of loose objects and their file extensions (part of every object's path). */
export const OBJECT_EXTENSIONS = {
  file: "file",
  dirtree: "dirtree",
  dirmeta: "dirmeta",
  commit: "commit",
  commitmeta: "commitmeta",
  "commit-tombstone": "commit-tombstone",
  "payload-link": "payload-link",
} as const;

/** A loose object kind. */
export type ObjectType = keyof typeof OBJECT_EXTENSIONS;

// Object type strings: changing one changes the checksum of every object of that kind.
const DIRMETA_TYPE = "(uuua(ayay))";
const DIRTREE_TYPE = "(a(say)a(sayay))";
const COMMIT_TYPE = "(a{sv}aya(say)sstayay)";

const CHECKSUM_RE = /^[0-9a-f]{64}$/;

/** True when `s` is a 64-character lowercase hex sha256, the only spelling of an object name. */
export function isChecksum(s: string): boolean {
  return CHECKSUM_RE.test(s);
}

/** @throws {OstreeError} unless `s` is a 64-character lowercase hex checksum. */
export function assertChecksum(s: string, what: string): void {
  if (!isChecksum(s)) {
    throw new OstreeError(
      `${what}: expected a 64-character lowercase hex checksum, found ${JSON.stringify(s)}`,
    );
  }
}

/**
 * The path of a loose object below `objects/`.
 *
 * @example
 * ```ts
 * objectPath("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488", "dirmeta");
 * // "44/6a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488.dirmeta"
 * ```
 */
export function objectPath(checksum: string, type: ObjectType): string {
  assertChecksum(checksum, `${type} object name`);
  return `${checksum.slice(0, 2)}/${checksum.slice(2)}.${OBJECT_EXTENSIONS[type]}`;
}

/**
 * Opens regular-file object `checksum` below `objects/` (open as `objectsDirfd`) read-only,
 * never following a symlink object (ELOOP). Errors are the caller's to map.
 */
export function openFileObjectAt(objectsDirfd: number, checksum: string): number {
  return openAt(objectsDirfd, objectPath(checksum, "file"), O.RDONLY | O.NOFOLLOW);
}

/** sha256 of metadata-object bytes, as hex: the object's name. */
export function metadataChecksum(bytes: Uint8Array): string {
  return toHex(hashBytes("sha256", bytes));
}

/**
 * Refuses names ostree refuses in a dirtree: empty, `.`, `..`, containing `/` or NUL, or not
 * valid UTF-8 (a JavaScript string with an unpaired surrogate cannot be UTF-8).
 */
export function validateFileName(name: string, where: string): void {
  let reason: string | undefined;
  if (name === "") reason = "empty file name";
  else if (name === "." || name === "..") reason = `invalid file name "${name}"`;
  else if (name.includes("/")) reason = `invalid "/" in file name ${JSON.stringify(name)}`;
  else if (name.includes("\0")) reason = "NUL in file name";
  else if (!name.isWellFormed()) reason = "Invalid UTF-8 in filename";
  if (reason) throw new OstreeError(`${where}: ${reason}`);
}

// ---------------------------------------------------------------------------------------------
// dirmeta (and bare-user file metadata, which has the same layout)

/** Owner, mode and xattrs of a directory (dirmeta) or, in bare-user repos, of a file. */
export interface DirMeta {
  uid: number;
  gid: number;
  /** `st_mode` including the type bits (`S_IFDIR` for a dirmeta). */
  mode: number;
  xattrs: Xattr[];
}

/**
 * bare-user repositories keep each file's real owner, mode and xattrs in this xattr, as a
 * `(uuua(ayay))`; renaming it would make every bare-user object unreadable to ostree.
 */
export const BAREUSER_META_XATTR = "user.ostreemeta";

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/**
 * Serializes a `(uuua(ayay))` with big-endian uid, gid, mode and sorted, non-empty xattrs.
 * Used for dirmeta objects and for bare-user `user.ostreemeta`.
 */
export function serializeUidGidModeXattrs(
  meta: Omit<DirMeta, "xattrs"> & { xattrs?: readonly Xattr[] },
): Uint8Array {
  return serialize(DIRMETA_TYPE, [
    bswap32(meta.uid),
    bswap32(meta.gid),
    bswap32(meta.mode),
    canonicalXattrs(meta.xattrs),
  ]);
}

/** Parses a `(uuua(ayay))` written by {@linkcode serializeUidGidModeXattrs} (or by ostree). */
export function parseUidGidModeXattrs(bytes: Uint8Array, what: string): DirMeta {
  const v = wrap(what, () => deserialize(DIRMETA_TYPE, bytes)) as GValue[];
  return {
    uid: bswap32(v[0] as number),
    gid: bswap32(v[1] as number),
    mode: bswap32(v[2] as number),
    xattrs: xattrsFromVariant(v[3], what),
  };
}

/**
 * The bytes of a dirmeta object.
 *
 * @example
 * ```ts
 * metadataChecksum(serializeDirMeta({ uid: 0, gid: 0, mode: 0o40755, xattrs: [] }));
 * // "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488"
 * ```
 */
export function serializeDirMeta(
  meta: Omit<DirMeta, "xattrs"> & { xattrs?: readonly Xattr[] },
): Uint8Array {
  if ((meta.mode & S_IFMT) !== S_IFDIR) {
    throw new OstreeError(
      `dirmeta: mode 0${meta.mode.toString(8)} is not a directory mode (S_IFDIR | permissions)`,
    );
  }
  return serializeUidGidModeXattrs(meta);
}

/** Parses dirmeta bytes; `what` names the object in errors. */
export function parseDirMeta(bytes: Uint8Array, what = "dirmeta"): DirMeta {
  const m = parseUidGidModeXattrs(bytes, what);
  if ((m.mode & S_IFMT) !== S_IFDIR) {
    throw new OstreeError(`${what}: mode 0${m.mode.toString(8)} is not a directory`);
  }
  return m;
}

const nameDecoder = new TextDecoder("utf-8", { fatal: true });

function xattrsFromVariant(v: GValue, what: string): Xattr[] {
  return (v as GValue[]).map((pair) => {
    const [name, value] = pair as [Uint8Array, Uint8Array];
    if (name.length < 2 || name[name.length - 1] !== 0) {
      throw new OstreeError(`${what}: xattr name is not a NUL-terminated string`);
    }
    return [wrap(what, () => nameDecoder.decode(name.subarray(0, -1))), value] as const;
  });
}

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GVariantError) throw new OstreeError(`${what}: ${e.message}`);
    if (e instanceof TypeError) throw new OstreeError(`${what}: ${e.message}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// dirtree

/** A file (regular or symlink) in a dirtree: its name and content-object checksum. */
export interface DirTreeFile {
  name: string;
  checksum: string;
}

/** A subdirectory in a dirtree: its name, dirtree checksum and dirmeta checksum. */
export interface DirTreeDir {
  name: string;
  tree: string;
  meta: string;
}

/** The contents of one directory. */
export interface DirTree {
  files: DirTreeFile[];
  dirs: DirTreeDir[];
}

const byteName = (s: string) => encoder.encode(s);
const encoder = new TextEncoder();

/**
 * The bytes of a dirtree object. Entries are sorted by name (`strcmp`), as libostree writes
 * them; names are validated and must be unique across files and directories.
 *
 * @example
 * ```ts
 * metadataChecksum(serializeDirTree({ files: [], dirs: [] }));
 * // "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" (the byte 00)
 * ```
 */
export function serializeDirTree(tree: DirTree, where = "dirtree"): Uint8Array {
  const seen = new Set<string>();
  const check = (name: string) => {
    validateFileName(name, where);
    if (seen.has(name)) {
      throw new OstreeError(`${where}: name ${JSON.stringify(name)} appears twice`);
    }
    seen.add(name);
  };
  const files = tree.files.map((f) => {
    check(f.name);
    assertChecksum(f.checksum, `${where}/${f.name}`);
    return { key: byteName(f.name), value: [f.name, fromHex(f.checksum, 32)] as GValue };
  });
  const dirs = tree.dirs.map((d) => {
    check(d.name);
    assertChecksum(d.tree, `${where}/${d.name} dirtree`);
    assertChecksum(d.meta, `${where}/${d.name} dirmeta`);
    return {
      key: byteName(d.name),
      value: [d.name, fromHex(d.tree, 32), fromHex(d.meta, 32)] as GValue,
    };
  });
  files.sort((a, b) => compareBytes(a.key, b.key));
  dirs.sort((a, b) => compareBytes(a.key, b.key));
  return serialize(DIRTREE_TYPE, [files.map((f) => f.value), dirs.map((d) => d.value)]);
}

/** Parses dirtree bytes, checking names and checksum lengths as `ostree fsck` does. */
export function parseDirTree(bytes: Uint8Array, what = "dirtree"): DirTree {
  const v = wrap(what, () => deserialize(DIRTREE_TYPE, bytes)) as GValue[];
  const csum = (b: GValue, name: string) => {
    const raw = b as Uint8Array;
    if (raw.length !== 32) {
      throw new OstreeError(
        `${what}: entry ${JSON.stringify(name)} has a ${raw.length}-byte checksum, expected 32`,
      );
    }
    return toHex(raw);
  };
  const files = (v[0] as GValue[]).map((e) => {
    const [name, c] = e as [string, Uint8Array];
    validateFileName(name, what);
    return { name, checksum: csum(c, name) };
  });
  const dirs = (v[1] as GValue[]).map((e) => {
    const [name, t, m] = e as [string, Uint8Array, Uint8Array];
    validateFileName(name, what);
    return { name, tree: csum(t, name), meta: csum(m, name) };
  });
  return { files, dirs };
}

// ---------------------------------------------------------------------------------------------
// commit

/** A commit object. */
export interface Commit {
  /** Commit metadata `a{sv}`, in stored order (order is part of the checksum). */
  metadata: VariantDictEntry[];
  /** Parent commit checksum, or null. */
  parent: string | null;
  /** Related objects `(name, commit checksum)`; ostree always writes none. */
  related?: [string, string][];
  subject: string;
  body: string;
  /** Seconds since the epoch (UTC). */
  timestamp: number;
  /** Root dirtree checksum. */
  rootTree: string;
  /** Root dirmeta checksum. */
  rootMeta: string;
}

/**
 * The bytes of a commit object.
 *
 * @example
 * ```ts
 * metadataChecksum(serializeCommit({
 *   metadata: [], parent: null, subject: "x", body: "", timestamp: 1700000000,
 *   rootTree: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
 *   rootMeta: "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488",
 * })); // "f0b8ea3da476fc630056a91e8cdf801badbf0b2fba9af4d20cfa43257f9f8a5f"
 * ```
 */
export function serializeCommit(c: Commit): Uint8Array {
  if (c.parent !== null) assertChecksum(c.parent, "commit parent");
  assertChecksum(c.rootTree, "commit root dirtree");
  assertChecksum(c.rootMeta, "commit root dirmeta");
  if (!Number.isSafeInteger(c.timestamp) || c.timestamp < 0) {
    throw new OstreeError(`commit timestamp: expected seconds >= 0, found ${c.timestamp}`);
  }
  return serialize(COMMIT_TYPE, [
    c.metadata as GValue,
    c.parent === null ? new Uint8Array() : fromHex(c.parent, 32),
    (c.related ?? []).map(([name, csum]) => [name, fromHex(csum, 32)]),
    c.subject,
    c.body,
    bswap64(BigInt(c.timestamp)),
    fromHex(c.rootTree, 32),
    fromHex(c.rootMeta, 32),
  ]);
}

/** Parses commit bytes; `what` names the object in errors. */
export function parseCommit(bytes: Uint8Array, what = "commit"): Commit {
  const v = wrap(what, () => deserialize(COMMIT_TYPE, bytes)) as GValue[];
  const csum = (b: GValue, field: string, allowEmpty = false): string | null => {
    const raw = b as Uint8Array;
    if (allowEmpty && raw.length === 0) return null;
    if (raw.length !== 32) {
      throw new OstreeError(`${what}: ${field} is ${raw.length} bytes, expected 32`);
    }
    return toHex(raw);
  };
  const ts = bswap64(v[5] as bigint);
  if (ts > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new OstreeError(`${what}: timestamp ${ts} is out of range`);
  }
  return {
    metadata: asVariantDict(v[0], `${what} metadata`),
    parent: csum(v[1], "parent", true),
    related: (v[2] as GValue[]).map((e) => {
      const [name, c] = e as [string, Uint8Array];
      return [name, csum(c, "related object")!];
    }),
    subject: v[3] as string,
    body: v[4] as string,
    timestamp: Number(ts),
    rootTree: csum(v[6], "root dirtree")!,
    rootMeta: csum(v[7], "root dirmeta")!,
  };
}

/**
 * Builders for commit metadata values (`a{sv}` entries): strings, booleans and integers as the
 * GVariant types ostree and ostree-ext use.
 *
 * @example
 * ```ts
 * const metadata: VariantDictEntry[] = [
 *   ["version", CommitMeta.string("1.0")],
 *   ["ostree-ext.composefs-synthesized", CommitMeta.bool(true)],
 * ];
 * ```
 */
export const CommitMeta = {
  /** `s` */
  string: (s: string): Variant => new Variant("s", s),
  /** `b` */
  bool: (b: boolean): Variant => new Variant("b", b),
  /** `i` (signed 32-bit) */
  int32: (n: number): Variant => new Variant("i", n),
  /** `u` (unsigned 32-bit) */
  uint32: (n: number): Variant => new Variant("u", n),
  /** `x` (signed 64-bit) */
  int64: (n: number | bigint): Variant => new Variant("x", BigInt(n)),
  /** `t` (unsigned 64-bit; e.g. `ostree.commit.timestamp`) */
  uint64: (n: number | bigint): Variant => new Variant("t", BigInt(n)),
  /** `as` (e.g. `ostree.ref-binding`) */
  strings: (list: readonly string[]): Variant => new Variant("as", [...list]),
} as const;

/** The string value of `key` in commit metadata, or undefined when absent or not a string. */
export function metadataString(
  metadata: readonly VariantDictEntry[],
  key: string,
): string | undefined {
  for (const [k, v] of metadata) {
    if (k === key) return v.type === "s" ? v.value as string : undefined;
  }
  return undefined;
}

/** The boolean value of `key` in commit metadata, or undefined when absent or not a boolean. */
export function metadataBool(
  metadata: readonly VariantDictEntry[],
  key: string,
): boolean | undefined {
  for (const [k, v] of metadata) {
    if (k === key) return v.type === "b" ? v.value as boolean : undefined;
  }
  return undefined;
}
