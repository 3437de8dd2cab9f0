/**
 * Image records of `overlay-images/images.json` (c/storage `Image` struct;
 * specs/containers-storage.md §2.3), as typed views over the parsed JSON objects.
 *
 * Keys: `id` (hex of the config digest for images c/image writes), `digest` (manifest digest),
 * `names`, `names-history`, `layer` (top layer id), `mapped-layers`, `metadata`,
 * `big-data-names`, `big-data-sizes`, `big-data-digests`, `created`, `flags`.
 *
 * @module
 */

import { isManifestKey } from "./big_data.ts";
import { StoreFormatError } from "./errors.ts";
import { type JsonObject, RecordReader } from "./json_records.ts";
import { isStorageId } from "./layout.ts";

/** One image as recorded by c/storage. */
export interface ImageRecord {
  /** 64 hex digits; for pulled images the config digest's hex. */
  id: string;
  /** The manifest digest it was stored with (`sha256:…`), if any. */
  digest?: string;
  names: string[];
  namesHistory: string[];
  /** Top layer id; null for an image without layers. */
  topLayer: string | null;
  mappedLayers: string[];
  metadata?: string;
  bigDataNames: string[];
  bigDataSizes: Record<string, number>;
  bigDataDigests: Record<string, string>;
  created?: string;
  flags: JsonObject;
  /** The record exactly as parsed, including keys unistore does not know. */
  raw: JsonObject;
}

/** Parses one record of `images.json` (`where` names the file for errors). */
export function parseImageRecord(raw: JsonObject, where: string): ImageRecord {
  const r = new RecordReader(raw, where);
  const id = r.string("id")!;
  if (!isStorageId(id)) {
    throw new StoreFormatError(
      where,
      `image id ${JSON.stringify(id)} is not 64 lowercase hex digits`,
    );
  }
  const sizes = r.object("big-data-sizes");
  const digests = r.object("big-data-digests");
  for (const [k, v] of Object.entries(sizes)) {
    if (typeof v !== "number") {
      throw new StoreFormatError(
        where,
        `image ${id}: big-data-sizes[${JSON.stringify(k)}] is not a number`,
      );
    }
  }
  for (const [k, v] of Object.entries(digests)) {
    if (typeof v !== "string") {
      throw new StoreFormatError(
        where,
        `image ${id}: big-data-digests[${JSON.stringify(k)}] is not a string`,
      );
    }
  }
  const top = r.string("layer");
  return {
    id,
    digest: r.string("digest"),
    names: r.strings("names"),
    namesHistory: r.strings("names-history"),
    topLayer: top === undefined || top === "" ? null : top,
    mappedLayers: r.strings("mapped-layers"),
    metadata: r.string("metadata"),
    bigDataNames: r.strings("big-data-names"),
    bigDataSizes: sizes as Record<string, number>,
    bigDataDigests: digests as Record<string, string>,
    created: r.string("created"),
    flags: r.object("flags"),
    raw,
  };
}

/**
 * Every digest an image answers to (c/storage `Image.Digests`): its `digest`, then the digests
 * of all big-data items whose key starts with `manifest`, without duplicates.
 */
export function imageDigests(img: ImageRecord): string[] {
  const out: string[] = [];
  if (img.digest) out.push(img.digest);
  for (const [key, d] of Object.entries(img.bigDataDigests)) {
    if (isManifestKey(key) && !out.includes(d)) out.push(d);
  }
  return out;
}

/** Adds `name` at the front of a names-history list without duplicates (`addNameToHistory`). */
export function addNameToHistory(history: readonly string[], name: string): string[] {
  return [name, ...history.filter((n) => n !== name)];
}
