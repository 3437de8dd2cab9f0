/**
 * Storing an image the way c/image's `containers-storage:` destination does (specs/
 * containers-storage.md §2.3, §3.5 step 3): its layers (each under its own lock session, as
 * c/image's `PutLayer` calls are), then, under `images.lock`, the big-data files and the image
 * record, whose id is the hex of the config digest.
 *
 * Big data written: the config under its digest, the manifest under `manifest-<digest>` and
 * `manifest`, and an empty `signature-<hex>`; `metadata` carries
 * `{"signatures-sizes":{"<manifest digest>":[]}}`. A name the image takes is removed from any
 * other image that had it (a tag moves), and added to `names-history`.
 *
 * @module
 */

import { hashBytes, toHex } from "../../digest/hash.ts";
import { faultPoint } from "../../fault/fault_point.ts";
import { BIG_DATA_KEYS, writeImageBigData } from "./big_data.ts";
import { ImageInputError, LayerNotFoundError } from "./errors.ts";
import { addNameToHistory, parseImageRecord } from "./image_record.ts";
import { isJsonObject, type JsonObject, readRecordFile, writeRecordFile } from "./json_records.ts";
import { parseLayerRecord } from "./layer_record.ts";
import { diffIdHex } from "./layer_id.ts";
import {
  type BlobCompression,
  type LayerWriteOptions,
  type LayerWriteResult,
  writeLayer,
} from "./layer_writer.ts";
import { PATHS } from "./layout.ts";
import { StoreLocks } from "./lockfile.ts";
import type { StoreRoot } from "./store_root.ts";

/** One layer of an image to store, in config `rootfs.diff_ids` order. */
export interface ImageLayerInput {
  /** The exact uncompressed tar; called only when the layer is not in the store yet. */
  tar: () => AsyncIterable<Uint8Array>;
  /** The blob as distributed (manifest descriptor), when known: recorded for blob reuse. */
  compressedDigest?: string;
  compressedSize?: number;
  compression?: BlobCompression;
}

/** An image to store. */
export interface ImageInput {
  /** The config bytes exactly as distributed: their sha256 is the image id. */
  config: Uint8Array;
  /** The manifest bytes exactly as distributed (OCI or Docker schema 2). */
  manifest: Uint8Array;
  /** `sha256:<hex>` of `manifest`; computed (and checked when given). */
  manifestDigest?: string;
  /** One per `rootfs.diff_ids` entry of the config. */
  layers: ImageLayerInput[];
  /** Names such as `localhost/app:v1` (already normalized; stored as given). */
  names?: string[];
}

/** What {@linkcode writeImage} did. */
export interface ImageWriteResult {
  /** The image id: hex of the config digest. */
  imageId: string;
  configDigest: string;
  manifestDigest: string;
  /** Top layer id (null for an image without layers). */
  topLayer: string | null;
  layers: LayerWriteResult[];
  /** False when an image with this id was already there (names and big data were added). */
  created: boolean;
  names: string[];
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${toHex(hashBytes("sha256", bytes))}`;
}

function parseJson(bytes: Uint8Array, what: string): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ImageInputError(what, `expected JSON: ${(e as Error).message}`);
  }
  if (!isJsonObject(v)) throw new ImageInputError(what, "expected a JSON object");
  return v;
}

/** The config's `rootfs.diff_ids`, validated. */
export function configDiffIds(config: Uint8Array, where = "image config"): string[] {
  const c = parseJson(config, where);
  const rootfs = c.rootfs;
  if (!isJsonObject(rootfs) || rootfs.type !== "layers" || !Array.isArray(rootfs.diff_ids)) {
    throw new ImageInputError(where, `expected rootfs {"type":"layers","diff_ids":[…]}`);
  }
  return rootfs.diff_ids.map((d, i) => {
    if (typeof d !== "string") {
      throw new ImageInputError(where, `rootfs.diff_ids[${i}] is not a string`);
    }
    diffIdHex(d, `${where} rootfs.diff_ids[${i}]`);
    return d;
  });
}

function createdOf(config: JsonObject): string {
  const c = config.created;
  if (typeof c === "string" && !Number.isNaN(Date.parse(c))) return c;
  return new Date().toISOString();
}

/**
 * Stores an image: layers first (each skipped when already present), then big data and the
 * image record. See the module doc.
 *
 * @example
 * ```ts ignore
 * const img = await layout.resolveImage("v1");
 * await writeImage(root, {
 *   config: img.configBytes, manifest: img.manifestBytes, names: ["localhost/app:v1"],
 *   layers: img.manifest.layers.map((d) => ({ tar: () => layout.layerTarChunks(d) })),
 * });
 * ```
 */
export async function writeImage(
  root: StoreRoot,
  input: ImageInput,
  opts: LayerWriteOptions = {},
): Promise<ImageWriteResult> {
  root.assertWritable("write an image");
  const configDigest = sha256(input.config);
  const imageId = diffIdHex(configDigest);
  const diffIds = configDiffIds(input.config, `image config ${configDigest}`);
  const config = parseJson(input.config, `image config ${configDigest}`);
  const manifestDigest = sha256(input.manifest);
  if (input.manifestDigest !== undefined && input.manifestDigest !== manifestDigest) {
    throw new ImageInputError(
      `image ${imageId} manifest`,
      `digest mismatch: given ${input.manifestDigest}, bytes hash to ${manifestDigest}`,
    );
  }
  const manifest = parseJson(input.manifest, `image ${imageId} manifest ${manifestDigest}`);
  if (manifest.schemaVersion !== 2) {
    throw new ImageInputError(
      `image ${imageId} manifest ${manifestDigest}`,
      `expected schemaVersion 2 (OCI or Docker schema 2), found ${
        JSON.stringify(manifest.schemaVersion)
      }`,
    );
  }
  if (input.layers.length !== diffIds.length) {
    throw new ImageInputError(
      `image ${imageId}`,
      `the config lists ${diffIds.length} layers (rootfs.diff_ids), ${input.layers.length} were given`,
    );
  }

  const layers: LayerWriteResult[] = [];
  let parent: string | null = null;
  for (const [i, l] of input.layers.entries()) {
    const r = await writeLayer(root, {
      diffId: diffIds[i],
      parent,
      tar: l.tar,
      compressedDigest: l.compressedDigest,
      compressedSize: l.compressedSize,
      compression: l.compression,
    }, opts);
    layers.push(r);
    parent = r.id;
  }
  const topLayer = parent;
  const names = [...new Set(input.names ?? [])];

  root.ensureLayout();
  await using locks = await StoreLocks.acquire(root.fd, root.path, {
    graph: "write",
    layers: "read",
    images: "write",
  });
  if (topLayer !== null) {
    const layersFile = `${root.path}/${PATHS.layersDir}/${PATHS.layersJson}`;
    const top = readRecordFile(root.fd, root.path, PATHS.layersDir, PATHS.layersJson)
      .map((r) => parseLayerRecord(r, layersFile))
      .find((l) => l.id === topLayer);
    if (!top || top.incomplete) {
      throw new LayerNotFoundError(
        layersFile,
        `top layer ${topLayer} of image ${imageId} vanished before the image was recorded`,
      );
    }
  }

  const imagesFile = `${root.path}/${PATHS.imagesDir}/${PATHS.imagesJson}`;
  const records = readRecordFile(root.fd, root.path, PATHS.imagesDir, PATHS.imagesJson);
  const existingIndex = records.findIndex((r) => parseImageRecord(r, imagesFile).id === imageId);

  // Big data first, the record last: a reader never sees a record whose files are missing.
  const bigData: [string, Uint8Array, string][] = [
    [BIG_DATA_KEYS.config(configDigest), input.config, configDigest],
    [BIG_DATA_KEYS.manifestFor(manifestDigest), input.manifest, manifestDigest],
    [BIG_DATA_KEYS.manifest, input.manifest, manifestDigest],
    [BIG_DATA_KEYS.signaturesFor(manifestDigest), new Uint8Array(0), sha256(new Uint8Array(0))],
  ];
  const existing = existingIndex >= 0 ? parseImageRecord(records[existingIndex], imagesFile) : null;
  for (const [key, bytes] of bigData) {
    // An existing image keeps its signatures; everything else is (re)written, as c/image does.
    if (existing && key.startsWith("signature-") && existing.bigDataNames.includes(key)) continue;
    writeImageBigData(root.fd, imageId, key, bytes);
  }
  faultPoint("cstorage.image-big-data-written");

  // A name belongs to one image: take it away from any other (c/storage moves tags).
  for (const rec of records) {
    if (rec.id !== imageId && Array.isArray(rec.names)) {
      const kept = (rec.names as string[]).filter((n) => !names.includes(n));
      if (kept.length !== rec.names.length) {
        if (kept.length > 0) rec.names = kept;
        else delete rec.names;
      }
    }
  }

  let record: JsonObject;
  if (existing) {
    record = records[existingIndex];
    const allNames = [...existing.names, ...names.filter((n) => !existing.names.includes(n))];
    if (allNames.length > 0) record.names = allNames;
    let history = existing.namesHistory;
    for (const n of names) history = addNameToHistory(history, n);
    if (history.length > 0) record["names-history"] = history;
    if (!existing.digest) record.digest = manifestDigest;
    const bigNames = [...existing.bigDataNames];
    const sizes = { ...existing.bigDataSizes };
    const digests = { ...existing.bigDataDigests };
    for (const [key, bytes, digest] of bigData) {
      if (!bigNames.includes(key)) bigNames.push(key);
      if (key.startsWith("signature-") && existing.bigDataNames.includes(key)) continue;
      sizes[key] = bytes.length;
      digests[key] = digest;
    }
    record["big-data-names"] = bigNames;
    record["big-data-sizes"] = sizes;
    record["big-data-digests"] = digests;
    record.metadata = withSignatureSizes(existing.metadata, manifestDigest);
  } else {
    let history: string[] = [];
    for (const n of names) history = addNameToHistory(history, n);
    record = { id: imageId, digest: manifestDigest };
    if (names.length > 0) {
      record.names = names;
      record["names-history"] = history;
    }
    if (topLayer !== null) record.layer = topLayer;
    record.metadata = withSignatureSizes(undefined, manifestDigest);
    record["big-data-names"] = bigData.map(([k]) => k);
    record["big-data-sizes"] = Object.fromEntries(bigData.map(([k, b]) => [k, b.length]));
    record["big-data-digests"] = Object.fromEntries(bigData.map(([k, , d]) => [k, d]));
    record.created = createdOf(config);
    records.push(record);
  }
  locks.recordWrite("images");
  writeRecordFile(root.fd, PATHS.imagesDir, PATHS.imagesJson, records);
  faultPoint("cstorage.image-recorded");
  return { imageId, configDigest, manifestDigest, topLayer, layers, created: !existing, names };
}

/** c/image's image metadata: `{"signatures-sizes":{"<manifest digest>":[…]}}`, merged. */
function withSignatureSizes(metadata: string | undefined, manifestDigest: string): string {
  let meta: JsonObject = {};
  if (metadata) {
    try {
      const v = JSON.parse(metadata);
      if (isJsonObject(v)) meta = v;
    } catch { /* not JSON: replaced, as c/image would */ }
  }
  const sizes = isJsonObject(meta["signatures-sizes"]) ? meta["signatures-sizes"] : {};
  if (!(manifestDigest in sizes)) sizes[manifestDigest] = [];
  meta["signatures-sizes"] = sizes;
  return JSON.stringify(meta);
}
