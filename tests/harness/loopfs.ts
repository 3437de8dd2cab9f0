/**
 * Real filesystems for integration tests: sparse image files, formatted as XFS (with reflink),
 * btrfs or ext4, loop-mounted in a private temp directory and always torn down again.
 *
 * Why real filesystems: FICLONE, FIDEDUPERANGE, FIEMAP SHARED flags, copy_file_range and the
 * EXDEV / EOPNOTSUPP fallbacks behave differently per filesystem (specs/deno-platform.md §5);
 * tmpfs or the host's root filesystem cannot exercise them.
 *
 * ```ts
 * fsTest("clone keeps content", ["xfs", "btrfs"], async (fs) => {
 *   await Deno.writeTextFile(`${fs.mountpoint}/a`, "x");
 * });
 * ```
 *
 * @module
 */

import { CommandError, run, runOk } from "./run.ts";
import { findTool, isCi, requireRoot, requireTool, skippableTest } from "./tools.ts";
import type { SkippableTestOptions } from "./tools.ts";

/** Filesystems the harness can create. */
export type FsKind = "xfs" | "btrfs" | "ext4";

/** Every {@link FsKind}, for tests that should run on all of them. */
export const ALL_FS_KINDS: readonly FsKind[] = ["xfs", "btrfs", "ext4"];

/** Options for {@link createLoopFs}. */
export interface LoopFsOptions {
  /**
   * Size of the (sparse) image in MiB; default 512. The image only takes the disk space that is
   * written. Minimum for XFS is 301 (xfsprogs >= 5.19 refuses smaller), for btrfs about 114.
   */
  sizeMiB?: number;
}

/** A mounted loop filesystem; `await using fs = await createLoopFs("xfs")` unmounts it. */
export interface LoopFs extends AsyncDisposable {
  /** The filesystem type. */
  readonly kind: FsKind;
  /** Where the filesystem is mounted (canonical path, no symlinks); empty and owned by root. */
  readonly mountpoint: string;
  /** The image file backing the loop device. */
  readonly image: string;
  /** The private temp directory holding `image` and `mountpoint`; removed by close(). */
  readonly dir: string;
  /** The loop device, e.g. `/dev/loop3`. */
  readonly device: string;
  /**
   * Unmounts (with retries on EBUSY, lazily as a last resort), detaches the loop device and
   * removes `dir`. Idempotent. Throws if any of that could not be done cleanly; everything that
   * could be cleaned up has been by then.
   */
  close(): Promise<void>;
}

/** createLoopFs could not build the filesystem (tools, kernel, loop devices): not a test bug. */
export class LoopFsSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LoopFsSetupError";
  }
}

const DEFAULT_SIZE_MIB = 512;
const MIN_SIZE_MIB: Record<FsKind, number> = { xfs: 301, btrfs: 114, ext4: 8 };

// Format commands. XFS: reflink=1 is the default since xfsprogs 5.1, but spelled out because
// the reflink tests depend on it. -f/-F: format a regular file without asking.
const MKFS: Record<FsKind, { bin: string; pkg: string; args: string[] }> = {
  xfs: { bin: "mkfs.xfs", pkg: "xfsprogs", args: ["-q", "-f", "-m", "reflink=1"] },
  btrfs: { bin: "mkfs.btrfs", pkg: "btrfs-progs", args: ["-q", "-f"] },
  ext4: { bin: "mkfs.ext4", pkg: "e2fsprogs", args: ["-q", "-F"] },
};

// mount, umount and losetup come from the Debian package "mount" (split out of util-linux).
const MOUNT_TOOLS = [
  { bin: "mount", pkg: "mount" },
  { bin: "umount", pkg: "mount" },
  { bin: "losetup", pkg: "mount" },
];

const skipReasons = new Map<FsKind, string | null>();

/**
 * Why loop-mounted `kind` filesystems cannot be created here, or null when they can: needs root,
 * `mount`/`umount`/`losetup`, the matching mkfs, `/dev/loop-control`, and kernel support for the
 * filesystem when that can be told. Synchronous (usable while registering tests) and cached.
 */
export function loopFsSkipReason(kind: FsKind): string | null {
  if (!skipReasons.has(kind)) skipReasons.set(kind, computeSkipReason(kind));
  return skipReasons.get(kind)!;
}

function computeSkipReason(kind: FsKind): string | null {
  const reasons: string[] = [];
  const root = requireRoot();
  if (root !== null) reasons.push(`${root} (loop mounts need root)`);
  for (const t of [...MOUNT_TOOLS, MKFS[kind]]) {
    const r = requireTool(t.bin, t.pkg);
    if (r !== null) reasons.push(r);
  }
  if (!exists("/dev/loop-control")) {
    reasons.push("/dev/loop-control missing (no loop device support; try modprobe loop)");
  }
  const kernel = kernelSupportReason(kind);
  if (kernel !== null) reasons.push(kernel);
  return reasons.length === 0 ? null : `${kind}: ${reasons.join("; ")}`;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The kernel cannot mount `kind` when it is neither registered (/proc/filesystems) nor available
 * as a module. Only reported when /lib/modules/<release> exists: in containers it often does
 * not, and then only the mount attempt can tell.
 */
function kernelSupportReason(kind: FsKind): string | null {
  try {
    const fss = Deno.readTextFileSync("/proc/filesystems");
    if (fss.split("\n").some((l) => l.split("\t").pop() === kind)) return null;
    const modDir = `/lib/modules/${Deno.osRelease()}`;
    if (!exists(modDir)) return null;
    const ko = new RegExp(`(^|/)fs/${kind}/${kind}\\.ko`, "m");
    for (const f of ["modules.builtin", "modules.dep"]) {
      try {
        if (ko.test(Deno.readTextFileSync(`${modDir}/${f}`))) return null;
      } catch { /* file absent: keep looking */ }
    }
    return `kernel ${Deno.osRelease()} has no ${kind} support (not in /proc/filesystems, no module)`;
  } catch {
    return null; // cannot tell; let the mount attempt decide
  }
}

/**
 * Directory for the temp dirs holding images. /var/tmp, not /tmp: /tmp is often a tmpfs
 * (RAM), and written image blocks would then eat memory. UNISTORE_LOOPFS_DIR overrides.
 */
function imageBaseDir(): string | undefined {
  const override = Deno.env.get("UNISTORE_LOOPFS_DIR");
  if (override) return override;
  try {
    if (Deno.statSync("/var/tmp").isDirectory) return "/var/tmp";
  } catch { /* fall back to Deno's default temp dir */ }
  return undefined;
}

function tool(bin: string): string {
  const path = findTool(bin);
  if (path === null) throw new LoopFsSetupError(`${bin} not found`);
  return path;
}

/** Mount points as listed in /proc/self/mounts (octal escapes such as \040 decoded). */
async function mountEntries(): Promise<{ source: string; target: string; type: string }[]> {
  const text = await Deno.readTextFile("/proc/self/mounts");
  const unescape = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text.split("\n").filter((l) => l !== "").map((l) => {
    const [source, target, type] = l.split(" ");
    return { source: unescape(source), target: unescape(target), type };
  });
}

/** True when something is mounted exactly at `path` (a canonical path). */
export async function isMounted(path: string): Promise<boolean> {
  return (await mountEntries()).some((m) => m.target === path);
}

/** Loop devices currently backed by `image` (`losetup -j`), e.g. `["/dev/loop3"]`. */
export async function loopDevicesFor(image: string): Promise<string[]> {
  const r = await runOk([tool("losetup"), "-j", image]);
  // Lines look like "/dev/loop3: [2049]:1234 (/var/tmp/x/xfs.img)".
  return r.stdout.split("\n").map((l) => /^(\/dev\/loop\d+):/.exec(l)?.[1])
    .filter((d): d is string => d !== undefined);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Creates a sparse image of `kind` in a fresh temp dir, formats it and loop-mounts it.
 * Throws {@link LoopFsSetupError} (after cleaning up) when that is impossible.
 */
export async function createLoopFs(kind: FsKind, opts: LoopFsOptions = {}): Promise<LoopFs> {
  const reason = loopFsSkipReason(kind);
  if (reason !== null) throw new LoopFsSetupError(reason);
  const sizeMiB = opts.sizeMiB ?? DEFAULT_SIZE_MIB;
  if (!(Number.isInteger(sizeMiB) && sizeMiB >= MIN_SIZE_MIB[kind])) {
    throw new RangeError(`${kind} image needs sizeMiB >= ${MIN_SIZE_MIB[kind]}, got ${sizeMiB}`);
  }
  // realPath: /proc/self/mounts lists canonical paths, and we compare against them.
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ dir: imageBaseDir(), prefix: `unistore-${kind}-` }),
  );
  const image = `${dir}/${kind}.img`;
  const mountpoint = `${dir}/mnt`;
  try {
    // Sparse: ftruncate only sets the size, so a 512 MiB image costs nothing until written.
    const f = await Deno.open(image, { write: true, createNew: true });
    try {
      await f.truncate(sizeMiB * 1024 * 1024);
    } finally {
      f.close();
    }
    const mkfs = MKFS[kind];
    await runOk([tool(mkfs.bin), ...mkfs.args, image]);
    await Deno.mkdir(mountpoint);
    // -o loop: mount allocates a free loop device itself and sets LO_FLAGS_AUTOCLEAR, so the
    // device detaches on umount; -t: no guessing by content.
    await runOk([tool("mount"), "-t", kind, "-o", "loop", image, mountpoint]);
  } catch (e) {
    // Undo whatever half-happened; the original error is the one worth reporting.
    await teardown(dir, image, mountpoint).catch(() => {});
    if (e instanceof CommandError) {
      throw new LoopFsSetupError(`cannot create ${kind} loop filesystem: ${e.message}`, {
        cause: e,
      });
    }
    throw e;
  }
  const entry = (await mountEntries()).findLast((m) => m.target === mountpoint);
  const device = entry?.source ?? (await loopDevicesFor(image))[0] ?? "";
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= teardown(dir, image, mountpoint));
  return { kind, mountpoint, image, dir, device, close, [Symbol.asyncDispose]: close };
}

/** Unmount, detach, remove: each step only when needed, so it also undoes a partial setup. */
async function teardown(dir: string, image: string, mountpoint: string): Promise<void> {
  const problems: string[] = [];

  // 1. Unmount. -R also takes down anything a test mounted below (overlays, bind mounts),
  //    which would otherwise keep the mountpoint busy. EBUSY right after a child process exits
  //    is usually transient, hence retries with growing sleeps (~1.5 s in total).
  for (let attempt = 0; attempt < 5 && await isMounted(mountpoint); attempt++) {
    if (attempt > 0) await sleep(100 * 2 ** (attempt - 1));
    await run([tool("umount"), "-R", mountpoint]);
  }
  if (await isMounted(mountpoint)) {
    // Last resort: detach from the namespace now; the kernel finishes when the last user (open
    // fd, cwd, child process) goes away. Still reported as a problem: that user is a leak.
    const r = await run([tool("umount"), "-R", "-l", mountpoint]);
    problems.push(
      `${mountpoint} stayed busy (an open file or a process inside it?); lazy unmount ` +
        (r.success ? "done" : `failed: ${r.stderr.trim()}`),
    );
  }
  // Never rm -r a directory with a filesystem still mounted anywhere inside it.
  const left = (await mountEntries()).filter((m) => m.target.startsWith(`${dir}/`));
  if (left.length > 0) {
    problems.push(`still mounted: ${left.map((m) => m.target).join(", ")}; ${dir} left alone`);
    throw new Error(`loop filesystem teardown: ${problems.join("; ")}`);
  }

  // 2. Detach the loop device. Autoclear normally did it already; after a lazy unmount or when
  //    mount failed half-way it may still be attached. losetup -d on a still-busy device makes
  //    the kernel detach it on last close.
  if (exists(image)) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const devices = await loopDevicesFor(image);
      if (devices.length === 0) break;
      if (attempt === 4) {
        problems.push(`loop device(s) ${devices.join(", ")} still attached to ${image}`);
        break;
      }
      for (const dev of devices) await run([tool("losetup"), "-d", dev]);
      await sleep(50 * 2 ** attempt);
    }
  }

  // 3. Remove the temp dir (image and empty mountpoint). An image still attached to a loop
  //    device may be unlinked safely: the kernel holds its own reference.
  await Deno.remove(dir, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) problems.push(`cannot remove ${dir}: ${e}`);
  });

  if (problems.length > 0) throw new Error(`loop filesystem teardown: ${problems.join("; ")}`);
}

/**
 * Runs `fn` on a fresh loop filesystem and always tears it down, also when `fn` throws (then
 * `fn`'s error is thrown; a teardown failure on top arrives as a SuppressedError).
 */
export async function withLoopFs<T>(
  kind: FsKind,
  fn: (fs: LoopFs) => Promise<T>,
  opts: LoopFsOptions = {},
): Promise<T> {
  await using fs = await createLoopFs(kind, opts);
  return await fn(fs);
}

/** Options for {@link fsTest}: image options plus `Deno.test` sanitizer options. */
export interface FsTestOptions extends LoopFsOptions, SkippableTestOptions {}

/**
 * Registers one `Deno.test` per kind, named `${name} [${kind}]`, running `fn` on a fresh loop
 * filesystem of that kind. When the prerequisites are missing ({@link loopFsSkipReason}): with
 * `CI=true` the test fails with the reason, elsewhere it is ignored and the reason printed once.
 * Outside CI a mount that fails at run time (e.g. no free loop device in a container) is also
 * reported as `skip: ...` and the test returns, as DESIGN.md §5 asks ("a clearly printed skip").
 */
export function fsTest(
  name: string,
  kinds: readonly FsKind[],
  fn: (fs: LoopFs) => Promise<void>,
  opts: FsTestOptions = {},
): void {
  for (const kind of kinds) {
    const testName = `${name} [${kind}]`;
    skippableTest(testName, loopFsSkipReason(kind), async () => {
      let fs: LoopFs;
      try {
        fs = await createLoopFs(kind, opts);
      } catch (e) {
        if (e instanceof LoopFsSetupError && !isCi()) {
          console.error(`skip: ${testName}: ${e.message}`);
          return;
        }
        throw e;
      }
      await using _ = fs;
      await fn(fs);
    }, opts);
  }
}
