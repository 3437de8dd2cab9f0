/**
 * Cloning a whole directory tree, as `cp -a --reflink` does: every regular
 * file's data shared (or copied, per policy), owners, modes, times, xattrs,
 * symlinks, device nodes, fifos and hardlinks kept.
 *
 * Used to lay out plain-directory hosts (the demo without root) and as the
 * engine's yardstick against `cp` in bench/.
 *
 * @module
 */

import {
  close,
  closeQuietly,
  DT,
  fstat,
  isType,
  lchownAt,
  linkAt,
  lutimensAt,
  mkdirAt,
  mknodAt,
  O,
  openAt,
  openDirAt,
  readDir,
  readlinkAtBytes,
  S,
  type Stat,
  statAt,
  symlinkAt,
} from "../../ffi/fs.ts";
import { fgetAllXattrs, lgetAllXattrsAt, lsetxattrAt } from "../../ffi/xattr.ts";
import { applyMetadata, cloneToNewFile, type CopyPolicy, type PlaceMethod } from "./place.ts";

/** Counts of what {@linkcode cloneTree} did. */
export interface TreeCloneStats {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  special: number;
  /** Files per placing method. */
  methods: Record<PlaceMethod, number>;
}

/**
 * Clones the contents of directory `srcDirfd` into the (existing, empty)
 * directory `dstDirfd`. Existing names in the target are never replaced: a
 * clash is an EEXIST error naming the path.
 *
 * @example
 * ```ts ignore
 * const stats = cloneTree(openDir("/mnt/a"), openDir("/mnt/b"), { policy: "reflink-required" });
 * console.log(`${stats.files} files, ${stats.methods.reflink} reflinked`);
 * ```
 */
export function cloneTree(
  srcDirfd: number,
  dstDirfd: number,
  opts: { policy: CopyPolicy; xattrs?: boolean },
): TreeCloneStats {
  const stats: TreeCloneStats = {
    files: 0,
    bytes: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    special: 0,
    methods: { "reflink": 0, "copy_file_range": 0, "readwrite": 0 },
  };
  // Inodes with several links: the target path (relative to dstDirfd) of the
  // first one placed, so later ones become hardlinks to it.
  const seen = new Map<bigint, Uint8Array>();
  const withXattrs = opts.xattrs ?? true;
  const umask = processUmask();
  const owner = newFileOwner();

  const walk = (src: number, dst: number, path: string, rel: Uint8Array) => {
    const dstGid = owner.gidIn(dst);
    for (const entry of readDir(src)) {
      const name = entry.nameBytes;
      const where = `${path}/${entry.name}`;
      const relName = joinBytes(rel, name);
      if (entry.type === DT.REG) {
        const fd = openAt(src, name, O.RDONLY | O.NOFOLLOW);
        try {
          const st = fstat(fd);
          if (st.nlink > 1) {
            const first = seen.get(st.ino);
            if (first) {
              linkAt(dstDirfd, first, dst, name);
              stats.hardlinks++;
              continue;
            }
            seen.set(st.ino, relName);
          }
          // A fresh tree promises nothing by its names, so files are created in
          // place (as cp does) rather than through O_TMPFILE and a link.
          // Created with its final permission bits where the umask keeps
          // them; chown and chmod only when the defaults differ, as cp does.
          const perm = st.mode & 0o7777;
          const modeFits = (perm & 0o7000) === 0 && (perm & umask) === 0;
          const ownerFits = st.uid === owner.uid && st.gid === dstGid;
          const placed = cloneToNewFile(fd, dst, name, {
            policy: opts.policy,
            mode: modeFits ? perm : 0o600,
            size: st.size,
            what: where,
          });
          try {
            applyMetadata(placed.fd, {
              uid: ownerFits ? undefined : st.uid,
              gid: ownerFits ? undefined : st.gid,
              mode: modeFits && ownerFits ? undefined : st.mode,
              xattrs: withXattrs ? fgetAllXattrs(fd) : undefined,
              mtime: st.mtime,
            });
          } finally {
            close(placed.fd);
          }
          stats.files++;
          stats.bytes += placed.size;
          stats.methods[placed.method]++;
        } finally {
          close(fd);
        }
      } else if (entry.type === DT.DIR) {
        const st = statAt(src, name);
        mkdirAt(dst, name, 0o700);
        const childSrc = openDirAt(src, name);
        let childDst = -1;
        try {
          childDst = openDirAt(dst, name);
          walk(childSrc, childDst, where, relName);
          // Owner, mode and times last: the walk itself changes the mtime.
          applyDirMetadata(childSrc, childDst, st, withXattrs);
          stats.dirs++;
        } finally {
          close(childSrc);
          closeQuietly(childDst);
        }
      } else {
        const st = statAt(src, name);
        if (isType(st.mode, S.IFLNK)) {
          symlinkAt(readlinkAtBytes(src, name), dst, name);
          stats.symlinks++;
        } else {
          mknodAt(dst, name, st.mode, st.rdevMajor, st.rdevMinor);
          stats.special++;
        }
        lchownAt(dst, name, st.uid, st.gid);
        if (withXattrs) {
          for (const [k, v] of lgetAllXattrsAt(src, name)) lsetxattrAt(dst, name, k, v);
        }
        lutimensAt(dst, name, st.mtime, st.mtime);
      }
    }
  };
  walk(srcDirfd, dstDirfd, "", new Uint8Array(0));
  return stats;
}

function applyDirMetadata(src: number, dst: number, st: Stat, withXattrs: boolean) {
  applyMetadata(dst, {
    uid: st.uid,
    gid: st.gid,
    mode: st.mode,
    xattrs: withXattrs ? fgetAllXattrs(src) : undefined,
    mtime: st.mtime,
  });
}

function joinBytes(dir: Uint8Array, name: Uint8Array): Uint8Array {
  if (dir.length === 0) return name;
  const out = new Uint8Array(dir.length + 1 + name.length);
  out.set(dir);
  out[dir.length] = 0x2f;
  out.set(name, dir.length + 1);
  return out;
}

/** The process umask, from /proc (reading it with umask(2) would race other threads). */
function processUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return parseInt(m[1], 8);
  } catch { /* no /proc: assume the strictest umask, so modes are always set */ }
  return 0o777;
}

/** Who owns a file this process creates in a directory (setgid directories pass on their group). */
function newFileOwner() {
  const uid = Deno.uid() ?? -1, gid = Deno.gid() ?? -1;
  return {
    uid,
    gidIn(dirfd: number): number {
      const st = fstat(dirfd);
      return st.mode & 0o2000 ? st.gid : gid;
    },
  };
}
