/**
 * Helpers of the pipeline tests: feeding raw layer tars to a MergedTree, the GNU tar oracle
 * (layers extracted in order with OCI whiteouts applied by hand, not by the code under test),
 * and tree comparisons (content, owner, mode, xattrs, symlinks, hardlink groups, shared
 * extents).
 *
 * @module
 */

import { fiemap } from "../../ffi/extents.ts";
import {
  close,
  closeQuietly,
  DT,
  O,
  openAt,
  openDir,
  openDirAt,
  readDir,
  S,
  statAt,
} from "../../ffi/fs.ts";
import { TarReader } from "../../lib/oci/tar.ts";
import type { LayerEntry } from "../../lib/pipeline/layer_entries.ts";
import { MergedTree } from "../../lib/pipeline/merged_tree.ts";
import { runOk } from "../harness/run.ts";

/** The Debian packages the pipeline tests judge with. */
export const TAR_TOOL = { bin: "tar", pkg: "tar" } as const;
export const OSTREE_TOOL = { bin: "ostree", pkg: "ostree" } as const;

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** The entries of a raw layer tar, every regular file's payload inline (any size). */
export async function* rawTarEntries(tar: Uint8Array): AsyncGenerator<LayerEntry> {
  const r = new TarReader(once(tar), "test layer");
  for (let e = await r.next(); e !== null; e = await r.next()) {
    if (e.type !== "file" && e.type !== "contiguous") {
      yield { tar: e };
      continue;
    }
    const parts: Uint8Array[] = [];
    for await (const p of r.readPayload()) parts.push(p.slice());
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    yield { tar: e, content: { kind: "inline", bytes } };
  }
}

/** A MergedTree of raw layer tars (no repository: content inline, no object to open). */
export async function mergeRawLayers(layers: Uint8Array[]): Promise<MergedTree> {
  const tree = new MergedTree(() => {
    throw new Error("raw layers have no objects");
  });
  for (const [i, tar] of layers.entries()) {
    tree.beginLayer(`layer ${i}`);
    for await (const e of rawTarEntries(tar)) tree.apply(e);
  }
  return tree;
}

/**
 * The oracle: extracts `layerTars` into `dest` (created, 0755) with GNU tar, one after the
 * other, as the OCI spec describes applying changesets: before a layer is extracted, each of its
 * whiteouts (`DIR/.wh.NAME`, `DIR/.wh..wh..opq`) removes `DIR/NAME` (or everything in `DIR`)
 * from what the lower layers left; after it, the whiteout files themselves are deleted.
 */
export async function extractLayersWithGnuTar(
  tar: string,
  layerTars: Uint8Array[],
  dest: string,
  scratch: string,
): Promise<void> {
  await Deno.mkdir(dest, { recursive: true });
  await Deno.chmod(dest, 0o755);
  for (const [i, bytes] of layerTars.entries()) {
    const file = `${scratch}/oracle-layer-${i}.tar`;
    await Deno.writeFile(file, bytes);
    const listing = await runOk([tar, "-tf", file, "--quoting-style=literal"]);
    const whiteouts = listing.stdout.split("\n")
      .map((l) => l.replace(/^\.\//, "").replace(/\/$/, ""))
      .filter((l) => /(^|\/)\.wh\.[^/]*$/.test(l));
    for (const w of whiteouts) {
      const slash = w.lastIndexOf("/");
      const dir = slash < 0 ? dest : `${dest}/${w.slice(0, slash)}`;
      const name = w.slice(slash + 1);
      if (name === ".wh..wh..opq") {
        for await (const e of Deno.readDir(dir)) {
          await Deno.remove(`${dir}/${e.name}`, { recursive: true });
        }
      } else {
        await Deno.remove(`${dir}/${name.slice(4)}`, { recursive: true }).catch((e) => {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        });
      }
    }
    // umask 022: the parents tar creates for unlisted directories get 0755, as an image's
    // implicit directories do.
    await runOk([
      "sh",
      "-c",
      'umask 022 && exec "$@"',
      "sh",
      tar,
      "-xpf",
      file,
      "-C",
      dest,
      "--xattrs",
      "--xattrs-include=*",
      "--numeric-owner",
      "--same-owner",
    ]);
    for (const w of whiteouts) await Deno.remove(`${dest}/${w}`);
    await Deno.remove(file);
  }
}

/** Groups of paths (relative to `root`, lossy UTF-8) that are one inode, for groups > 1. */
export function hardlinkGroups(root: string): string[][] {
  const byInode = new Map<string, string[]>();
  const rootFd = openDir(root);
  const walk = (dirfd: number, rel: string) => {
    for (const ent of readDir(dirfd)) {
      const path = `${rel}/${ent.name}`;
      const st = statAt(dirfd, ent.nameBytes);
      if ((st.mode & S.IFMT) === S.IFDIR) {
        const fd = openDirAt(dirfd, ent.nameBytes);
        try {
          walk(fd, path);
        } finally {
          close(fd);
        }
      } else if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        byInode.set(key, [...(byInode.get(key) ?? []), path]);
      }
    }
  };
  try {
    walk(rootFd, "");
  } finally {
    close(rootFd);
  }
  return [...byInode.values()].filter((g) => g.length > 1).map((g) => g.sort());
}

/** The inode (`dev:ino`) of a path, without following a final symlink. */
export function inodeOf(path: string): string {
  const st = statAt(-100, path);
  return `${st.dev}:${st.ino}`;
}

/** Physical extents (start, end) of every regular file below `dir`, recursively. */
export function physicalExtents(dir: string): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  const walk = (dirfd: number) => {
    for (const ent of readDir(dirfd)) {
      if (ent.type === DT.DIR) {
        const fd = openDirAt(dirfd, ent.nameBytes);
        try {
          walk(fd);
        } finally {
          close(fd);
        }
      } else if (ent.type === DT.REG) {
        const fd = openAt(dirfd, ent.nameBytes, O.RDONLY | O.NOFOLLOW);
        try {
          for (const e of fiemap(fd)) out.push({ start: e.physical, end: e.physical + e.length });
        } finally {
          closeQuietly(fd);
        }
      }
    }
  };
  const fd = openDir(dir);
  try {
    walk(fd);
  } finally {
    close(fd);
  }
  return out;
}
