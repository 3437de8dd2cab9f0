/**
 * OCI image index, manifest and config documents: media types, types, and validating parsers.
 *
 * Spec: OCI image-spec v1.1 (`descriptor.md`, `image-index.md`, `manifest.md`, `config.md`) and
 * the Docker v2 schema 2 media types that registries and `podman save` still produce (same JSON
 * shape). The parsers check only what unistore relies on (digests, sizes, media types, diff_ids)
 * and keep the raw bytes elsewhere: digests are computed over the bytes, never over re-serialized
 * JSON.
 *
 * @module
 */

import { parseDigest } from "./digest.ts";
import { OciFormatError } from "./errors.ts";

/** Media types unistore reads. Changing a value makes documents of that type unrecognized. */
export const MEDIA_TYPE = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerTar: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistTar: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerTar: "application/vnd.docker.image.rootfs.diff.tar",
} as const;

/** How a layer blob is compressed. */
export type LayerCompression = "none" | "gzip" | "zstd";

const LAYER_COMPRESSION: Record<string, LayerCompression> = {
  [MEDIA_TYPE.ociLayerTar]: "none",
  [MEDIA_TYPE.ociLayerGzip]: "gzip",
  [MEDIA_TYPE.ociLayerZstd]: "zstd",
  [MEDIA_TYPE.ociLayerNondistTar]: "none",
  [MEDIA_TYPE.ociLayerNondistGzip]: "gzip",
  [MEDIA_TYPE.ociLayerNondistZstd]: "zstd",
  [MEDIA_TYPE.dockerLayerGzip]: "gzip",
  [MEDIA_TYPE.dockerLayerTar]: "none",
};

/**
 * The compression of a tar layer media type, or `null` when the media type is not a tar layer
 * (an artifact blob, or something unknown).
 *
 * @example
 * ```ts
 * layerCompression("application/vnd.oci.image.layer.v1.tar+zstd"); // "zstd"
 * layerCompression("application/vnd.example.sbom+json"); // null
 * ```
 */
export function layerCompression(mediaType: string): LayerCompression | null {
  return LAYER_COMPRESSION[mediaType] ?? null;
}

/** A content descriptor: what a blob is, its digest and size. */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>` (validated). */
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
  artifactType?: string;
}

/** The platform an index entry is for. */
export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

/** An image index (`index.json` of a layout, or a multi-platform manifest list). */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** An image manifest. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The parts of an image config unistore uses; the rest is kept in the raw bytes. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  created?: string;
  config?: { Labels?: Record<string, string> | null; [key: string]: unknown };
  rootfs: { type: "layers"; diff_ids: string[] };
  [key: string]: unknown;
}

/** Annotation that names a manifest in a layout's `index.json` (the `TAG` of `oci:DIR:TAG`). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseJson(bytes: Uint8Array, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new OciFormatError(where, `expected a JSON document: ${(e as Error).message}`);
  }
  if (!isObject(value)) throw new OciFormatError(where, "expected a JSON object at top level");
  return value;
}

/** Validates one descriptor; `where` locates it (`index.json manifests[0]`). */
export function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new OciFormatError(where, "expected a descriptor object");
  if (typeof value.mediaType !== "string") {
    throw new OciFormatError(
      where,
      `expected a string mediaType, found ${JSON.stringify(value.mediaType)}`,
    );
  }
  parseDigest(value.digest, `${where} digest`);
  if (typeof value.size !== "number" || !Number.isSafeInteger(value.size) || value.size < 0) {
    throw new OciFormatError(
      where,
      `expected a non-negative integer size, found ${JSON.stringify(value.size)}`,
    );
  }
  if (value.annotations !== undefined && !isObject(value.annotations)) {
    throw new OciFormatError(where, "annotations must be an object");
  }
  return value as unknown as Descriptor;
}

function checkSchemaVersion(doc: Record<string, unknown>, where: string): void {
  if (doc.schemaVersion !== 2) {
    throw new OciFormatError(
      where,
      `expected schemaVersion 2, found ${JSON.stringify(doc.schemaVersion)}`,
    );
  }
}

/** Parses an image index or manifest list. */
export function parseIndex(bytes: Uint8Array, where: string): ImageIndex {
  const doc = parseJson(bytes, where);
  checkSchemaVersion(doc, where);
  if (!Array.isArray(doc.manifests)) throw new OciFormatError(where, "expected a manifests array");
  doc.manifests.forEach((d, i) => parseDescriptor(d, `${where} manifests[${i}]`));
  return doc as unknown as ImageIndex;
}

/** True for the media types of an image index / manifest list. */
export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MEDIA_TYPE.ociIndex || mediaType === MEDIA_TYPE.dockerManifestList;
}

/** Parses an image manifest (OCI or Docker v2 schema 2). */
export function parseManifest(bytes: Uint8Array, where: string): ImageManifest {
  const doc = parseJson(bytes, where);
  checkSchemaVersion(doc, where);
  if (isIndexMediaType(doc.mediaType as string | undefined)) {
    throw new OciFormatError(
      where,
      `expected an image manifest, found an index (${doc.mediaType})`,
    );
  }
  parseDescriptor(doc.config, `${where} config`);
  if (!Array.isArray(doc.layers)) throw new OciFormatError(where, "expected a layers array");
  doc.layers.forEach((d, i) => parseDescriptor(d, `${where} layers[${i}]`));
  return doc as unknown as ImageManifest;
}

/**
 * Parses an image config and checks `rootfs.diff_ids`: one valid digest per layer.
 * `layerCount` (from the manifest) must match the number of diff_ids when given.
 */
export function parseImageConfig(
  bytes: Uint8Array,
  where: string,
  layerCount?: number,
): ImageConfig {
  const doc = parseJson(bytes, where);
  const rootfs = doc.rootfs;
  if (!isObject(rootfs) || rootfs.type !== "layers" || !Array.isArray(rootfs.diff_ids)) {
    throw new OciFormatError(
      where,
      `expected rootfs {"type": "layers", "diff_ids": [...]}, found ${JSON.stringify(rootfs)}`,
    );
  }
  rootfs.diff_ids.forEach((d, i) => parseDigest(d, `${where} rootfs.diff_ids[${i}]`));
  if (layerCount !== undefined && rootfs.diff_ids.length !== layerCount) {
    throw new OciFormatError(
      where,
      `expected ${layerCount} diff_ids (one per manifest layer), found ${rootfs.diff_ids.length}`,
    );
  }
  return doc as unknown as ImageConfig;
}
