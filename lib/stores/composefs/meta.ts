/**
 * `meta.json`: the composefs repository's format version, fs-verity algorithm, feature flags and
 * EROFS format configuration.
 *
 * Spec: specs/composefs-repo.md §4 (composefs-rs `RepoMetadata` in `repository.rs`). Written as
 * pretty-printed JSON (2-space indent, serde's field order) plus a trailing newline, exactly as
 * `cfsctl init` writes it, so the file is byte-identical to one composefs-rs would produce.
 *
 * @module
 */

import type { HashAlgorithm } from "../../digest/hash.ts";
import { RepoMetadataError } from "./errors.ts";

/** File name of the metadata at the repository root. Renaming it makes repos unreadable. */
export const REPO_METADATA_FILENAME = "meta.json";

/**
 * Highest repository format version understood (composefs-rs `REPO_FORMAT_VERSION`). Repos with
 * a larger version are refused: their layout may differ in ways this code cannot know.
 */
export const REPO_FORMAT_VERSION = 1;

/**
 * log2 of the fs-verity block size; composefs-rs accepts only 12 (4096-byte blocks). Part of
 * the `algorithm` string (`fsverity-sha512-12`) and of every object id.
 */
export const LG_BLOCKSIZE = 12;

/** The one feature flag composefs-rs knows (read-only-compatible): V1 EROFS images. */
export const FEATURE_V1_EROFS = "v1_erofs";

/** Feature flags known per tier; unknown ones decide read-write / read-only / refuse. */
const KNOWN_FEATURES = {
  compatible: [] as string[],
  "read-only-compatible": [FEATURE_V1_EROFS],
  incompatible: [] as string[],
};

/** The parsed `meta.json`, fields in serde's order. */
export interface RepoMetadata {
  version: number;
  /** `fsverity-<sha256|sha512>-12`. */
  algorithm: string;
  features: {
    compatible: string[];
    "read-only-compatible": string[];
    incompatible: string[];
  };
  /** Absent in files written before composefs-rs `080f925`. */
  erofs_formats?: { default: number; extra?: number[] };
}

/** What a repository's metadata allows. */
export interface MetadataCheck {
  algorithm: HashAlgorithm;
  /** `read-only` when the repo has read-only-compatible features this code does not know. */
  access: "read-write" | "read-only";
  /** The unknown features behind a `read-only` answer. */
  unknownFeatures: string[];
  /** EROFS format version new images should use (from `erofs_formats` or the legacy flag). */
  erofsFormat: number;
}

/** The `algorithm` string for a hash: `fsverity-sha512-12`. */
export function algorithmString(algorithm: HashAlgorithm): string {
  return `fsverity-${algorithm}-${LG_BLOCKSIZE}`;
}

/**
 * The metadata `cfsctl init` writes at composefs-rs HEAD: version 1, the `v1_erofs` flag and
 * `erofs_formats {"default": 1}` (pass `erofsFormat: 2` for the pre-v0.8 V2 default).
 */
export function newRepoMetadata(algorithm: HashAlgorithm, erofsFormat: 1 | 2 = 1): RepoMetadata {
  return {
    version: REPO_FORMAT_VERSION,
    algorithm: algorithmString(algorithm),
    features: {
      compatible: [],
      "read-only-compatible": erofsFormat === 1 ? [FEATURE_V1_EROFS] : [],
      incompatible: [],
    },
    erofs_formats: { default: erofsFormat },
  };
}

/**
 * Serializes metadata like serde_json's pretty printer plus `\n`.
 *
 * @example
 * ```ts
 * new TextDecoder().decode(serializeRepoMetadata(newRepoMetadata("sha512")));
 * // '{\n  "version": 1,\n  "algorithm": "fsverity-sha512-12",\n …'
 * ```
 */
export function serializeRepoMetadata(meta: RepoMetadata): Uint8Array {
  const ordered: Record<string, unknown> = {
    version: meta.version,
    algorithm: meta.algorithm,
    features: {
      compatible: meta.features.compatible,
      "read-only-compatible": meta.features["read-only-compatible"],
      incompatible: meta.features.incompatible,
    },
  };
  if (meta.erofs_formats) {
    const f: Record<string, unknown> = { default: meta.erofs_formats.default };
    if (meta.erofs_formats.extra && meta.erofs_formats.extra.length > 0) {
      f.extra = meta.erofs_formats.extra;
    }
    ordered.erofs_formats = f;
  }
  return new TextEncoder().encode(JSON.stringify(ordered, null, 2) + "\n");
}

function stringList(v: unknown, field: string, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw new RepoMetadataError(
      where,
      `expected ${field} to be a list of strings, found ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** Parses `meta.json` bytes; `where` is its path, for errors. */
export function parseRepoMetadata(bytes: Uint8Array, where: string): RepoMetadata {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new RepoMetadataError(where, `expected JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new RepoMetadataError(where, "expected a JSON object");
  }
  const d = doc as Record<string, unknown>;
  if (typeof d.version !== "number" || !Number.isInteger(d.version) || d.version < 0) {
    throw new RepoMetadataError(
      where,
      `expected an integer "version", found ${JSON.stringify(d.version)}`,
    );
  }
  if (typeof d.algorithm !== "string") {
    throw new RepoMetadataError(
      where,
      `expected a string "algorithm", found ${JSON.stringify(d.algorithm)}`,
    );
  }
  const f = (d.features ?? {}) as Record<string, unknown>;
  if (typeof f !== "object" || Array.isArray(f)) {
    throw new RepoMetadataError(where, `expected "features" to be an object`);
  }
  const meta: RepoMetadata = {
    version: d.version,
    algorithm: d.algorithm,
    features: {
      compatible: stringList(f.compatible, "features.compatible", where),
      "read-only-compatible": stringList(
        f["read-only-compatible"],
        "features.read-only-compatible",
        where,
      ),
      incompatible: stringList(f.incompatible, "features.incompatible", where),
    },
  };
  if (d.erofs_formats !== undefined) {
    const e = d.erofs_formats as Record<string, unknown>;
    if (typeof e !== "object" || e === null || typeof e.default !== "number") {
      throw new RepoMetadataError(
        where,
        `expected "erofs_formats" {"default": N}, found ${JSON.stringify(d.erofs_formats)}`,
      );
    }
    meta.erofs_formats = { default: e.default };
    if (e.extra !== undefined) meta.erofs_formats.extra = e.extra as number[];
  }
  return meta;
}

/**
 * Checks metadata against what this implementation supports: version ≤ 1, an algorithm with
 * 4096-byte blocks, no unknown incompatible features. Unknown read-only-compatible features give
 * `access: "read-only"`; unknown compatible ones are ignored (the ext4-style rules of §4).
 */
export function checkRepoMetadata(meta: RepoMetadata, where: string): MetadataCheck {
  if (meta.version > REPO_FORMAT_VERSION) {
    throw new RepoMetadataError(
      where,
      `unsupported repository format version ${meta.version} (this tool supports up to ${REPO_FORMAT_VERSION})`,
    );
  }
  const m = /^fsverity-(sha256|sha512)-([0-9]+)$/.exec(meta.algorithm);
  if (!m) {
    throw new RepoMetadataError(
      where,
      `expected algorithm "fsverity-sha256-12" or "fsverity-sha512-12", found ${
        JSON.stringify(meta.algorithm)
      }`,
    );
  }
  if (Number(m[2]) !== LG_BLOCKSIZE) {
    throw new RepoMetadataError(
      where,
      `unsupported fs-verity block size 2^${m[2]} (only 2^${LG_BLOCKSIZE} = 4096 is supported)`,
    );
  }
  const unknownIncompat = meta.features.incompatible.filter((x) =>
    !KNOWN_FEATURES.incompatible.includes(x)
  );
  if (unknownIncompat.length > 0) {
    throw new RepoMetadataError(
      where,
      `repository requires unknown incompatible features: ${unknownIncompat.join(", ")}`,
    );
  }
  const unknownRo = meta.features["read-only-compatible"].filter((x) =>
    !KNOWN_FEATURES["read-only-compatible"].includes(x)
  );
  // erofs_formats absent or exactly {"default": 2} defers to the legacy flag (composefs-rs
  // RepoMetadata::format_config).
  const legacyDefault = !meta.erofs_formats ||
    (meta.erofs_formats.default === 2 && !(meta.erofs_formats.extra?.length));
  const erofsFormat = legacyDefault
    ? (meta.features["read-only-compatible"].includes(FEATURE_V1_EROFS) ? 1 : 2)
    : meta.erofs_formats!.default;
  return {
    algorithm: m[1] as HashAlgorithm,
    access: unknownRo.length > 0 ? "read-only" : "read-write",
    unknownFeatures: unknownRo,
    erofsFormat,
  };
}
