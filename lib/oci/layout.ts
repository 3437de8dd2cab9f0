/**
 * Reading OCI image layouts (`oci:DIR[:TAG]`): `oci-layout`, `index.json`, nested indexes,
 * manifests, configs and layer blobs, with every blob checked against its descriptor's digest
 * and size.
 *
 * Spec: OCI image-spec v1.1 `image-layout.md`. A blob lives at `blobs/<alg>/<hex>`; the digest
 * is validated before it becomes a path (lib/oci/digest.ts), so a manifest cannot point outside
 * `blobs/`. Small JSON blobs are read whole and verified before they are parsed; layers are
 * streamed, and the digest is checked when the last byte has been read (a consumer that builds
 * something from a layer must only publish it after the stream ended without an error).
 *
 * @module
 */

import { decompressStream } from "./compression.ts";
import { DigestVerifier, parseDigest } from "./digest.ts";
import { OciFormatError, OciNotFoundError } from "./errors.ts";
import {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  isIndexMediaType,
  layerCompression,
  parseImageConfig,
  parseIndex,
  parseManifest,
  type Platform,
  REF_NAME_ANNOTATION,
} from "./manifest.ts";

/** `imageLayoutVersion` this reader understands (image-layout.md). */
export const IMAGE_LAYOUT_VERSION = "1.0.0";

/** Read size for blob streams: large enough to amortize calls, small enough to stay flat. */
const BLOB_CHUNK = 1 << 20;

/** Largest JSON blob (index, manifest, config) read into memory; registries cap at 4 MiB. */
export const MAX_JSON_BLOB = 16 << 20;

/** An image found in a layout: its manifest and config, raw bytes and parsed. */
export interface ResolvedImage {
  /** The descriptor that named the manifest (from `index.json` or a nested index). */
  manifestDescriptor: Descriptor;
  /** `sha256:<hex>` of the manifest bytes. */
  manifestDigest: string;
  manifestBytes: Uint8Array;
  manifest: ImageManifest;
  configDigest: string;
  configBytes: Uint8Array;
  config: ImageConfig;
  /** `rootfs.diff_ids`, one per manifest layer, in layer order. */
  diffIds: string[];
  /** The `org.opencontainers.image.ref.name` it was found by, if any. */
  tag?: string;
}

/** The platform of this machine in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };
  return { os: "linux", architecture: arch[Deno.build.arch] ?? Deno.build.arch };
}

/**
 * An OCI image layout directory.
 *
 * @example
 * ```ts ignore
 * const layout = await OciLayout.open("/tmp/img");
 * const img = await layout.resolveImage("latest");
 * for (const [i, layer] of img.manifest.layers.entries()) {
 *   for await (const chunk of layout.layerTarChunks(layer)) tarSink.update(chunk);
 * }
 * ```
 */
export class OciLayout {
  private constructor(readonly dir: string, readonly index: ImageIndex) {}

  /** Opens a layout: checks `oci-layout` and parses `index.json`. */
  static async open(dir: string): Promise<OciLayout> {
    const layoutFile = `${dir}/oci-layout`;
    let layoutText: string;
    try {
      layoutText = await Deno.readTextFile(layoutFile);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new OciNotFoundError(layoutFile, "not an OCI image layout (oci-layout file missing)");
      }
      throw e;
    }
    let version: unknown;
    try {
      version = JSON.parse(layoutText).imageLayoutVersion;
    } catch (e) {
      throw new OciFormatError(layoutFile, `expected JSON: ${(e as Error).message}`);
    }
    if (version !== IMAGE_LAYOUT_VERSION) {
      throw new OciFormatError(
        layoutFile,
        `expected imageLayoutVersion "${IMAGE_LAYOUT_VERSION}", found ${JSON.stringify(version)}`,
      );
    }
    const indexPath = `${dir}/index.json`;
    const index = parseIndex(await Deno.readFile(indexPath), indexPath);
    return new OciLayout(dir, index);
  }

  /** The path of a blob (after validating the digest). */
  blobPath(digest: string): string {
    const d = parseDigest(digest, `${this.dir} blob`);
    return `${this.dir}/blobs/${d.algorithm}/${d.hex}`;
  }

  /** The tags (`org.opencontainers.image.ref.name`) of `index.json`, in order. */
  tags(): string[] {
    return this.index.manifests
      .map((m) => m.annotations?.[REF_NAME_ANNOTATION])
      .filter((t): t is string => t !== undefined);
  }

  /**
   * A blob's bytes, streamed in fresh 1 MiB buffers. After the last chunk the size and digest
   * are checked; a mismatch throws {@linkcode DigestMismatchError} from the final `next()`.
   */
  async *blobChunks(desc: Descriptor): AsyncGenerator<Uint8Array> {
    const path = this.blobPath(desc.digest);
    const verifier = new DigestVerifier(desc.digest, path, desc.size);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new OciNotFoundError(path, `blob ${desc.digest} (${desc.mediaType}) is missing`);
      }
      throw e;
    }
    try {
      for (;;) {
        const buf = new Uint8Array(BLOB_CHUNK);
        const n = await file.read(buf);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        verifier.update(chunk);
        yield chunk;
      }
      verifier.verify();
    } finally {
      file.close();
    }
  }

  /** A whole (small) blob, verified before it is returned. */
  async readBlob(desc: Descriptor, maxSize = MAX_JSON_BLOB): Promise<Uint8Array> {
    if (desc.size > maxSize) {
      throw new OciFormatError(
        this.blobPath(desc.digest),
        `blob of ${desc.size} bytes is larger than the ${maxSize} bytes allowed for ${desc.mediaType}`,
      );
    }
    const out = new Uint8Array(desc.size);
    let off = 0;
    for await (const chunk of this.blobChunks(desc)) {
      out.set(chunk, off);
      off += chunk.length;
    }
    return out;
  }

  /**
   * The uncompressed tar of a layer, decompressed per its media type. The compressed blob's
   * digest is verified at the end; the caller verifies the diff_id (sha256 of what it got).
   */
  layerTarChunks(desc: Descriptor): AsyncIterable<Uint8Array> {
    const compression = layerCompression(desc.mediaType);
    if (compression === null) {
      throw new OciFormatError(
        this.blobPath(desc.digest),
        `expected a tar layer media type, found ${JSON.stringify(desc.mediaType)}`,
      );
    }
    return decompressStream(this.blobChunks(desc), compression, this.blobPath(desc.digest));
  }

  /**
   * Finds an image: by tag, or the only manifest of `index.json` when `tag` is omitted; nested
   * indexes resolve to the manifest for `platform` (this machine's by default). Manifest and
   * config are read, verified and parsed.
   */
  async resolveImage(tag?: string, platform: Platform = hostPlatform()): Promise<ResolvedImage> {
    const indexPath = `${this.dir}/index.json`;
    let desc: Descriptor;
    if (tag !== undefined) {
      const found = this.index.manifests.filter((m) =>
        m.annotations?.[REF_NAME_ANNOTATION] === tag
      );
      if (found.length === 0) {
        throw new OciNotFoundError(
          indexPath,
          `no manifest tagged ${JSON.stringify(tag)}; tags: ${JSON.stringify(this.tags())}`,
        );
      }
      desc = found[0];
    } else if (this.index.manifests.length === 1) {
      desc = this.index.manifests[0];
    } else {
      throw new OciFormatError(
        indexPath,
        `expected exactly one manifest when no tag is given, found ${this.index.manifests.length}; ` +
          `tags: ${JSON.stringify(this.tags())}`,
      );
    }
    for (let depth = 0; isIndexMediaType(desc.mediaType); depth++) {
      if (depth > 4) throw new OciFormatError(indexPath, "index nesting deeper than 4 levels");
      const where = this.blobPath(desc.digest);
      const nested = parseIndex(await this.readBlob(desc), where);
      desc = pickPlatform(nested.manifests, platform, where);
    }
    const manifestPath = this.blobPath(desc.digest);
    const manifestBytes = await this.readBlob(desc);
    const manifest = parseManifest(manifestBytes, manifestPath);
    const configPath = this.blobPath(manifest.config.digest);
    const configBytes = await this.readBlob(manifest.config);
    const config = parseImageConfig(configBytes, configPath, manifest.layers.length);
    return {
      manifestDescriptor: desc,
      manifestDigest: desc.digest,
      manifestBytes,
      manifest,
      configDigest: manifest.config.digest,
      configBytes,
      config,
      diffIds: config.rootfs.diff_ids,
      tag,
    };
  }
}

function pickPlatform(manifests: Descriptor[], want: Platform, where: string): Descriptor {
  if (manifests.length === 1) return manifests[0];
  const match = manifests.find((m) =>
    m.platform?.os === want.os && m.platform?.architecture === want.architecture
  );
  if (!match) {
    const have = manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`);
    throw new OciNotFoundError(
      where,
      `no manifest for ${want.os}/${want.architecture}; platforms: ${have.join(", ")}`,
    );
  }
  return match;
}
