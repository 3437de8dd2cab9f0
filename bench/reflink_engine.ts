/**
 * unistore's reflink engine (lib/reflink/tree.ts, run by bench/clone_tree.ts) against
 * `cp -a --reflink=always` on the same trees, on a loop XFS (reflink=1) created for the run
 * (issue 2).
 *
 * Trees: 10,000 × 4 KiB files (100 directories of 100) and 100 × 10 MiB files.
 * Each run times the whole process (Deno start-up included) and alternates the
 * tools; between runs the copy is removed, the filesystem synced and left to
 * settle, because XFS's background inode work after a large `rm` otherwise
 * lands on the next run (specs/deno-platform.md §6). Results are medians,
 * reported as ratios (unistore / cp): the machine's absolute speed cancels out.
 *
 * @module
 */

import { AT, close, mkdirAt, O, openAt, openDir, writeAll } from "../ffi/fs.ts";
import { createLoopFs } from "../tests/harness/loopfs.ts";
import { runOk } from "../tests/harness/run.ts";
import { median } from "./measure.ts";

const CLONE_SCRIPT = new URL("./clone_tree.ts", import.meta.url).pathname;

/** One tree's medians. */
export interface TreeResult {
  tree: string;
  files: number;
  cpMs: number;
  unistoreMs: number;
  unistoreInProcessMs: number;
  ratio: number;
  inProcessRatio: number;
}

function writeTree(root: string, dirs: number, filesPerDir: number, size: number): void {
  mkdirAt(AT.FDCWD, root, 0o755);
  const data = new Uint8Array(size);
  crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
  for (let i = size > 65536 ? 65536 : size; i < size; i += 65536) {
    data.copyWithin(i, 0, Math.min(65536, size - i));
  }
  const rootFd = openDir(root);
  try {
    for (let d = 0; d < dirs; d++) {
      mkdirAt(rootFd, `d${d}`, 0o755);
      const dir = openAt(rootFd, `d${d}`, O.RDONLY | O.DIRECTORY);
      try {
        for (let f = 0; f < filesPerDir; f++) {
          // Distinct first bytes per file so no two files are equal.
          data[0] = f & 0xff;
          data[1] = d & 0xff;
          const fd = openAt(dir, `f${f}`, O.CREAT | O.EXCL | O.WRONLY, 0o644);
          try {
            writeAll(fd, data);
          } finally {
            close(fd);
          }
        }
      } finally {
        close(dir);
      }
    }
  } finally {
    close(rootFd);
  }
}

async function settleAfterRemove(mountpoint: string, target: string) {
  await Deno.remove(target, { recursive: true }).catch(() => {});
  await runOk(["sync", "-f", mountpoint]);
  await new Promise((r) => setTimeout(r, 1500));
}

async function timed(cmd: string[]): Promise<{ ms: number; stdout: string }> {
  const start = performance.now();
  const r = await runOk(cmd);
  return { ms: performance.now() - start, stdout: r.stdout };
}

async function benchTree(
  mnt: string,
  name: string,
  dirs: number,
  perDir: number,
  size: number,
  runs: number,
): Promise<TreeResult> {
  const src = `${mnt}/${name}`;
  writeTree(src, dirs, perDir, size);
  await runOk(["sync", "-f", mnt]);
  const cp: number[] = [], uni: number[] = [], inProc: number[] = [];
  // One warm-up of each, untimed: page cache and Deno's module cache.
  for (let run = -1; run < runs; run++) {
    const dst = `${mnt}/${name}.copy`;
    await settleAfterRemove(mnt, dst);
    const c = await timed(["cp", "-a", "--reflink=always", src, dst]);
    await settleAfterRemove(mnt, dst);
    const u = await timed([Deno.execPath(), "run", "-A", "--quiet", CLONE_SCRIPT, src, dst]);
    const reported = JSON.parse(u.stdout.trim().split("\n").pop()!);
    if (reported.files !== dirs * perDir || reported.methods.reflink !== dirs * perDir) {
      throw new Error(`clone_tree placed ${reported.files} files, expected ${dirs * perDir}`);
    }
    if (run >= 0) {
      cp.push(c.ms);
      uni.push(u.ms);
      inProc.push(reported.inProcessMs);
    }
  }
  await settleAfterRemove(mnt, `${mnt}/${name}.copy`);
  return {
    tree: name,
    files: dirs * perDir,
    cpMs: Math.round(median(cp)),
    unistoreMs: Math.round(median(uni)),
    unistoreInProcessMs: Math.round(median(inProc)),
    ratio: Number((median(uni) / median(cp)).toFixed(2)),
    inProcessRatio: Number((median(inProc) / median(cp)).toFixed(2)),
  };
}

/** Runs both trees `runs` times each (plus a warm-up) on a fresh 4 GiB loop XFS. */
export async function benchReflinkEngine(runs: number): Promise<TreeResult[]> {
  await using fs = await createLoopFs("xfs", { sizeMiB: 4096 });
  return [
    await benchTree(fs.mountpoint, "10000x4KiB", 100, 100, 4096, runs),
    await benchTree(fs.mountpoint, "100x10MiB", 10, 10, 10 * 1024 * 1024, runs),
  ];
}
