/**
 * Disk usage of the host's image stores: the bytes each store's files hold
 * (logical), the blocks they occupy (physical), and how many of those blocks
 * the stores share with each other, from FIEMAP.
 *
 * `du` and `df` cannot tell this: `du` counts every clone in full and `df`
 * sees the whole filesystem. FIEMAP gives each file's physical extents; the
 * union of a store's extents is what it occupies, and the intersection of two
 * stores' unions is what they share.
 *
 * @module
 */

import { SysError } from "../../ffi/errno.ts";
import { fiemap, FIEMAP_EXTENT } from "../../ffi/extents.ts";
import { closeQuietly, DT, fstat, O, openAt, openDir, openDirAt, readDir } from "../../ffi/fs.ts";
import type { HostRoot } from "./root.ts";

/** A store whose usage is measured. */
export interface StoreLocation {
  name: "ostree" | "composefs" | "containers-storage";
  /** Directory holding the store's file data. */
  path: string;
}

/** Usage of one store. */
export interface StoreUsage {
  name: StoreLocation["name"];
  path: string;
  present: boolean;
  /** Regular files (distinct inodes). */
  files: number;
  /** Sum of file sizes. */
  logicalBytes: number;
  /** Bytes of the blocks the store's files occupy (shared blocks counted once). */
  physicalBytes: number;
  /** Of `physicalBytes`, bytes also occupied by another store's files. */
  sharedWithOtherStores: number;
}

/** Usage of all stores together. */
export interface DiskUsage {
  stores: StoreUsage[];
  logicalBytes: number;
  /** Bytes of the union of all stores' blocks. */
  physicalBytes: number;
  /** What separate copies would take beyond what the blocks take: logical − physical. */
  savedBytes: number;
}

/** Half-open physical ranges [start, end), sorted and merged. */
type Ranges = Array<[number, number]>;

function mergeRanges(ranges: Ranges): Ranges {
  ranges.sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [s, e] of ranges) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

function rangesBytes(r: Ranges): number {
  let n = 0;
  for (const [s, e] of r) n += e - s;
  return n;
}

function intersect(a: Ranges, b: Ranges): Ranges {
  const out: Ranges = [];
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i][0], b[j][0]);
    const e = Math.min(a[i][1], b[j][1]);
    if (s < e) out.push([s, e]);
    if (a[i][1] < b[j][1]) i++;
    else j++;
  }
  return out;
}

interface Scan {
  files: number;
  logical: number;
  ranges: Ranges;
  /** Inline or unlocatable data: occupies space but cannot be shared by extent. */
  unlocated: number;
}

/** Walks `path`, counting each inode once, collecting the physical extents of its files. */
function scanStore(path: string): Scan | null {
  let root: number;
  try {
    root = openDir(path);
  } catch (e) {
    if (e instanceof SysError && e.is("ENOENT")) return null;
    throw e;
  }
  const scan: Scan = { files: 0, logical: 0, ranges: [], unlocated: 0 };
  const seen = new Set<string>();
  const walk = (dir: number) => {
    for (const entry of readDir(dir)) {
      if (entry.type === DT.DIR) {
        const child = openDirAt(dir, entry.nameBytes);
        try {
          walk(child);
        } finally {
          closeQuietly(child);
        }
      } else if (entry.type === DT.REG) {
        const fd = openAt(dir, entry.nameBytes, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
        try {
          const st = fstat(fd);
          const key = `${st.dev}:${st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
          scan.files++;
          scan.logical += st.size;
          for (const e of fiemap(fd, entry.name)) {
            const inline = (e.flags & (FIEMAP_EXTENT.DATA_INLINE | FIEMAP_EXTENT.UNKNOWN)) !== 0;
            if (inline || e.physical === 0) scan.unlocated += e.length;
            else scan.ranges.push([e.physical, e.physical + e.length]);
          }
        } finally {
          closeQuietly(fd);
        }
      }
    }
  };
  try {
    walk(root);
  } finally {
    closeQuietly(root);
  }
  scan.ranges = mergeRanges(scan.ranges);
  return scan;
}

/** Where the host's stores keep their file data. */
export function storeLocations(root: HostRoot): StoreLocation[] {
  const cstorage = root.bootcContainersStorage();
  return [
    { name: "ostree", path: `${root.ostreeRepo}/objects` },
    { name: "composefs", path: `${root.composefsRepo}/objects` },
    { name: "containers-storage", path: `${cstorage}/overlay` },
  ];
}

/**
 * Measures the given stores (by default the host's three).
 *
 * @example
 * ```ts ignore
 * const du = measureDiskUsage(new HostRoot("/"));
 * console.log(`saved ${du.savedBytes} bytes by sharing`);
 * ```
 */
export function measureDiskUsage(root: HostRoot, locations = storeLocations(root)): DiskUsage {
  const scans = locations.map((l) => scanStore(l.path));
  const stores: StoreUsage[] = locations.map((l, i) => {
    const s = scans[i];
    if (!s) {
      return {
        name: l.name,
        path: l.path,
        present: false,
        files: 0,
        logicalBytes: 0,
        physicalBytes: 0,
        sharedWithOtherStores: 0,
      };
    }
    const others = mergeRanges(
      scans.flatMap((
        o,
        j,
      ) => (j !== i && o ? o.ranges.map(([a, b]) => [a, b] as [number, number]) : [])),
    );
    return {
      name: l.name,
      path: l.path,
      present: true,
      files: s.files,
      logicalBytes: s.logical,
      physicalBytes: rangesBytes(s.ranges) + s.unlocated,
      sharedWithOtherStores: rangesBytes(intersect(s.ranges, others)),
    };
  });
  const all = mergeRanges(
    scans.flatMap((s) => s ? s.ranges.map(([a, b]) => [a, b] as [number, number]) : []),
  );
  const logicalBytes = stores.reduce((n, s) => n + s.logicalBytes, 0);
  const physicalBytes = rangesBytes(all) + scans.reduce((n, s) => n + (s?.unlocated ?? 0), 0);
  return {
    stores,
    logicalBytes,
    physicalBytes,
    savedBytes: Math.max(0, logicalBytes - physicalBytes),
  };
}
