/**
 * fs-verity ioctls: enable verity on a file and measure its digest.
 *
 * Layouts: specs/composefs-repo.md §3.4. Kernels built without
 * CONFIG_FS_VERITY answer EOPNOTSUPP (ext4, btrfs) or ENOTTY (XFS).
 *
 * @module
 */

import { Errno, SysError } from "./errno.ts";
import { check, errno, libc } from "./libc.ts";

const FS_IOC_ENABLE_VERITY = 0x40806685n;
const FS_IOC_MEASURE_VERITY = 0xc0046686n;

/** Kernel hash algorithm ids (FS_VERITY_HASH_ALG_*): part of the digest descriptor. */
export const VERITY_ALG = { sha256: 1, sha512: 2 } as const;

/** Enables fs-verity (4096-byte blocks, no salt) on a file opened read-only. */
export function enableVerity(fd: number, alg: keyof typeof VERITY_ALG, what?: string): void {
  // struct fsverity_enable_arg, 128 bytes.
  const buf = new Uint8Array(128);
  const v = new DataView(buf.buffer);
  v.setUint32(0, 1, true); // version
  v.setUint32(4, VERITY_ALG[alg], true);
  v.setUint32(8, 4096, true); // block size: composefs accepts only 4096
  check(
    libc.ioctl_ptr(fd, FS_IOC_ENABLE_VERITY, buf),
    errno[0],
    "ioctl(FS_IOC_ENABLE_VERITY)",
    what,
  );
}

/** The kernel's fs-verity digest of a file, or `null` when verity is not enabled on it. */
export function measureVerity(fd: number, what?: string): Uint8Array | null {
  const buf = new Uint8Array(4 + 64);
  const v = new DataView(buf.buffer);
  v.setUint16(2, 64, true);
  const rc = libc.ioctl_ptr(fd, FS_IOC_MEASURE_VERITY, buf);
  const err = errno[0];
  if (rc < 0) {
    if (err === Errno.ENODATA) return null;
    throw new SysError("ioctl(FS_IOC_MEASURE_VERITY)", err, what);
  }
  return buf.slice(4, 4 + v.getUint16(2, true));
}
