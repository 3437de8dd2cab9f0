/**
 * The working directory of one `upgrade` pull, below `ostree/repo/tmp` (the sysroot's
 * filesystem, so that a large image can be cloned from it): `unistore-pull-<random>`.
 *
 * ostree only expires its own prefixes in `tmp/`, so a killed upgrade's directory would stay
 * forever. Each directory is therefore held by an exclusive flock for as long as its upgrade
 * runs; the next upgrade removes every `unistore-pull-*` directory whose lock it can take (its
 * owner is gone: the kernel drops a dead process's locks). A directory is created under another
 * prefix, locked, then renamed, so a sweep never sees one that is not locked yet.
 *
 * @module
 */

import { SysError } from "../../ffi/errno.ts";
import {
  close,
  closeQuietly,
  DT,
  mkdirAt,
  openDir,
  openDirAt,
  readDir,
  RENAME,
  renameAt,
} from "../../ffi/fs.ts";
import { flockTry } from "../../ffi/lock.ts";
import { removeTreeAt } from "../../ffi/remove_tree.ts";
import { toHex } from "../digest/hash.ts";

/**
 * Prefix of a pull directory in use. Changing it orphans the directories of older versions
 * (nothing would sweep them).
 */
export const PULL_DIR_PREFIX = "unistore-pull-";
/** Prefix while a new directory is being locked: never swept. */
const NEW_PULL_DIR_PREFIX = ".unistore-new-pull-";

function randomSuffix(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(6)));
}

/**
 * Removes the `unistore-pull-*` directories of `tmpfd` whose upgrade is gone (their flock is
 * free). Returns their names.
 */
export function sweepPullDirs(tmpfd: number): string[] {
  const removed: string[] = [];
  for (const e of readDir(tmpfd)) {
    if (e.type !== DT.DIR || !e.name.startsWith(PULL_DIR_PREFIX)) continue;
    let fd: number;
    try {
      fd = openDirAt(tmpfd, e.name);
    } catch (err) {
      if (err instanceof SysError && err.is("ENOENT")) continue; // another sweep was first
      throw err;
    }
    try {
      if (!flockTry(fd, "write", e.name)) continue; // a running upgrade's
      removeTreeAt(tmpfd, e.name);
      removed.push(e.name);
    } finally {
      close(fd); // releases the lock
    }
  }
  return removed;
}

/** A pull directory: `path`, locked until disposed, then removed. */
export interface PullDir extends Disposable {
  path: string;
  /** Stale directories of killed upgrades removed on the way. */
  swept: string[];
}

/**
 * A fresh, locked `unistore-pull-*` directory in `repoPath/tmp`, after sweeping the stale ones.
 *
 * @example
 * ```ts ignore
 * using dir = makePullDir("/sysroot/ostree/repo");
 * await skopeoCopy(src, `oci:${dir.path}/layout:unistore`);
 * ```
 */
export function makePullDir(repoPath: string): PullDir {
  const tmpPath = `${repoPath}/tmp`;
  const tmpfd = openDir(tmpPath);
  try {
    const swept = sweepPullDirs(tmpfd);
    const suffix = randomSuffix();
    const staging = NEW_PULL_DIR_PREFIX + suffix;
    const name = PULL_DIR_PREFIX + suffix;
    mkdirAt(tmpfd, staging, 0o700);
    let lockFd = -1;
    try {
      lockFd = openDirAt(tmpfd, staging);
      if (!flockTry(lockFd, "write", `${tmpPath}/${staging}`)) {
        throw new Error(
          `${tmpPath}/${staging}: a directory just made is locked by another process`,
        );
      }
      renameAt(tmpfd, staging, tmpfd, name, RENAME.NOREPLACE);
    } catch (e) {
      closeQuietly(lockFd);
      removeTreeAt(tmpfd, staging);
      throw e;
    }
    const keep = openDirAt(tmpfd, ".");
    return {
      path: `${tmpPath}/${name}`,
      swept,
      [Symbol.dispose]() {
        try {
          removeTreeAt(keep, name);
        } finally {
          close(keep);
          close(lockFd);
        }
      },
    };
  } finally {
    close(tmpfd);
  }
}
