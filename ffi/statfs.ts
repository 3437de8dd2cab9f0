/**
 * fstatfs(2): which filesystem a file lives on and how full it is.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";

/** f_type magic numbers of the filesystems unistore meets. */
export const FS_MAGIC = {
  ext4: 0xef53,
  xfs: 0x58465342,
  btrfs: 0x9123683e,
  tmpfs: 0x01021994,
  overlayfs: 0x794c7630,
  erofs: 0xe0f5e1e2,
  squashfs: 0x73717368,
} as const;

/** What fstatfs tells. Sizes are in bytes. */
export interface FsStat {
  /** f_type magic number. */
  type: number;
  /** The filesystem's name for known magics, else the magic in hex. */
  typeName: string;
  blockSize: number;
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
}

/** fstatfs(2) of an open fd. */
export function fstatfs(fd: number): FsStat {
  // struct statfs, 120 bytes, all fields 8 bytes wide on 64-bit Linux.
  const buf = new BigInt64Array(15);
  check(libc.fstatfs(fd, buf), errno[0], "fstatfs", `fd ${fd}`);
  const type = Number(BigInt.asUintN(32, buf[0]));
  const bsize = Number(buf[1]);
  const name = Object.entries(FS_MAGIC).find(([, m]) => m === type)?.[0];
  return {
    type,
    typeName: name ?? `0x${type.toString(16)}`,
    blockSize: bsize,
    totalBytes: Number(buf[2]) * bsize,
    freeBytes: Number(buf[3]) * bsize,
    availableBytes: Number(buf[4]) * bsize,
  };
}
