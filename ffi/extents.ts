/**
 * FS_IOC_FIEMAP: which physical extents hold a file, and which are shared.
 *
 * Layouts: specs/deno-platform.md §4.2.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";

const FS_IOC_FIEMAP = 0xc020660bn;
/** Flush dirty data first, so delayed allocations show as real extents. */
const FIEMAP_FLAG_SYNC = 0x1;
const EXTENTS_PER_CALL = 256;
// struct fiemap header (32 B) and struct fiemap_extent (56 B): the kernel
// writes extents at these offsets; other sizes would misread every field.
const HEADER = 32;
const EXTENT = 56;

/** fiemap_extent flags. */
export const FIEMAP_EXTENT = {
  LAST: 0x1,
  UNKNOWN: 0x2,
  DELALLOC: 0x4,
  ENCODED: 0x8,
  DATA_INLINE: 0x200,
  UNWRITTEN: 0x800,
  SHARED: 0x2000,
} as const;

/** One extent of a file. */
export interface Extent {
  logical: number;
  physical: number;
  length: number;
  flags: number;
  /** The extent's blocks are also referenced by another file (reflink or dedupe). */
  shared: boolean;
}

// One request buffer per thread (each isolate has its own module instance), reused: the import
// asks FIEMAP for tens of thousands of files, and a fresh 14 KiB buffer each time was garbage
// V8 collected too late.
const fiemapBuf = new Uint8Array(HEADER + EXTENT * EXTENTS_PER_CALL);
const fiemapView = new DataView(fiemapBuf.buffer);

/** All extents of an open file, in logical order. */
export function fiemap(fd: number, what?: string): Extent[] {
  const out: Extent[] = [];
  let start = 0n;
  const buf = fiemapBuf, v = fiemapView;
  for (;;) {
    buf.fill(0);
    v.setBigUint64(0, start, true);
    v.setBigUint64(8, 0xffffffffffffffffn - start, true);
    v.setUint32(16, FIEMAP_FLAG_SYNC, true);
    v.setUint32(24, EXTENTS_PER_CALL, true);
    check(libc.ioctl_ptr(fd, FS_IOC_FIEMAP, buf), errno[0], "ioctl(FS_IOC_FIEMAP)", what);
    const mapped = v.getUint32(20, true);
    if (mapped === 0) return out;
    let last = false;
    for (let i = 0; i < mapped; i++) {
      const at = HEADER + EXTENT * i;
      const flags = v.getUint32(at + 40, true);
      const e: Extent = {
        logical: Number(v.getBigUint64(at, true)),
        physical: Number(v.getBigUint64(at + 8, true)),
        length: Number(v.getBigUint64(at + 16, true)),
        flags,
        shared: (flags & FIEMAP_EXTENT.SHARED) !== 0,
      };
      out.push(e);
      if (flags & FIEMAP_EXTENT.LAST) last = true;
    }
    if (last) return out;
    const tail = out[out.length - 1];
    start = BigInt(tail.logical + tail.length);
  }
}
