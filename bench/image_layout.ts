/**
 * Writes a planned image ({@linkcode ImagePlan}) as an OCI image layout without holding a layer
 * in memory: each layer tar is streamed to its blob file (uncompressed, media type
 * `application/vnd.oci.image.layer.v1.tar`) while its sha256 is computed, so multi-GiB images
 * fit in a small heap. Entries are encoded by the tests' own tar writer
 * (tests/fixtures/oci/tar_builder.ts, pax flavour), one entry at a time.
 *
 * Layout format: OCI image-spec v1.1 `image-layout.md` (`oci-layout`, `index.json`,
 * `blobs/sha256/<hex>`), the same shape tests/fixtures/oci/image_builder.ts writes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type LayerDescriptor, writeImageManifest } from "../tests/fixtures/oci/image_builder.ts";
import { TarBuilder } from "../tests/fixtures/oci/tar_builder.ts";
import { fillContent, type ImagePlan } from "./fedora_like_image.ts";

/** Where the written image is and what it holds. */
export interface WrittenImage {
  dir: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  diffIds: string[];
  /** Paths of the uncompressed layer tars (blobs of the layout), in layer order. */
  layerTars: string[];
  /** Bytes of the layer tars. */
  tarBytes: number;
  /** Sum of regular file sizes over distinct contents (sha256), what a store must keep. */
  uniqueContentBytes: number;
}

/** Flush the tar stream to disk in writes of about this size: few syscalls, flat memory. */
const WRITE_BATCH = 4 << 20;
/** A pax tar's timestamps: fixed, so layers are reproducible. */
const MTIME = 1_735_689_600; // 2025-01-01T00:00:00Z

function writeFully(f: Deno.FsFile, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += f.writeSync(bytes.subarray(off));
}

/**
 * Writes `plan` into the OCI layout `dir` (created) tagged `tag`, with the labels bootc and
 * ostree need to treat it as a bootable image.
 *
 * @example
 * ```ts ignore
 * const img = await writeImageLayout(planImage(1), "/mnt/oci", "1x");
 * // skopeo copy oci:/mnt/oci:1x ...; img.layerTars[0] is layer 0's tar
 * ```
 */
export async function writeImageLayout(
  plan: ImagePlan,
  dir: string,
  tag: string,
): Promise<WrittenImage> {
  await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
  await Deno.writeTextFile(`${dir}/oci-layout`, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  // A loop, not Math.max(...sizes): 4× images have more entries than a call takes arguments.
  let maxSize = 0;
  for (const l of plan.layers) for (const e of l.entries) maxSize = Math.max(maxSize, e.size);
  const content = new Uint8Array(maxSize);
  const uniqueSizes = new Map<string, number>();
  const diffIds: string[] = [];
  const layerTars: string[] = [];
  const layerDescs: LayerDescriptor[] = [];
  let tarBytes = 0;

  for (const [index, layer] of plan.layers.entries()) {
    const tmp = `${dir}/blobs/sha256/.layer-${index}.tmp`;
    const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
    const sha = createHash("sha256");
    let size = 0;
    let batch: Uint8Array[] = [];
    let batched = 0;
    const flush = () => {
      if (batched === 0) return;
      const all = new Uint8Array(batched);
      let off = 0;
      for (const b of batch) {
        all.set(b, off);
        off += b.length;
      }
      sha.update(all);
      writeFully(f, all);
      size += all.length;
      batch = [];
      batched = 0;
    };
    const push = (bytes: Uint8Array) => {
      if (bytes.length >= WRITE_BATCH) {
        flush();
        sha.update(bytes);
        writeFully(f, bytes);
        size += bytes.length;
        return;
      }
      batch.push(bytes);
      batched += bytes.length;
      if (batched >= WRITE_BATCH) flush();
    };
    try {
      for (const e of layer.entries) {
        const t = new TarBuilder("pax");
        const meta = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: MTIME };
        switch (e.type) {
          case "dir":
            t.dir(e.path, meta);
            break;
          case "symlink":
            t.symlink(e.path, e.target, meta);
            break;
          case "hardlink":
            t.hardlink(e.path, e.target, meta);
            break;
          case "file": {
            const bytes = content.subarray(0, e.size);
            fillContent(bytes, e.contentId, e.size, plan.scale);
            if (!e.path.split("/").pop()!.startsWith(".wh.")) {
              const digest = createHash("sha256").update(bytes).digest("hex");
              uniqueSizes.set(digest, e.size);
            }
            t.file(e.path, bytes, meta);
            break;
          }
        }
        push(t.build({ endBlocks: 0 }));
      }
      push(new Uint8Array(1024)); // end of archive: two zero blocks
      flush();
    } finally {
      f.close();
    }
    const hex = sha.digest("hex");
    const path = `${dir}/blobs/sha256/${hex}`;
    await Deno.rename(tmp, path);
    diffIds.push(`sha256:${hex}`);
    layerTars.push(path);
    layerDescs.push({
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: `sha256:${hex}`,
      size,
    });
    tarBytes += size;
  }

  const version = `42.bench.${plan.scale}`;
  const { manifestDigest, configDigest } = await writeImageManifest(dir, {
    diffIds,
    layers: layerDescs,
    created: "2025-06-01T10:00:00Z",
    cmd: ["/sbin/init"],
    labels: {
      "containers.bootc": "1",
      "ostree.bootable": "true",
      "org.opencontainers.image.version": version,
    },
    history: plan.layers.map((l) => `unistore bench: ${l.name}`),
    annotations: { "org.opencontainers.image.version": version },
    tag,
  });
  return {
    dir,
    tag,
    manifestDigest,
    configDigest,
    diffIds,
    layerTars,
    tarBytes,
    uniqueContentBytes: [...uniqueSizes.values()].reduce((a, b) => a + b, 0),
  };
}
