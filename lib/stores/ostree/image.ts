/**
 * Container images in an ostree repository as ostree-ext (bootc `crates/ostree-ext`) keeps them:
 * each image's merge commit under `ostree/container/image/<escaped image reference>`, carrying
 * the OCI manifest and config in its metadata; and the `container-image-reference` strings of
 * deployment origins (`ostree-unverified-registry:quay.io/x/y:tag`).
 *
 * Merge-commit metadata (`a{sv}`, keys in sorted order as ostree-ext builds it from a BTreeMap):
 * | key | type | value |
 * |---|---|---|
 * | `ostree-ext.composefs-synthesized` | `b` | true when synthesized from composefs (bootc PR #2205) |
 * | `ostree.container.image-config` | `s` | OCI config, canonical JSON |
 * | `ostree.importer.version` | `s` | the importer's version |
 * | `ostree.manifest` | `s` | OCI manifest, canonical JSON |
 * | `ostree.manifest-digest` | `s` | `sha256:…` of the manifest |
 * Subject and body are empty; the timestamp is the manifest's
 * `org.opencontainers.image.created` annotation, else the config's `created`, else now.
 *
 * Spec: ../../../../shared/specs/ostree-repo.md §9; bootc-unified-storage.md for the
 * `composefs-synthesized` flag.
 *
 * @module
 */

import { VERSION } from "../../version.ts";
import {
  canonicalizeJsonText,
  canonicalJson,
  type JsonValue,
} from "../../format/canonical_json.ts";
import {
  BOOTABLE_IMAGE_TRANSFORM,
  type TreeEntry,
  type TreeTransform,
  writeCommit,
  type WriteCommitResult,
  type WriteTreeOptions,
} from "./commit_writer.ts";
import { OstreeError, RefError } from "./errors.ts";
import type { VariantDictEntry } from "./gvariant.ts";
import { CommitMeta, metadataBool, metadataString } from "./objects.ts";
import { IMAGE_REF_PREFIX, imageRef, imageReferenceOfRef } from "./refs.ts";
import type { OstreeRepo } from "./repo.ts";

/** The manifest digest, `sha256:…` (ostree-ext `META_MANIFEST_DIGEST`). */
export const META_MANIFEST_DIGEST = "ostree.manifest-digest";
/** The manifest as canonical JSON (`META_MANIFEST`). */
export const META_MANIFEST = "ostree.manifest";
/** The image config as canonical JSON (`META_CONFIG`). */
export const META_CONFIG = "ostree.container.image-config";
/** The importer's version string. */
export const META_IMPORTER_VERSION = "ostree.importer.version";
/** Set to true on commits synthesized from composefs (bootc `META_COMPOSEFS_SYNTHESIZED`). */
export const META_COMPOSEFS_SYNTHESIZED = "ostree-ext.composefs-synthesized";

/** What the merge commit says about its image. */
export interface ImageCommitMetadata {
  manifestDigest: string;
  /** Canonical JSON text. */
  manifest: string;
  /** Canonical JSON text (old ostree-ext versions may have stored `null`). */
  config: string;
  importerVersion?: string;
  composefsSynthesized: boolean;
}

/** Input of {@linkcode imageCommitMetadata}: JSON as text or parsed. */
export interface ImageMetadataInput {
  manifestDigest: string;
  manifest: string | object;
  config: string | object;
  /** Default `unistore <version>`. */
  importerVersion?: string;
  composefsSynthesized?: boolean;
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/**
 * The merge-commit metadata for an image, keys sorted as ostree-ext writes them.
 *
 * @example
 * ```ts ignore
 * const md = imageCommitMetadata({ manifestDigest: "sha256:…", manifest, config, composefsSynthesized: true });
 * ```
 */
export function imageCommitMetadata(input: ImageMetadataInput): VariantDictEntry[] {
  if (!DIGEST_RE.test(input.manifestDigest)) {
    throw new OstreeError(
      `manifest digest: expected sha256:<64 hex>, found ${JSON.stringify(input.manifestDigest)}`,
    );
  }
  const json = (
    v: string | object,
  ) => (typeof v === "string" ? canonicalizeJsonText(v) : canonicalJson(v as JsonValue));
  const entries: VariantDictEntry[] = [
    [META_CONFIG, CommitMeta.string(json(input.config))],
    [META_IMPORTER_VERSION, CommitMeta.string(input.importerVersion ?? `unistore ${VERSION}`)],
    [META_MANIFEST, CommitMeta.string(json(input.manifest))],
    [META_MANIFEST_DIGEST, CommitMeta.string(input.manifestDigest)],
  ];
  if (input.composefsSynthesized) entries.push([META_COMPOSEFS_SYNTHESIZED, CommitMeta.bool(true)]);
  const enc = new TextEncoder();
  return entries.sort(([a], [b]) => {
    const x = enc.encode(a), y = enc.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
}

/**
 * Reads image metadata from a merge commit's metadata.
 *
 * @throws {OstreeError} when the manifest digest or manifest is missing (not an image commit).
 */
export function parseImageCommitMetadata(
  metadata: readonly VariantDictEntry[],
  what: string,
): ImageCommitMetadata {
  const digest = metadataString(metadata, META_MANIFEST_DIGEST);
  if (!digest) {
    throw new OstreeError(`${what}: missing ${META_MANIFEST_DIGEST} metadata on merge commit`);
  }
  const manifest = metadataString(metadata, META_MANIFEST);
  if (!manifest) {
    throw new OstreeError(`${what}: missing ${META_MANIFEST} metadata on merge commit`);
  }
  return {
    manifestDigest: digest,
    manifest,
    config: metadataString(metadata, META_CONFIG) ?? "null",
    importerVersion: metadataString(metadata, META_IMPORTER_VERSION),
    composefsSynthesized: metadataBool(metadata, META_COMPOSEFS_SYNTHESIZED) ?? false,
  };
}

/**
 * The commit timestamp ostree-ext gives an image: the manifest annotation
 * `org.opencontainers.image.created`, else the config's `created` (RFC 3339), else undefined.
 */
export function imageTimestamp(
  manifest: string | object,
  config: string | object,
): number | undefined {
  const m = (typeof manifest === "string" ? JSON.parse(manifest) : manifest) as {
    annotations?: Record<string, string>;
  };
  const c = (typeof config === "string" ? JSON.parse(config) : config) as
    | { created?: string }
    | null;
  const text = m?.annotations?.["org.opencontainers.image.created"] ?? c?.created;
  if (typeof text !== "string") return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** A `container-image-reference` as ostree-ext parses it. */
export interface OstreeImageReference {
  /** `ostree-unverified-image`, `ostree-image-signed` or `ostree-remote-image`. */
  sigverify: "ostree-unverified-image" | "ostree-image-signed" | "ostree-remote-image";
  /** The ostree remote of `ostree-remote-image:<remote>:…`. */
  remote?: string;
  /** `registry`, `oci`, `oci-archive`, `docker-archive`, `containers-storage`, `dir`. */
  transport: string;
  /** The image name in that transport, e.g. `quay.io/x/y:tag`. */
  name: string;
  /** The image reference as ostree-ext spells it in refs: `docker://quay.io/x/y:tag`, `oci:/dir`. */
  imageReference: string;
}

const TRANSPORTS = new Set([
  "registry",
  "oci",
  "oci-archive",
  "docker-archive",
  "containers-storage",
  "dir",
]);

/** Parses a transport-qualified image reference (`docker://…`, `registry:…`, `oci:…`, …). */
export function parseImageReference(
  s: string,
): { transport: string; name: string; imageReference: string } {
  const colon = s.indexOf(":");
  if (colon < 0) {
    throw new OstreeError(
      `image reference ${JSON.stringify(s)}: missing transport (e.g. docker://)`,
    );
  }
  let transport = s.slice(0, colon);
  let name = s.slice(colon + 1);
  if (transport === "docker") {
    if (!name.startsWith("//")) {
      throw new OstreeError(`image reference ${JSON.stringify(s)}: expected docker://`);
    }
    transport = "registry";
    name = name.slice(2);
  }
  if (!TRANSPORTS.has(transport)) {
    throw new OstreeError(`image reference ${JSON.stringify(s)}: unknown transport "${transport}"`);
  }
  if (name === "") throw new OstreeError(`image reference ${JSON.stringify(s)}: empty name`);
  return {
    transport,
    name,
    imageReference: transport === "registry" ? `docker://${name}` : `${transport}:${name}`,
  };
}

/**
 * Parses an origin's `container-image-reference` (ostree-ext `OstreeImageReference`).
 *
 * @example
 * ```ts
 * parseOstreeImageReference("ostree-unverified-registry:quay.io/x/y:tag").imageReference;
 * // "docker://quay.io/x/y:tag"
 * ```
 */
export function parseOstreeImageReference(s: string): OstreeImageReference {
  const colon = s.indexOf(":");
  if (colon < 0) {
    throw new OstreeError(`container image reference ${JSON.stringify(s)}: missing ':'`);
  }
  const first = s.slice(0, colon);
  const rest = s.slice(colon + 1);
  switch (first) {
    case "ostree-unverified-registry":
      return { sigverify: "ostree-unverified-image", ...parseImageReference(`registry:${rest}`) };
    case "ostree-unverified-image":
      return { sigverify: "ostree-unverified-image", ...parseImageReference(rest) };
    case "ostree-image-signed":
      return { sigverify: "ostree-image-signed", ...parseImageReference(rest) };
    case "ostree-remote-registry":
    case "ostree-remote-image": {
      const c = rest.indexOf(":");
      if (c < 0) {
        throw new OstreeError(`container image reference ${JSON.stringify(s)}: missing remote`);
      }
      const remote = rest.slice(0, c);
      const img = first === "ostree-remote-registry"
        ? `registry:${rest.slice(c + 1)}`
        : rest.slice(c + 1);
      return { sigverify: "ostree-remote-image", remote, ...parseImageReference(img) };
    }
    default:
      throw new OstreeError(
        `container image reference ${JSON.stringify(s)}: invalid signature source "${first}"`,
      );
  }
}

/** An image stored in the repository. */
export interface StoredImage {
  /** The image reference the ref encodes, e.g. `docker://quay.io/x/y:tag`. */
  imageReference: string;
  /** The full ref name. */
  ref: string;
  /** The merge commit. */
  commit: string;
  timestamp: number;
  /** Null when the commit is not an image merge commit (no manifest metadata). */
  metadata: ImageCommitMetadata | null;
}

/**
 * Every image of the repository (refs below `ostree/container/image`, unescaped), with its merge
 * commit's metadata. Refs that do not unescape are skipped (ostree-ext would fail on them).
 */
export function listImages(repo: OstreeRepo): StoredImage[] {
  const out: StoredImage[] = [];
  for (const [ref, commit] of repo.listRefs(IMAGE_REF_PREFIX)) {
    let imageReference: string;
    try {
      imageReference = imageReferenceOfRef(ref);
    } catch (e) {
      if (e instanceof RefError) continue;
      throw e;
    }
    out.push(describe(repo, imageReference, ref, commit));
  }
  return out;
}

/** The stored image for `imageReference` (`docker://…`), or null. */
export function readImage(repo: OstreeRepo, imageReference: string): StoredImage | null {
  const ref = imageRef(imageReference);
  const commit = repo.resolveRef(ref);
  return commit === null ? null : describe(repo, imageReference, ref, commit);
}

function describe(
  repo: OstreeRepo,
  imageReference: string,
  ref: string,
  commit: string,
): StoredImage {
  const c = repo.readCommit(commit);
  let metadata: ImageCommitMetadata | null = null;
  try {
    metadata = parseImageCommitMetadata(c.metadata, `commit ${commit}`);
  } catch (e) {
    if (!(e instanceof OstreeError)) throw e;
  }
  return { imageReference, ref, commit, timestamp: c.timestamp, metadata };
}

/** Options of {@linkcode writeImageCommit}. */
export interface WriteImageCommitOptions
  extends Omit<WriteTreeOptions, "transform">, ImageMetadataInput {
  /** The image reference, e.g. `docker://quay.io/x/y:tag` (the ref is derived from it). */
  imageReference: string;
  /** Path rewrites; default {@linkcode BOOTABLE_IMAGE_TRANSFORM}; null for none. */
  transform?: Readonly<TreeTransform> | null;
  /** Default: {@linkcode imageTimestamp} of manifest and config, else now. */
  timestamp?: number;
  /** The base ostree commit, when there is one (ostree-ext since 2025-09); default none. */
  parent?: string | null;
  lockTimeoutMs?: number;
}

/**
 * Writes an image's tree as an ostree-ext merge commit and points
 * `ostree/container/image/<escaped imageReference>` at it, in one transaction.
 *
 * @example
 * ```ts ignore
 * const r = await writeImageCommit(repo, entries, {
 *   imageReference: "docker://quay.io/example/os:42", manifestDigest, manifest, config,
 *   composefsSynthesized: true, policy: "reflink-required",
 * });
 * ```
 */
export async function writeImageCommit(
  repo: OstreeRepo,
  entries: Iterable<TreeEntry> | AsyncIterable<TreeEntry>,
  opts: WriteImageCommitOptions,
): Promise<WriteCommitResult> {
  const { imageReference } = parseImageReference(opts.imageReference);
  const ref = imageRef(imageReference);
  const metadata = imageCommitMetadata(opts);
  const timestamp = opts.timestamp ?? imageTimestamp(opts.manifest, opts.config) ??
    Math.floor(Date.now() / 1000);
  return await writeCommit(repo, entries, {
    policy: opts.policy,
    onUnsupported: opts.onUnsupported,
    implicitDirMeta: opts.implicitDirMeta,
    transform: opts.transform === null ? undefined : opts.transform ?? BOOTABLE_IMAGE_TRANSFORM,
    ref,
    subject: "",
    body: "",
    timestamp,
    parent: opts.parent ?? null,
    metadata,
    lockTimeoutMs: opts.lockTimeoutMs,
  });
}
