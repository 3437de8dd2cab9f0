/**
 * Deployments of an ostree sysroot and which of them is booted, staged, pending or the rollback,
 * read the way libostree (`ostree-sysroot.c`) and bootc read them, from a host root directory.
 *
 * For a host root `ROOT` (`/` on a running system, any directory in tests):
 * - the physical root is `ROOT/sysroot` (deployments in `sysroot/ostree/deploy/<stateroot>/
 *   deploy/<commit>.<serial>` with a `.origin` key file beside each);
 * - boot entries come from `ROOT/boot/loader/entries` or, when `ROOT/boot/loader` does not exist,
 *   `ROOT/sysroot/boot/loader/entries`; `loader` is a symlink to `loader.<bootversion>`; only
 *   regular files `ostree-*.conf` count, sorted by `version`, highest first (the default entry);
 * - each entry's `ostree=/ostree/boot.B/<stateroot>/<bootcsum>/<bootserial>` karg is resolved
 *   through the `boot.B -> boot.B.S` and `<bootserial> -> ../../../deploy/…` symlinks inside the
 *   sysroot (never outside it) to its deployment directory;
 * - the booted deployment is the one whose directory (device, inode) the `ostree=` karg of
 *   `ROOT/proc/cmdline` resolves to;
 * - a staged deployment is named by `ROOT/run/ostree/staged-deployment` (a GVariant `a{sv}`
 *   with `target` = {`name`: `<commit>.<serial>`, `osname`, `bootcsum`}) and comes first.
 *
 * Spec: ../../../../shared/specs/ostree-repo.md §10.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import {
  close,
  closeQuietly,
  DT,
  openDir,
  openDirAt,
  readDir,
  readFileAt,
  readlinkAt,
  S,
  statAt,
} from "../../../ffi/fs.ts";
import { SysrootError } from "./errors.ts";
import { asVariantDict, deserialize, lookupVariant, type VariantDictEntry } from "./gvariant.ts";
import { KeyFile } from "./keyfile.ts";

/** One Boot Loader Specification entry file. */
export interface BootEntry {
  /** File name, e.g. `ostree-1-exampleos.conf`. */
  fileName: string;
  /** Where it was read (for messages). */
  path: string;
  title?: string;
  version?: string;
  options?: string;
  linux?: string;
  initrd: string[];
  /** The value of the `ostree=` karg in `options`. */
  ostreeKarg?: string;
  /** Every key with all its values, in file order. */
  keys: Map<string, string[]>;
}

/** One deployment. */
export interface Deployment {
  stateroot: string;
  /** The deployed commit. */
  checksum: string;
  /** `deployserial`: counts deployments of the same commit (`.0`, `.1`, …). */
  serial: number;
  /** sha256 of kernel ‖ initramfs (the `boot.B.S/<stateroot>/<bootcsum>` directory). */
  bootcsum?: string;
  /** Index among deployments sharing a bootcsum (the last `ostree=` component). */
  bootserial?: number;
  /** Position in the deployment list (0 = staged if any, else the default boot entry). */
  index: number;
  /** The deployment directory below the sysroot, e.g. `ostree/deploy/os/deploy/<c>.0`. */
  deployPath: string;
  /** `[origin] refspec` (plain ostree). */
  originRefspec?: string;
  /** `[origin] container-image-reference` (bootc / ostree-ext). */
  containerImageReference?: string;
  /** `[libostree-transient] pinned=true`. */
  pinned: boolean;
  /** `[origin] unlocked` (e.g. `hotfix`). */
  unlocked?: string;
  /** The parsed origin file; null when there is none. */
  origin: KeyFile | null;
  /** The boot entry that names this deployment (none for a staged one). */
  bootEntry?: BootEntry;
  booted: boolean;
  staged: boolean;
  /** (device, inode) of the deployment directory. */
  dev: string;
  ino: bigint;
}

/** Everything {@linkcode readDeployments} found. */
export interface SysrootDeployments {
  /** `0`/`1` from `boot/loader -> loader.N`, or null when `loader` is a plain directory. */
  bootversion: number | null;
  /** The staged deployment first (if any), then in boot-entry order. */
  deployments: Deployment[];
  booted: Deployment | null;
  staged: Deployment | null;
  /**
   * libostree's pending deployment (`ostree_sysroot_query_deployments_for`): the first
   * deployment of the booted stateroot before the booted one (the staged one when there is one).
   */
  pending: Deployment | null;
  /** bootc's rollback: the first deployment of the booted stateroot neither booted nor staged. */
  rollback: Deployment | null;
  /** The rollback is ordered before the booted deployment (it becomes the default at next boot). */
  rollbackQueued: boolean;
  /** Every `ostree-*.conf` entry read, in list order. */
  bootEntries: BootEntry[];
  /** Where boot entries were read from. */
  entriesDir: string | null;
  /** The `ostree=` karg of the kernel command line, if any. */
  cmdlineOstreeKarg: string | null;
}

/** Paths of a host root, all defaulting from `root` as DESIGN.md describes. */
export interface HostPaths {
  /** The host's `/`. */
  root: string;
  /** Default `ROOT/sysroot`. */
  sysroot?: string;
  /** The `boot` directory holding `loader`; default `ROOT/boot` if it has `loader`, else `SYSROOT/boot`. */
  bootDir?: string;
  /** Default `ROOT/proc/cmdline`. */
  cmdline?: string;
  /** Default `ROOT/run/ostree/staged-deployment`. */
  stagedDeployment?: string;
}

const OSTREE_KARG_RE = /^\/ostree\/boot\.([01])\/([^/]+)\/([^/]+)\/([0-9]+)$/;
const DEPLOY_NAME_RE = /^([0-9a-f]+)\.([0-9]+)$/;

/**
 * Splits a kernel command line into arguments (double quotes group, as the kernel parses).
 *
 * @example
 * ```ts
 * parseKernelCmdline('root=UUID=x ostree=/ostree/boot.1/os/abc/0 quiet a="b c"');
 * // ["root=UUID=x", "ostree=/ostree/boot.1/os/abc/0", "quiet", "a=b c"]
 * ```
 */
export function parseKernelCmdline(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  let have = false;
  for (const c of text) {
    if (c === '"') {
      quoted = !quoted;
      have = true;
    } else if (!quoted && /\s/.test(c)) {
      if (have) out.push(cur);
      cur = "";
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) out.push(cur);
  return out;
}

/** The value of the last `ostree=` argument, or null. */
export function ostreeKargOf(args: readonly string[]): string | null {
  let found: string | null = null;
  for (const a of args) if (a.startsWith("ostree=")) found = a.slice("ostree=".length);
  return found;
}

/**
 * Parses a BLS entry (`key value` lines; `#` comments; `initrd` may repeat).
 *
 * @example
 * ```ts
 * parseBootEntry("title x\nversion 2\noptions a ostree=/ostree/boot.1/os/c/0\n", "e.conf").version; // "2"
 * ```
 */
export function parseBootEntry(text: string, fileName: string, path = fileName): BootEntry {
  const keys = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const list = keys.get(m[1]) ?? [];
    list.push(m[2]);
    keys.set(m[1], list);
  }
  const last = (k: string) => keys.get(k)?.at(-1);
  const options = last("options");
  return {
    fileName,
    path,
    title: last("title"),
    version: last("version"),
    options,
    linux: last("linux"),
    initrd: keys.get("initrd") ?? [],
    ostreeKarg: options === undefined
      ? undefined
      : ostreeKargOf(parseKernelCmdline(options)) ?? undefined,
    keys,
  };
}

/** glibc `strverscmp` order for version strings (digit runs compare as numbers). */
export function compareVersions(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [], pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    const nx = /^\d/.test(x), ny = /^\d/.test(y);
    if (nx && ny) {
      const d = BigInt(x) - BigInt(y);
      if (d !== 0n) return d < 0n ? -1 : 1;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * Resolves `path` inside the tree of `rootfd` as if `rootfd` were `/`: symlinks are followed
 * (absolute ones from `rootfd`, `..` stops at it), so nothing outside the sysroot is reached.
 * Returns the resolved path relative to `rootfd`.
 */
export function resolveBelow(rootfd: number, path: string, what: string): string {
  const pending = path.split("/");
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const p = pending.shift()!;
    if (p === "" || p === ".") continue;
    if (p === "..") {
      resolved.pop();
      continue;
    }
    const candidate = [...resolved, p].join("/");
    let st;
    try {
      st = statAt(rootfd, candidate);
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) {
        throw new SysrootError(what, `${path}: /${candidate} does not exist`);
      }
      throw e;
    }
    if ((st.mode & S.IFMT) === S.IFLNK) {
      if (++links > 40) throw new SysrootError(what, `${path}: too many levels of symbolic links`);
      const target = readlinkAt(rootfd, candidate);
      if (target.startsWith("/")) resolved.length = 0;
      pending.unshift(...target.split("/"));
    } else {
      resolved.push(p);
    }
  }
  return resolved.join("/");
}

function tryReadText(dirfd: number, path: string): string | null {
  try {
    return new TextDecoder().decode(readFileAt(dirfd, path));
  } catch (e) {
    if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return null;
    throw e;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads the deployments of the ostree sysroot of a host root, with their boot entries and
 * origins, and tells which is booted, staged, pending and the rollback.
 *
 * @throws {SysrootError} when a boot entry, `ostree=` karg or the staged-deployment file does
 *   not match ostree's layout (names the file).
 * @example
 * ```ts ignore
 * const s = readDeployments({ root: "/" });
 * console.log(s.booted?.containerImageReference, s.rollback?.checksum);
 * ```
 */
export function readDeployments(paths: HostPaths): SysrootDeployments {
  const root = paths.root.replace(/\/+$/, "") || "/";
  const join = (rel: string) => (root === "/" ? `/${rel}` : `${root}/${rel}`);
  const sysrootPath = paths.sysroot ?? join("sysroot");
  let sysfd: number;
  try {
    sysfd = openDir(sysrootPath);
  } catch (e) {
    if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) {
      throw new SysrootError(sysrootPath, "no sysroot directory: not an ostree host root");
    }
    throw e;
  }
  try {
    const bootDir = paths.bootDir ??
      (exists(join("boot/loader")) ? join("boot") : `${sysrootPath}/boot`);
    const { bootversion, entriesDir, entries } = readBootEntries(bootDir);

    const deployments: Deployment[] = [];
    for (const entry of entries) {
      if (!entry.ostreeKarg) {
        throw new SysrootError(entry.path, "boot entry has no ostree= kernel argument");
      }
      deployments.push(deploymentFromKarg(sysfd, sysrootPath, entry.ostreeKarg, entry));
    }

    const stagedPath = paths.stagedDeployment ?? join("run/ostree/staged-deployment");
    let staged: Deployment | null = null;
    const stagedBytes = readOptional(stagedPath);
    if (stagedBytes !== null) {
      staged = stagedDeployment(sysfd, sysrootPath, stagedBytes, stagedPath);
      deployments.unshift(staged);
    }
    deployments.forEach((d, i) => (d.index = i));

    const cmdlineText = readOptional(paths.cmdline ?? join("proc/cmdline"));
    const karg = cmdlineText === null
      ? null
      : ostreeKargOf(parseKernelCmdline(new TextDecoder().decode(cmdlineText)));
    let booted: Deployment | null = null;
    if (karg !== null) {
      const dir = resolveBelow(sysfd, karg, `${sysrootPath} (kernel command line ostree=${karg})`);
      const st = statAt(sysfd, dir);
      booted = deployments.find((d) => !d.staged && d.dev === st.dev && d.ino === st.ino) ?? null;
      if (booted) booted.booted = true;
    }

    let pending: Deployment | null = null;
    let rollback: Deployment | null = null;
    if (booted) {
      let seenBooted = false;
      for (const d of deployments) {
        if (d.stateroot !== booted.stateroot) continue;
        if (d === booted) {
          seenBooted = true;
          continue;
        }
        if (!seenBooted && !pending) pending = d;
        if (!d.staged && !rollback) rollback = d;
      }
    }
    return {
      bootversion,
      deployments,
      booted,
      staged,
      pending,
      rollback,
      rollbackQueued: !!(booted && rollback && rollback.index < booted.index),
      bootEntries: entries,
      entriesDir,
      cmdlineOstreeKarg: karg,
    };
  } finally {
    close(sysfd);
  }
}

function readOptional(path: string): Uint8Array | null {
  try {
    return Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Boot entries of the current `loader.N`, sorted as libostree sorts them. */
function readBootEntries(bootDir: string): {
  bootversion: number | null;
  entriesDir: string | null;
  entries: BootEntry[];
} {
  let bootfd: number;
  try {
    bootfd = openDir(bootDir);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return { bootversion: null, entriesDir: null, entries: [] };
    throw e;
  }
  try {
    let loader = "loader";
    let bootversion: number | null = null;
    let st;
    try {
      st = statAt(bootfd, "loader");
    } catch (e) {
      if (isErrno(e, "ENOENT")) return { bootversion: null, entriesDir: null, entries: [] };
      throw e;
    }
    if ((st.mode & S.IFMT) === S.IFLNK) {
      const target = readlinkAt(bootfd, "loader");
      if (target !== "loader.0" && target !== "loader.1") {
        throw new SysrootError(
          `${bootDir}/loader`,
          `invalid target "${target}", expected loader.0 or loader.1`,
        );
      }
      loader = target;
      bootversion = Number(target.slice(-1));
    }
    const entriesDir = `${bootDir}/${loader}/entries`;
    let dirfd: number;
    try {
      dirfd = openDirAt(bootfd, `${loader}/entries`);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return { bootversion, entriesDir, entries: [] };
      throw e;
    }
    const entries: BootEntry[] = [];
    try {
      for (const ent of readDir(dirfd)) {
        if (!ent.name.startsWith("ostree-") || !ent.name.endsWith(".conf")) continue;
        // Regular files only. libostree follows a symlinked entry; unistore reads entries with
        // O_NOFOLLOW (DESIGN.md §3), so a symlinked entry is not read.
        if (ent.type !== DT.REG && (statAt(dirfd, ent.nameBytes).mode & S.IFMT) !== S.IFREG) {
          continue;
        }
        const text = new TextDecoder().decode(readFileAt(dirfd, ent.nameBytes));
        entries.push(parseBootEntry(text, ent.name, `${entriesDir}/${ent.name}`));
      }
    } finally {
      closeQuietly(dirfd);
    }
    entries.sort((a, b) => {
      if (a.version !== undefined && b.version !== undefined) {
        return -compareVersions(a.version, b.version);
      }
      return a.version !== undefined ? -1 : b.version !== undefined ? 1 : 0;
    });
    return { bootversion, entriesDir, entries };
  } finally {
    close(bootfd);
  }
}

function deploymentFromKarg(
  sysfd: number,
  sysrootPath: string,
  karg: string,
  entry: BootEntry,
): Deployment {
  const m = OSTREE_KARG_RE.exec(karg);
  if (!m) {
    throw new SysrootError(
      entry.path,
      `invalid ostree= argument "${karg}", expected /ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/TREESERIAL`,
    );
  }
  const [, , stateroot, bootcsum, bootserial] = m;
  const dir = resolveBelow(sysfd, karg, `${entry.path} (ostree=${karg})`);
  const d = deploymentAt(sysfd, sysrootPath, dir, stateroot, entry.path);
  d.bootcsum = bootcsum;
  d.bootserial = Number(bootserial);
  d.bootEntry = entry;
  return d;
}

function deploymentAt(
  sysfd: number,
  sysrootPath: string,
  dir: string,
  stateroot: string,
  what: string,
): Deployment {
  const base = dir.slice(dir.lastIndexOf("/") + 1);
  const m = DEPLOY_NAME_RE.exec(base);
  if (!m) {
    throw new SysrootError(what, `invalid deploy name "${base}", expected CHECKSUM.TREESERIAL`);
  }
  const expected = `ostree/deploy/${stateroot}/deploy/${base}`;
  if (dir !== expected) {
    throw new SysrootError(
      what,
      `resolves to ${sysrootPath}/${dir}, expected ${sysrootPath}/${expected}`,
    );
  }
  let st;
  try {
    st = statAt(sysfd, dir);
  } catch (e) {
    if (isErrno(e, "ENOENT")) {
      throw new SysrootError(what, `deployment ${sysrootPath}/${dir} does not exist`);
    }
    throw e;
  }
  if ((st.mode & S.IFMT) !== S.IFDIR) {
    throw new SysrootError(what, `${sysrootPath}/${dir} is not a directory`);
  }
  const originText = tryReadText(sysfd, `${dir}.origin`);
  const origin = originText === null
    ? null
    : KeyFile.parse(originText, `${sysrootPath}/${dir}.origin`);
  return {
    stateroot,
    checksum: m[1],
    serial: Number(m[2]),
    index: -1,
    deployPath: dir,
    originRefspec: origin?.getString("origin", "refspec"),
    containerImageReference: origin?.getString("origin", "container-image-reference"),
    pinned: origin?.getBoolean("libostree-transient", "pinned") ?? false,
    unlocked: origin?.getString("origin", "unlocked"),
    origin,
    booted: false,
    staged: false,
    dev: st.dev,
    ino: st.ino,
  };
}

function stagedDeployment(
  sysfd: number,
  sysrootPath: string,
  bytes: Uint8Array,
  path: string,
): Deployment {
  let dict: VariantDictEntry[];
  try {
    dict = asVariantDict(deserialize("a{sv}", bytes), path);
  } catch (e) {
    throw new SysrootError(path, `not a GVariant a{sv}: ${(e as Error).message}`);
  }
  const target = lookupVariant(dict, "target");
  if (!target || target.type !== "a{sv}") throw new SysrootError(path, "missing key: target");
  const t = asVariantDict(target.value, `${path} target`);
  const str = (k: string) => {
    const v = lookupVariant(t, k);
    if (!v || v.type !== "s") throw new SysrootError(path, `missing key: target.${k}`);
    return v.value as string;
  };
  const name = str("name");
  const osname = str("osname");
  const bootcsum = str("bootcsum");
  const d = deploymentAt(
    sysfd,
    sysrootPath,
    `ostree/deploy/${osname}/deploy/${name}`,
    osname,
    path,
  );
  d.bootcsum = bootcsum;
  d.staged = true;
  return d;
}
