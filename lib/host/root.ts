/**
 * The host root: every path unistore reads or writes on a bootc host, derived from `--root DIR`.
 *
 * `DIR` is the running system's `/` (DESIGN.md §2 "The host root"; bootc's paths are in
 * ../../../shared/specs/bootc-unified-storage.md §9):
 *
 * | what | path under DIR |
 * |---|---|
 * | physical root | `sysroot` |
 * | ostree repo / deployments | `sysroot/ostree/repo`, `sysroot/ostree/deploy` |
 * | composefs repo | `sysroot/composefs` (bootc's flag file `sysroot/composefs/bootc.json`) |
 * | composefs deployment state | `sysroot/state/deploy/<id>/` |
 * | bootc containers-storage | `sysroot/ostree/bootc/storage`; native composefs hosts `sysroot/composefs/bootc/storage` |
 * | boot entries | `boot/loader/entries`, or `sysroot/boot/loader/entries` when the former does not exist |
 * | kernel command line | `proc/cmdline` |
 * | staged deployments | `run/ostree/staged-deployment`, `run/composefs/staged-deployment` |
 * | install config | `usr/lib/bootc/install`, `usr/local/lib/bootc/install`, `etc/bootc/install`, `run/bootc/install` |
 *
 * Symlinks inside the host tree are followed as the host itself would follow them, but never
 * out of it: an absolute target (`/boot/loader -> /boot/loader.1`) restarts at DIR, and `..`
 * stops at DIR, as in a chroot. So `--root /mnt/image` never reads the machine's own files.
 *
 * @module
 */

import { Errno, SysError } from "../../ffi/errno.ts";
import {
  AT,
  close,
  closeQuietly,
  type DirEntry,
  isType,
  O,
  openAt,
  openDir,
  readDir,
  readFileAt,
  readlinkAt,
  S,
  type Stat,
  statAt,
} from "../../ffi/fs.ts";

/**
 * Paths relative to the host root. Changing one makes unistore look somewhere bootc does not:
 * each is fixed by bootc (spec §9) or by ostree (ostree-repo.md §10).
 */
export const HOST_PATHS = {
  sysroot: "sysroot",
  ostreeRepo: "sysroot/ostree/repo",
  ostreeDeploy: "sysroot/ostree/deploy",
  composefsRepo: "sysroot/composefs",
  /** bootc's `BOOTC_REPO_META`, relative to the physical root: `composefs/bootc.json`. */
  bootcJson: "sysroot/composefs/bootc.json",
  /** bootc's `STATE_DIR_RELATIVE` (`state/deploy`) under the physical root. */
  composefsStateDeploy: "sysroot/state/deploy",
  /** bootc containers-storage on ostree hosts (`ostree/bootc` is bootc's `BOOTC_ROOT`). */
  ostreeContainersStorage: "sysroot/ostree/bootc/storage",
  /** bootc containers-storage on native composefs hosts. */
  composefsContainersStorage: "sysroot/composefs/bootc/storage",
  /** Boot entries as a booted host sees them (`/boot` is the boot partition). */
  bootEntries: "boot/loader/entries",
  /** Boot entries inside the physical root: where an unbooted tree keeps them. */
  sysrootBootEntries: "sysroot/boot/loader/entries",
  procCmdline: "proc/cmdline",
  ostreeStagedDeployment: "run/ostree/staged-deployment",
  composefsStagedDeployment: "run/composefs/staged-deployment",
  /** bootc's install-config dirs, lowest priority first (liboverdrop's systemd bases). */
  installConfigDirs: [
    "usr/lib/bootc/install",
    "usr/local/lib/bootc/install",
    "etc/bootc/install",
    "run/bootc/install",
  ],
} as const;

/** Symlinks followed in one lookup before giving up with ELOOP, as the kernel's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

/**
 * A bootc host's `/`, given as `--root DIR`: absolute paths for messages and plain reads, and
 * lookups confined to DIR for everything opened through fds.
 *
 * @example
 * ```ts
 * const root = new HostRoot("/mnt/host");
 * root.ostreeRepo;                            // "/mnt/host/sysroot/ostree/repo"
 * root.readText("proc/cmdline");              // the file's text, or null when it is absent
 * root.containersStorage("composefs");        // "/mnt/host/sysroot/composefs/bootc/storage"
 * ```
 */
export class HostRoot {
  /** DIR, without a trailing slash ("/" for the real root). */
  readonly dir: string;

  constructor(dir: string) {
    if (dir === "") throw new TypeError("HostRoot: empty --root");
    const trimmed = dir.replace(/\/+$/, "");
    this.dir = trimmed === "" ? "/" : trimmed;
  }

  /** The path on this machine of `rel` (a path relative to the host's `/`). */
  path(rel: string): string {
    const r = rel.replace(/^\/+/, "");
    if (r === "" || r === ".") return this.dir;
    return this.dir === "/" ? `/${r}` : `${this.dir}/${r}`;
  }

  /** `DIR/sysroot`: the physical root. */
  get sysroot(): string {
    return this.path(HOST_PATHS.sysroot);
  }
  /** `DIR/sysroot/ostree/repo`. */
  get ostreeRepo(): string {
    return this.path(HOST_PATHS.ostreeRepo);
  }
  /** `DIR/sysroot/ostree/deploy`. */
  get ostreeDeploy(): string {
    return this.path(HOST_PATHS.ostreeDeploy);
  }
  /** `DIR/sysroot/composefs`. */
  get composefsRepo(): string {
    return this.path(HOST_PATHS.composefsRepo);
  }
  /** `DIR/sysroot/composefs/bootc.json`. */
  get bootcJson(): string {
    return this.path(HOST_PATHS.bootcJson);
  }
  /** `DIR/sysroot/state/deploy`. */
  get composefsStateDeploy(): string {
    return this.path(HOST_PATHS.composefsStateDeploy);
  }
  /** `DIR/proc/cmdline`. */
  get procCmdline(): string {
    return this.path(HOST_PATHS.procCmdline);
  }
  /** `DIR/run/ostree/staged-deployment`. */
  get ostreeStagedDeployment(): string {
    return this.path(HOST_PATHS.ostreeStagedDeployment);
  }
  /** `DIR/run/composefs/staged-deployment`. */
  get composefsStagedDeployment(): string {
    return this.path(HOST_PATHS.composefsStagedDeployment);
  }
  /** The four install-config dirs on this machine, lowest priority first. */
  get installConfigDirs(): string[] {
    return HOST_PATHS.installConfigDirs.map((d) => this.path(d));
  }

  /**
   * bootc's containers-storage for a host of the given kind: `sysroot/ostree/bootc/storage`
   * on ostree hosts, `sysroot/composefs/bootc/storage` on native composefs hosts (where
   * `ostree/bootc` is a symlink to `../composefs/bootc`, so both name the same store).
   */
  containersStorage(kind: "ostree" | "composefs"): string {
    return this.path(
      kind === "composefs"
        ? HOST_PATHS.composefsContainersStorage
        : HOST_PATHS.ostreeContainersStorage,
    );
  }

  /**
   * bootc's containers-storage of this host: the native composefs location when it exists or
   * the host is a native composefs one (`state/deploy`, no `ostree/deploy`), else the ostree one
   * (on composefs hosts `ostree/bootc` links to `composefs/bootc`).
   */
  bootcContainersStorage(): string {
    const native = this.isDir(HOST_PATHS.composefsContainersStorage) ||
      (this.isDir(HOST_PATHS.composefsStateDeploy) && !this.isDir(HOST_PATHS.ostreeDeploy));
    return this.path(
      native ? HOST_PATHS.composefsContainersStorage : HOST_PATHS.ostreeContainersStorage,
    );
  }

  /**
   * The boot entries dir, relative to the root: `boot/loader/entries` when it exists (a booted
   * host, `/boot/loader` being ostree's `loader.N` symlink), else `sysroot/boot/loader/entries`.
   */
  bootEntriesRel(): string {
    return this.isDir(HOST_PATHS.bootEntries)
      ? HOST_PATHS.bootEntries
      : HOST_PATHS.sysrootBootEntries;
  }

  /** {@linkcode bootEntriesRel} as a path on this machine. */
  bootEntriesDir(): string {
    return this.path(this.bootEntriesRel());
  }

  /**
   * Resolves `rel` inside the root, following symlinks as a chroot would: returns the
   * canonical path relative to the root ("." for the root itself), or null when a component
   * does not exist or is not a directory.
   *
   * @param followLast follow a symlink in the last component (default true).
   * @throws {SysError} ELOOP after 40 symlinks; other errors of statx/readlink as they come.
   */
  resolve(rel: string, followLast = true): string | null {
    const rootFd = openDir(this.dir);
    try {
      return resolveIn(rootFd, rel, followLast);
    } finally {
      close(rootFd);
    }
  }

  /** lstat of `rel` after resolving (the final symlink itself when `followLast` is false). */
  stat(rel: string, followLast = true): Stat | null {
    return this.#withResolved(rel, followLast, (rootFd, c) => statAt(rootFd, c));
  }

  /** True when `rel` exists inside the root (symlinks followed within the root). */
  exists(rel: string): boolean {
    return this.stat(rel) !== null;
  }

  /** True when `rel` is a directory (symlinks followed within the root). */
  isDir(rel: string): boolean {
    const st = this.stat(rel);
    return st !== null && isType(st.mode, S.IFDIR);
  }

  /**
   * Opens the directory `rel` (O_RDONLY|O_DIRECTORY|O_NOFOLLOW on the resolved path); null
   * when it does not exist. The caller closes the fd.
   *
   * @throws {SysError} ENOTDIR when `rel` is not a directory, and other open errors.
   */
  openDir(rel: string): number | null {
    return this.#withResolved(
      rel,
      true,
      (rootFd, c) => openAt(rootFd, c, O.RDONLY | O.DIRECTORY | O.NOFOLLOW),
    );
  }

  /** The whole content of the regular file `rel`, or null when it does not exist. */
  readFile(rel: string): Uint8Array | null {
    return this.#withResolved(rel, true, (rootFd, c) => readFileAt(rootFd, c));
  }

  /** {@linkcode readFile} decoded as UTF-8 (invalid bytes become U+FFFD). */
  readText(rel: string): string | null {
    const bytes = this.readFile(rel);
    return bytes === null ? null : new TextDecoder().decode(bytes);
  }

  /** The entries of directory `rel` ("." and ".." left out), or null when it does not exist. */
  listDir(rel: string): DirEntry[] | null {
    const fd = this.openDir(rel);
    if (fd === null) return null;
    try {
      return readDir(fd);
    } finally {
      close(fd);
    }
  }

  #withResolved<T>(
    rel: string,
    followLast: boolean,
    fn: (rootFd: number, c: string) => T,
  ): T | null {
    const rootFd = openDir(this.dir);
    try {
      const c = resolveIn(rootFd, rel, followLast);
      if (c === null) return null;
      try {
        return fn(rootFd, c);
      } catch (e) {
        // Removed between resolving and opening: the same as never there.
        if (e instanceof SysError && e.errno === Errno.ENOENT) return null;
        throw e;
      }
    } finally {
      closeQuietly(rootFd);
    }
  }
}

function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** Chroot-style resolution of `rel` below `rootFd`; see {@linkcode HostRoot.resolve}. */
function resolveIn(rootFd: number, rel: string, followLast: boolean): string | null {
  const done: string[] = [];
  const todo = components(rel);
  let links = 0;
  while (todo.length > 0) {
    const comp = todo.shift()!;
    if (comp === "..") {
      done.pop(); // ".." of the root is the root
      continue;
    }
    const candidate = [...done, comp].join("/");
    let st: Stat;
    try {
      // `done` holds no symlinks, so the kernel follows none before the last component.
      st = statAt(rootFd, candidate, AT.SYMLINK_NOFOLLOW);
    } catch (e) {
      if (e instanceof SysError && (e.errno === Errno.ENOENT || e.errno === Errno.ENOTDIR)) {
        return null;
      }
      throw e;
    }
    if (isType(st.mode, S.IFLNK) && (todo.length > 0 || followLast)) {
      if (++links > MAX_SYMLINKS) throw new SysError("resolve", Errno.ELOOP, rel);
      const target = readlinkAt(rootFd, candidate);
      if (target.startsWith("/")) done.length = 0;
      todo.unshift(...components(target));
      continue;
    }
    done.push(comp);
  }
  return done.length === 0 ? "." : done.join("/");
}
