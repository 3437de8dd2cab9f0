/**
 * OCI images in a composefs repository: importing an image from an OCI layout as layer,
 * config and manifest streams, tags under `streams/refs/oci/`, and reading images back.
 *
 * Spec: specs/composefs-repo.md §6 (composefs-oci `lib.rs`, `oci_image.rs`, `oci_layout.rs`):
 *
 * | stream                          | content type | chunks                  | named refs                              |
 * |---------------------------------|--------------|-------------------------|-----------------------------------------|
 * | `oci-layer-<diff_id>`           | `ocilayer`   | tar split per §5.10     | none                                    |
 * | `oci-config-<config digest>`    | `ociconfg`   | 1 external: config JSON | `<diff_id>` → layer stream, per layer   |
 * | `oci-manifest-<manifest digest>`| `ocimanif`   | 1 external: manifest    | `config:<digest>` → config, `<diff_id>` |
 *
 * Tags: `streams/refs/oci/<encoded tag>` → `../../oci-manifest-<digest>`, the tag encoded by
 * `%` → `%25` then `/` → `%2F`. bootc's host images are tagged `localhost/bootc-<manifest
 * digest>` (specs/bootc-unified-storage.md §9.3): that tag is a GC root bootc manages.
 *
 * Crash order: objects, `syncfs`, then each stream symlink (layers, config, manifest), then
 * tags; an interrupted import leaves only unreferenced objects, which GC collects.
 *
 * EROFS images (`composefs.image*` named refs of the config) are not generated here; bootc or
 * cfsctl adds them (`composefs_oci::upgrade_repo`, `cfsctl oci pull` on an existing image).
 *
 * @module
 */

import { DigestVerifier, parseDigest } from "../../oci/digest.ts";
import { DigestMismatchError } from "../../oci/errors.ts";
import { OciLayout, type ResolvedImage } from "../../oci/layout.ts";
import {
  type ImageConfig,
  type ImageManifest,
  parseImageConfig,
  parseManifest,
} from "../../oci/manifest.ts";
import { ComposefsError, ComposefsNotFoundError } from "./errors.ts";
import type { ObjectId } from "./object_id.ts";
import type { ComposefsRepo } from "./repository.ts";
import { CONTENT_TYPE, SplitStream, SplitStreamWriter } from "./splitstream.ts";
import { type LayerSplitStats, splitTarLayer } from "./tar_layer.ts";

/** Prefix of bootc's GC-root tags (bootc `BOOTC_TAG_PREFIX`); bootc may delete such tags. */
export const BOOTC_TAG_PREFIX = "localhost/bootc-";
/** Directory of OCI tags below `streams/refs/` (composefs-oci `OCI_REF_PREFIX`). */
export const OCI_REF_PREFIX = "oci/";

/** `oci-layer-<diff_id>`. */
export function layerStreamName(diffId: string): string {
  return `oci-layer-${diffId}`;
}

/** `oci-config-<config digest>`. */
export function configStreamName(configDigest: string): string {
  return `oci-config-${configDigest}`;
}

/** `oci-manifest-<manifest digest>`. */
export function manifestStreamName(manifestDigest: string): string {
  return `oci-manifest-${manifestDigest}`;
}

/** The tag bootc gives the image with this manifest digest. */
export function bootcTagFor(manifestDigest: string): string {
  return `${BOOTC_TAG_PREFIX}${manifestDigest}`;
}

/**
 * Encodes a tag as one file name: `%` → `%25`, then `/` → `%2F` (composefs-oci `encode_tag`).
 *
 * @example
 * ```ts
 * encodeTag("localhost/bootc-sha256:ab"); // "localhost%2Fbootc-sha256:ab"
 * ```
 */
export function encodeTag(name: string): string {
  return name.replaceAll("%", "%25").replaceAll("/", "%2F");
}

/** Inverse of {@linkcode encodeTag}, in one pass (`%252F` → `%2F`, not `/`). */
export function decodeTag(encoded: string): string {
  return encoded.replace(/%(2F|25)/g, (_, code: string) => (code === "2F" ? "/" : "%"));
}

function checkTagName(name: string): void {
  if (name === "" || name.startsWith("@") || name.includes("\0")) {
    throw new ComposefsError(
      `tag ${JSON.stringify(name)}`,
      "invalid tag name (empty, NUL, or a leading '@', which is reserved for digest references)",
    );
  }
  const enc = encodeTag(name);
  if (enc === "." || enc === "..") {
    throw new ComposefsError(`tag ${JSON.stringify(name)}`, "invalid tag name");
  }
}

/** Points `streams/refs/oci/<encoded name>` at the image's manifest stream. */
export function tagImage(repo: ComposefsRepo, manifestDigest: string, name: string): void {
  checkTagName(name);
  parseDigest(manifestDigest, `tag ${name}`);
  if (repo.streamObjectId(manifestStreamName(manifestDigest)) === null) {
    throw new ComposefsNotFoundError(
      `${repo.path}/streams/${manifestStreamName(manifestDigest)}`,
      `cannot tag ${JSON.stringify(name)}: no such manifest stream`,
    );
  }
  repo.nameStream(manifestStreamName(manifestDigest), OCI_REF_PREFIX + encodeTag(name));
}

/** Removes a tag; true when it existed. The image becomes collectable if nothing else holds it. */
export function untagImage(repo: ComposefsRepo, name: string): boolean {
  checkTagName(name);
  return repo.removeStreamRef(OCI_REF_PREFIX + encodeTag(name));
}

/** A tag and the manifest digest it names. */
export interface OciTag {
  name: string;
  manifestDigest: string;
}

/** Every tag under `streams/refs/oci/` (targets that do not name a manifest are left out). */
export function listTags(repo: ComposefsRepo): OciTag[] {
  const out: OciTag[] = [];
  for (const [name, target] of repo.listRefs("streams", "oci")) {
    const base = target.slice(target.lastIndexOf("/") + 1);
    if (!base.startsWith("oci-manifest-")) continue;
    out.push({
      name: decodeTag(name.slice(OCI_REF_PREFIX.length)),
      manifestDigest: base.slice(13),
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The manifest digest a tag names, or `null` when there is no such tag. */
export function resolveTag(repo: ComposefsRepo, name: string): string | null {
  checkTagName(name);
  const encoded = encodeTag(name);
  const tag = listTags(repo).find((t) => encodeTag(t.name) === encoded);
  return tag?.manifestDigest ?? null;
}

/** What one layer import did. */
export interface ImportedLayer {
  diffId: string;
  /** Digest of the (compressed) blob in the layout. */
  blobDigest: string;
  /** Object id of the layer splitstream. */
  streamId: ObjectId;
  /** `streams/oci-layer-<diffId>` already existed: nothing was read. */
  skipped: boolean;
  stats?: LayerSplitStats;
}

/** What {@linkcode importOciImage} did. */
export interface ImportedImage {
  manifestDigest: string;
  configDigest: string;
  diffIds: string[];
  manifestStreamId: ObjectId;
  configStreamId: ObjectId;
  layers: ImportedLayer[];
  /** Tags created or refreshed. */
  tags: string[];
  /** The manifest stream existed before: the image was already complete. */
  manifestSkipped: boolean;
}

/** Progress of an import, one event per step. */
export type ImportEvent =
  | { kind: "layer-start"; index: number; diffId: string; size: number }
  | { kind: "layer-done"; index: number; diffId: string; stats: LayerSplitStats }
  | { kind: "layer-skipped"; index: number; diffId: string };

/** Options of {@linkcode importOciImage}. */
export interface ImportOciOptions {
  /**
   * Tag for the image in the repository (`streams/refs/oci/<encoded>`); default: the layout
   * tag when one was given, else none.
   */
  tagAs?: string | null;
  /** Also tag `localhost/bootc-<manifest digest>` (bootc's host image GC root); default true. */
  bootcTag?: boolean;
  onEvent?: (event: ImportEvent) => void;
}

/**
 * `oci:DIR[:TAG]` (or `DIR[:TAG]`) → directory and tag. The last `:` separates the tag only
 * when no `/` follows it (composefs-oci `parse_oci_layout_ref`).
 *
 * @example
 * ```ts
 * parseOciLayoutRef("oci:/tmp/img:latest"); // { dir: "/tmp/img", tag: "latest" }
 * parseOciLayoutRef("oci:/tmp/img"); // { dir: "/tmp/img" }
 * ```
 */
export function parseOciLayoutRef(ref: string): { dir: string; tag?: string } {
  const body = ref.startsWith("oci:") ? ref.slice(4) : ref;
  const colon = body.lastIndexOf(":");
  if (colon < 0 || body.slice(colon + 1).includes("/")) return { dir: body };
  return { dir: body.slice(0, colon), tag: body.slice(colon + 1) };
}

/**
 * Imports an image from the OCI layout `layoutDir` (by `layoutTag`, or its only manifest):
 * every layer whose stream is missing is decompressed, split (file payloads over 64 bytes
 * become objects), checked against its blob digest and diff_id, synced and registered; then the
 * config and manifest streams with their named refs; then the tags. Present streams are
 * skipped. This is `unistore image import oci:DIR[:TAG] --to composefs`.
 *
 * @example
 * ```ts ignore
 * using repo = await ComposefsRepo.open("/sysroot/composefs");
 * const r = await importOciImage(repo, "/tmp/img", "latest");
 * // r.tags: ["latest", "localhost/bootc-sha256:…"]
 * ```
 */
export async function importOciImage(
  repo: ComposefsRepo,
  layoutDir: string,
  layoutTag?: string,
  opts: ImportOciOptions = {},
): Promise<ImportedImage> {
  const layout = await OciLayout.open(layoutDir);
  const image = await layout.resolveImage(layoutTag);
  return await importResolvedImage(repo, layout, image, {
    ...opts,
    tagAs: opts.tagAs === undefined ? layoutTag ?? null : opts.tagAs,
  });
}

/** {@linkcode importOciImage} for an image already resolved in an open layout. */
export async function importResolvedImage(
  repo: ComposefsRepo,
  layout: OciLayout,
  image: ResolvedImage,
  opts: ImportOciOptions = {},
): Promise<ImportedImage> {
  const layers: ImportedLayer[] = [];
  const layerIds = new Map<string, ObjectId>();
  for (const [index, desc] of image.manifest.layers.entries()) {
    const diffId = image.diffIds[index];
    const name = layerStreamName(diffId);
    const existing = layerIds.get(diffId) ?? repo.streamObjectId(name);
    if (existing !== null) {
      layerIds.set(diffId, existing);
      layers.push({ diffId, blobDigest: desc.digest, streamId: existing, skipped: true });
      opts.onEvent?.({ kind: "layer-skipped", index, diffId });
      continue;
    }
    opts.onEvent?.({ kind: "layer-start", index, diffId, size: desc.size });
    const where = `${layout.blobPath(desc.digest)} (layer ${index})`;
    const verifier = new DigestVerifier(diffId, `${where} diff_id`);
    const { id, stats } = await splitTarLayer(
      repo,
      tap(layout.layerTarChunks(desc), verifier),
      where,
    );
    const found = verifier.digest();
    if (found !== diffId) {
      // The objects already written stay unreferenced; GC removes them.
      throw new DigestMismatchError(`${where}: uncompressed content (diff_id)`, diffId, found);
    }
    repo.registerStream(name, id);
    layerIds.set(diffId, id);
    layers.push({ diffId, blobDigest: desc.digest, streamId: id, skipped: false, stats });
    opts.onEvent?.({ kind: "layer-done", index, diffId, stats });
  }

  const streams = await writeImageStreams(repo, image, layerIds, opts);
  return {
    manifestDigest: image.manifestDigest,
    configDigest: image.configDigest,
    diffIds: image.diffIds,
    layers,
    ...streams,
  };
}

/** The image-level streams of an image whose layer streams are all in the repository. */
export interface ImageStreams {
  configStreamId: ObjectId;
  manifestStreamId: ObjectId;
  /** The manifest stream existed before: the image was already complete. */
  manifestSkipped: boolean;
  /** Tags created or confirmed. */
  tags: string[];
}

/**
 * Writes an image's config stream (its bytes as one object, a named ref per diff_id to the
 * layer stream) and manifest stream (`config:<digest>` and the diff_ids), as composefs-oci
 * writes them (specs/composefs-repo.md §6), skipping either when present; then the tags:
 * `opts.tagAs` and, unless `opts.bootcTag` is false, bootc's `localhost/bootc-<digest>`. The
 * manifest stream comes last but for the tags, so a failure before it leaves no image.
 *
 * @example
 * ```ts ignore
 * const s = await writeImageStreams(repo, { configDigest, configBytes, manifestDigest,
 *   manifestBytes, diffIds }, layerStreamIds, { tagAs: "quay.io/x/os:42" });
 * ```
 */
export async function writeImageStreams(
  repo: ComposefsRepo,
  image: {
    configDigest: string;
    configBytes: Uint8Array;
    manifestDigest: string;
    manifestBytes: Uint8Array;
    diffIds: readonly string[];
  },
  layerIds: ReadonlyMap<string, ObjectId>,
  opts: { tagAs?: string | null; bootcTag?: boolean } = {},
): Promise<ImageStreams> {
  const configName = configStreamName(image.configDigest);
  let configStreamId = repo.streamObjectId(configName);
  if (configStreamId === null) {
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociConfig);
    try {
      for (const diffId of image.diffIds) w.addNamedStreamRef(diffId, layerIds.get(diffId)!);
      await w.writeExternal(image.configBytes);
      configStreamId = await w.finish();
    } catch (e) {
      w.abort();
      throw e;
    }
    repo.registerStream(configName, configStreamId);
  }

  const manifestName = manifestStreamName(image.manifestDigest);
  let manifestStreamId = repo.streamObjectId(manifestName);
  const manifestSkipped = manifestStreamId !== null;
  if (manifestStreamId === null) {
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociManifest);
    try {
      w.addNamedStreamRef(`config:${image.configDigest}`, configStreamId);
      for (const diffId of image.diffIds) w.addNamedStreamRef(diffId, layerIds.get(diffId)!);
      await w.writeExternal(image.manifestBytes);
      manifestStreamId = await w.finish();
    } catch (e) {
      w.abort();
      throw e;
    }
    repo.registerStream(manifestName, manifestStreamId);
  }

  const tags: string[] = [];
  if (opts.tagAs) tags.push(opts.tagAs);
  if (opts.bootcTag ?? true) tags.push(bootcTagFor(image.manifestDigest));
  for (const t of tags) tagImage(repo, image.manifestDigest, t);
  return { configStreamId, manifestStreamId, manifestSkipped, tags };
}

async function* tap(
  source: AsyncIterable<Uint8Array>,
  v: DigestVerifier,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    v.update(chunk);
    yield chunk;
  }
}

/** An image read back from the repository. */
export interface StoredImage {
  manifestDigest: string;
  manifestBytes: Uint8Array;
  manifest: ImageManifest;
  configDigest: string;
  configBytes: Uint8Array;
  config: ImageConfig;
  diffIds: string[];
  /** Object id of each layer stream, from the config's named refs. */
  layerStreams: Map<string, ObjectId>;
  manifestStreamId: ObjectId;
  configStreamId: ObjectId;
}

/**
 * Reads the single external object of a manifest/config/blob stream and its named refs.
 * Throws unless the stream has exactly one external chunk and no inline data.
 */
async function readExternalStream(
  repo: ComposefsRepo,
  name: string,
  contentType: bigint,
): Promise<{ data: Uint8Array; namedRefs: Map<string, ObjectId>; id: ObjectId }> {
  using s = SplitStream.openStream(repo, name, contentType);
  const externals: ObjectId[] = [];
  for await (const c of s.chunks()) {
    if (c.kind === "inline") {
      throw new ComposefsError(s.where, "expected exactly one external chunk, found inline data");
    }
    externals.push(c.id);
  }
  if (externals.length !== 1) {
    throw new ComposefsError(
      s.where,
      `expected exactly one external chunk, found ${externals.length}`,
    );
  }
  return {
    data: repo.readObject(externals[0]),
    namedRefs: s.index.namedRefs,
    id: repo.streamObjectId(name)!,
  };
}

/**
 * Reads an image by manifest digest or tag: manifest and config JSON (their sha256 checked
 * against the digests naming them), diff_ids, and the layer stream ids from the config's refs.
 */
export async function readStoredImage(
  repo: ComposefsRepo,
  tagOrDigest: string,
): Promise<StoredImage> {
  let manifestDigest = tagOrDigest;
  if (!/^sha(256|512):/.test(tagOrDigest)) {
    const d = resolveTag(repo, tagOrDigest);
    if (d === null) {
      throw new ComposefsNotFoundError(
        `${repo.path}/streams/refs/oci`,
        `no tag ${JSON.stringify(tagOrDigest)}`,
      );
    }
    manifestDigest = d;
  }
  const m = await readExternalStream(
    repo,
    manifestStreamName(manifestDigest),
    CONTENT_TYPE.ociManifest,
  );
  const mWhere = `${repo.path}/streams/${manifestStreamName(manifestDigest)}`;
  const mv = new DigestVerifier(manifestDigest, mWhere);
  mv.update(m.data);
  mv.verify();
  const manifest = parseManifest(m.data, mWhere);
  const configDigest = manifest.config.digest;
  const c = await readExternalStream(repo, configStreamName(configDigest), CONTENT_TYPE.ociConfig);
  const cWhere = `${repo.path}/streams/${configStreamName(configDigest)}`;
  const cv = new DigestVerifier(configDigest, cWhere);
  cv.update(c.data);
  cv.verify();
  const config = parseImageConfig(c.data, cWhere, manifest.layers.length);
  const layerStreams = new Map<string, ObjectId>();
  for (const diffId of config.rootfs.diff_ids) {
    const id = c.namedRefs.get(diffId);
    if (id === undefined) throw new ComposefsError(cWhere, `no named ref for layer ${diffId}`);
    layerStreams.set(diffId, id);
  }
  return {
    manifestDigest,
    manifestBytes: m.data,
    manifest,
    configDigest,
    configBytes: c.data,
    config,
    diffIds: config.rootfs.diff_ids,
    layerStreams,
    manifestStreamId: m.id,
    configStreamId: c.id,
  };
}
