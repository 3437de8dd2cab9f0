/**
 * Does FICLONE work from one directory's filesystem into another's?
 *
 * Asked once per (source device, target device) pair and remembered, as
 * composefs-rs and bootc do: a clone into a fresh O_TMPFILE on the target, so
 * the probe leaves no file behind even when it is interrupted.
 *
 * @module
 */

import { SysError } from "../../ffi/errno.ts";
import { ficlone } from "../../ffi/clone.ts";
import {
  close,
  closeQuietly,
  fstat,
  O,
  openAt,
  openDir,
  unlinkAt,
  writeAll,
} from "../../ffi/fs.ts";
import { fstatfs } from "../../ffi/statfs.ts";
import { explainCloneErrno } from "./errors.ts";

/** The answer of a probe. */
export interface ReflinkProbe {
  /** FICLONE works between the two filesystems. */
  supported: boolean;
  /** The errno name FICLONE gave when it failed (`EOPNOTSUPP`, `EXDEV`, ...). */
  code?: string;
  /** Why not, in words; "reflinks work" when supported. */
  reason: string;
  /** Filesystem type of the target (`xfs`, `btrfs`, `ext4`, or a hex magic). */
  filesystem: string;
  /** Filesystem type of the source. */
  sourceFilesystem: string;
}

const cache = new Map<string, ReflinkProbe>();

/** Forgets remembered probe answers (tests reformat filesystems under the same device numbers). */
export function clearProbeCache(): void {
  cache.clear();
}

/**
 * Opens an unnamed file in `dirfd`, falling back to a named one that is
 * unlinked at once where O_TMPFILE is not supported.
 */
function scratchFile(dirfd: number): number {
  try {
    return openAt(dirfd, ".", O.TMPFILE | O.RDWR, 0o600);
  } catch (e) {
    if (!(e instanceof SysError) || !(e.is("EOPNOTSUPP") || e.is("EISDIR"))) throw e;
  }
  const name = `.unistore-probe-${crypto.randomUUID()}`;
  const fd = openAt(dirfd, name, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, 0o600);
  unlinkAt(dirfd, name);
  return fd;
}

/**
 * Probes reflinks from the filesystem of `srcDirfd` into that of `dstDirfd`
 * (the same directory when only one is given).
 *
 * @example
 * ```ts ignore
 * const dir = openDir("/sysroot");
 * const p = probeReflink(dir);
 * if (!p.supported) console.log(`no reflinks: ${p.reason}`);
 * ```
 */
export function probeReflink(dstDirfd: number, srcDirfd = dstDirfd): ReflinkProbe {
  const key = `${fstat(srcDirfd).dev}>${fstat(dstDirfd).dev}`;
  const known = cache.get(key);
  if (known) return known;
  const filesystem = fstatfs(dstDirfd).typeName;
  const sourceFilesystem = fstatfs(srcDirfd).typeName;
  let src = -1, dst = -1;
  let result: ReflinkProbe;
  try {
    src = scratchFile(srcDirfd);
    writeAll(src, new Uint8Array([0x75]));
    dst = scratchFile(dstDirfd);
    ficlone(dst, src);
    result = { supported: true, reason: "reflinks work", filesystem, sourceFilesystem };
  } catch (e) {
    if (!(e instanceof SysError) || !e.call.startsWith("ioctl")) throw e;
    result = {
      supported: false,
      code: e.code,
      reason: explainCloneErrno(e.code),
      filesystem,
      sourceFilesystem,
    };
  } finally {
    closeQuietly(src);
    closeQuietly(dst);
  }
  cache.set(key, result);
  return result;
}

/** {@linkcode probeReflink} for directory paths. */
export function probeReflinkPath(dstDir: string, srcDir = dstDir): ReflinkProbe {
  const dst = openDir(dstDir);
  try {
    if (srcDir === dstDir) return probeReflink(dst);
    const src = openDir(srcDir);
    try {
      return probeReflink(dst, src);
    } finally {
      close(src);
    }
  } finally {
    close(dst);
  }
}
