/**
 * Sharing and copying file data: FICLONE, FICLONERANGE, FIDEDUPERANGE and
 * copy_file_range.
 *
 * Struct layouts and ioctl numbers: specs/deno-platform.md §4.2.
 *
 * @module
 */

import { Errno, SysError } from "./errno.ts";
import { check, errno, libc } from "./libc.ts";

// ioctl numbers encode the argument size and direction; a wrong value makes the
// kernel reject the call with ENOTTY or, worse, read the wrong struct.
const FICLONE = 0x40049409n;
const FICLONERANGE = 0x4020940dn;
const FIDEDUPERANGE = 0xc0189436n;

/**
 * Makes `dstFd` share all of `srcFd`'s data (replacing what `dstFd` held).
 * Issued on the destination, which must be open for writing.
 *
 * @example
 * ```ts ignore
 * ficlone(tmpFd, srcFd); // throws SysError EOPNOTSUPP on ext4, EXDEV across filesystems
 * ```
 */
export function ficlone(dstFd: number, srcFd: number, what?: string): void {
  check(libc.ioctl_int(dstFd, FICLONE, BigInt(srcFd)), errno[0], "ioctl(FICLONE)", what);
}

/** Shares `length` bytes (0 = to end of file) of `srcFd` at `srcOffset` into `dstFd` at `dstOffset`. */
export function ficloneRange(
  dstFd: number,
  srcFd: number,
  srcOffset: number,
  length: number,
  dstOffset: number,
  what?: string,
): void {
  // struct file_clone_range: s64 src_fd, u64 src_offset, u64 src_length, u64 dest_offset.
  const arg = new BigInt64Array([
    BigInt(srcFd),
    BigInt(srcOffset),
    BigInt(length),
    BigInt(dstOffset),
  ]);
  check(libc.ioctl_ptr(dstFd, FICLONERANGE, arg), errno[0], "ioctl(FICLONERANGE)", what);
}

/** The kernel's verdict for one destination of a dedupe call. */
export interface DedupeResult {
  /** Bytes now shared with the source. */
  bytesDeduped: number;
  /** `same` when shared, `differs` when the bytes were not equal. */
  status: "same" | "differs";
}

/** FIDEDUPERANGE status values (struct file_dedupe_range_info.status). */
const DEDUPE_SAME = 0;
const DEDUPE_DIFFERS = 1;

/**
 * Asks the kernel to share `length` bytes at `srcOffset` of `srcFd` with
 * `dstFd` at `dstOffset`, only if the bytes are equal. Issued on the source.
 * One call; callers chunk large files (see lib/reflink/dedupe.ts).
 */
export function fidedupeRange(
  srcFd: number,
  srcOffset: number,
  length: number,
  dstFd: number,
  dstOffset: number,
  what?: string,
): DedupeResult {
  // struct file_dedupe_range (24 B) + one struct file_dedupe_range_info (32 B).
  const buf = new Uint8Array(24 + 32);
  const v = new DataView(buf.buffer);
  v.setBigUint64(0, BigInt(srcOffset), true);
  v.setBigUint64(8, BigInt(length), true);
  v.setUint16(16, 1, true);
  v.setBigInt64(24, BigInt(dstFd), true);
  v.setBigUint64(32, BigInt(dstOffset), true);
  check(libc.ioctl_ptr(srcFd, FIDEDUPERANGE, buf), errno[0], "ioctl(FIDEDUPERANGE)", what);
  const status = v.getInt32(48, true);
  if (status < 0) throw new SysError("ioctl(FIDEDUPERANGE)", -status, what);
  if (status !== DEDUPE_SAME && status !== DEDUPE_DIFFERS) {
    throw new Error(`ioctl(FIDEDUPERANGE) ${what ?? ""}: unexpected status ${status}`);
  }
  return {
    bytesDeduped: Number(v.getBigUint64(40, true)),
    status: status === DEDUPE_SAME ? "same" : "differs",
  };
}

/**
 * copy_file_range(2) of up to `length` bytes from `srcOffset` in `srcFd` to `dstOffset` in
 * `dstFd`; returns the bytes copied (0 at the end of the source). Explicit offsets leave both
 * file positions alone, so two threads may copy from one open source at once. On XFS and
 * btrfs the kernel shares extents instead of copying.
 */
export function copyFileRange(
  srcFd: number,
  srcOffset: number,
  dstFd: number,
  dstOffset: number,
  length: number,
  what?: string,
): number {
  // The loff_t values the kernel reads and advances.
  const offIn = new BigInt64Array([BigInt(srcOffset)]);
  const offOut = new BigInt64Array([BigInt(dstOffset)]);
  for (;;) {
    const rc = libc.copy_file_range(srcFd, offIn, dstFd, offOut, BigInt(length), 0);
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return n;
    if (err !== Errno.EINTR) throw new SysError("copy_file_range", err, what);
  }
}
