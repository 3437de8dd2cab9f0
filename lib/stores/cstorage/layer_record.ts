/**
 * Layer records of `overlay-layers/layers.json` and `volatile-layers.json` (c/storage `Layer`
 * struct; specs/containers-storage.md §2.1), as typed views over the parsed JSON objects.
 *
 * Keys (all optional except `id`): `id`, `names`, `parent`, `metadata`, `mountlabel`,
 * `created`, `compressed-diff-digest`, `compressed-size`, `diff-digest`, `diff-size`,
 * `toc-digest`, `compression` (0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd), `uidset`, `gidset`,
 * `flags` (`incomplete: true` while being created or deleted), `uidmap`, `gidmap`,
 * `big-data-names`.
 *
 * @module
 */

import { type JsonObject, RecordReader } from "./json_records.ts";
import { StoreFormatError } from "./errors.ts";
import { isStorageId } from "./layout.ts";

/**
 * `compression` values (c/storage `archive.Compression`). A wrong number makes c/image believe
 * the original blob had another compression when it looks for reusable layers.
 */
export const COMPRESSION = { none: 0, bzip2: 1, gzip: 2, xz: 3, zstd: 4 } as const;

/** The flag c/storage sets on a layer while it is being created or deleted. */
export const INCOMPLETE_FLAG = "incomplete";

/** One layer as recorded by c/storage. */
export interface LayerRecord {
  id: string;
  names: string[];
  /** Parent layer id; null for a base layer. */
  parent: string | null;
  metadata?: string;
  mountLabel?: string;
  /** RFC 3339 creation time as stored. */
  created?: string;
  /** Digest of the blob as it was received (e.g. gzip), when known. */
  compressedDigest?: string;
  compressedSize?: number;
  /** Digest of the uncompressed tar: the DiffID. Absent for container layers. */
  diffDigest?: string;
  /** Length of the uncompressed tar (−1 when unknown, for zstd:chunked layers). */
  diffSize?: number;
  /** zstd:chunked TOC digest (newer c/storage). */
  tocDigest?: string;
  compression: number;
  uidset: number[];
  gidset: number[];
  flags: JsonObject;
  /** `flags.incomplete` is true: the layer is garbage (being created, or half deleted). */
  incomplete: boolean;
  bigDataNames: string[];
  /** Read from `volatile-layers.json` (layers of `--rm` containers, never fsynced). */
  volatile: boolean;
  /** The record exactly as parsed, including keys unistore does not know. */
  raw: JsonObject;
}

/** Parses one record of a layers file (`where` names the file for errors). */
export function parseLayerRecord(raw: JsonObject, where: string, volatile = false): LayerRecord {
  const r = new RecordReader(raw, where);
  const id = r.string("id")!;
  if (!isStorageId(id)) {
    throw new StoreFormatError(
      where,
      `layer id ${JSON.stringify(id)} is not 64 lowercase hex digits`,
    );
  }
  const parent = r.string("parent") ?? null;
  if (parent !== null && parent !== "" && !isStorageId(parent)) {
    throw new StoreFormatError(
      where,
      `layer ${id}: parent ${JSON.stringify(parent)} is not a layer id`,
    );
  }
  const flags = r.object("flags");
  return {
    id,
    names: r.strings("names"),
    parent: parent === "" ? null : parent,
    metadata: r.string("metadata"),
    mountLabel: r.string("mountlabel"),
    created: r.string("created"),
    compressedDigest: r.string("compressed-diff-digest"),
    compressedSize: r.number("compressed-size"),
    diffDigest: r.string("diff-digest"),
    diffSize: r.number("diff-size"),
    tocDigest: r.string("toc-digest"),
    compression: r.number("compression") ?? 0,
    uidset: r.numbers("uidset"),
    gidset: r.numbers("gidset"),
    flags,
    incomplete: flags[INCOMPLETE_FLAG] === true,
    bigDataNames: r.strings("big-data-names"),
    volatile,
    raw,
  };
}

/** What the writer records for a finished image layer. */
export interface LayerRecordInput {
  id: string;
  parent: string | null;
  names?: string[];
  created: string;
  compressedDigest: string;
  compressedSize: number;
  diffDigest: string;
  diffSize: number;
  compression: number;
  uidset: number[];
  gidset: number[];
  incomplete: boolean;
}

/**
 * A layer record in c/storage's key order with its `omitempty` rules: empty names, parent,
 * zero compression, empty id sets and empty flags are left out, as Go's encoder leaves them.
 */
export function layerRecordJson(l: LayerRecordInput): JsonObject {
  const rec: JsonObject = { id: l.id };
  if (l.names && l.names.length > 0) rec.names = [...l.names];
  if (l.parent !== null) rec.parent = l.parent;
  rec.created = l.created;
  if (l.compressedDigest) rec["compressed-diff-digest"] = l.compressedDigest;
  if (l.compressedSize) rec["compressed-size"] = l.compressedSize;
  if (l.diffDigest) rec["diff-digest"] = l.diffDigest;
  if (l.diffSize) rec["diff-size"] = l.diffSize;
  if (l.compression !== 0) rec.compression = l.compression;
  if (l.uidset.length > 0) rec.uidset = [...l.uidset];
  if (l.gidset.length > 0) rec.gidset = [...l.gidset];
  if (l.incomplete) rec.flags = { [INCOMPLETE_FLAG]: true };
  return rec;
}

/** A creation time the way Go marshals `time.Time` (RFC 3339, UTC). */
export function goTimeNow(): string {
  return new Date().toISOString();
}
