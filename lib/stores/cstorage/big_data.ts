/**
 * Image big data: the config, manifests and signatures c/image stores next to an image record,
 * one file per key in `overlay-images/<image id>/` (specs/containers-storage.md §2.3–§2.4).
 *
 * File names follow c/storage's `makeBigDataBaseName`: a key made only of `[.0-9a-z]` is used
 * as-is, anything else becomes `"=" + base64(key)` with padding. Keys c/image writes:
 *
 * | key | content |
 * |---|---|
 * | `sha256:<config hex>` | the image config |
 * | `manifest-sha256:<manifest hex>` | the manifest |
 * | `manifest` | the same manifest (legacy key) |
 * | `signature-<manifest hex>` | signatures (often empty) |
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { isErrno } from "../../../ffi/errno.ts";
import { close, ensureDirAt, openDirAt, readFileAt } from "../../../ffi/fs.ts";
import { replaceFileAt } from "../../../ffi/replace.ts";
import { BigDataNotFoundError } from "./errors.ts";
import { MODES, PATHS } from "./layout.ts";

/** Keys c/image uses, by what they hold. Renaming one hides the data from podman. */
export const BIG_DATA_KEYS = {
  /** The legacy manifest key (same bytes as `manifest-<digest>`). */
  manifest: "manifest",
  manifestFor: (manifestDigest: string) => `manifest-${manifestDigest}`,
  /** Signatures of the manifest with that digest (hex only, no algorithm prefix). */
  signaturesFor: (manifestDigest: string) => `signature-${manifestDigest.replace(/^sha256:/, "")}`,
  /** The config is stored under its own digest. */
  config: (configDigest: string) => configDigest,
} as const;

const PLAIN_KEY = /^[.0-9a-z]+$/;

/**
 * The file name c/storage stores big-data item `key` under.
 *
 * @example
 * ```ts
 * bigDataFileName("manifest"); // "manifest"
 * bigDataFileName("sha256:1676"); // "=c2hhMjU2OjE2NzY="
 * ```
 */
export function bigDataFileName(key: string): string {
  if (PLAIN_KEY.test(key)) return key;
  return `=${Buffer.from(key, "utf8").toString("base64")}`;
}

/** True when c/storage treats `key` as a manifest (`bigDataNameIsManifest`). */
export function isManifestKey(key: string): boolean {
  return key.startsWith(BIG_DATA_KEYS.manifest);
}

/** `overlay-images/<id>` relative to the graph root. */
export function imageDataDir(imageId: string): string {
  return `${PATHS.imagesDir}/${imageId}`;
}

/**
 * Reads one big-data item of an image. Throws {@linkcode BigDataNotFoundError} when the file is
 * missing.
 */
export function readImageBigData(
  rootFd: number,
  rootPath: string,
  imageId: string,
  key: string,
): Uint8Array {
  const rel = `${imageDataDir(imageId)}/${bigDataFileName(key)}`;
  try {
    return readFileAt(rootFd, rel);
  } catch (e) {
    if (isErrno(e, "ENOENT")) {
      throw new BigDataNotFoundError(
        `${rootPath}/${rel}`,
        `image ${imageId} has no big-data item ${JSON.stringify(key)}`,
      );
    }
    throw e;
  }
}

/** Writes one big-data item atomically (0600) in the image's directory (created 0700). */
export function writeImageBigData(
  rootFd: number,
  imageId: string,
  key: string,
  bytes: Uint8Array,
): void {
  ensureDirAt(rootFd, PATHS.imagesDir, MODES.storeDir);
  ensureDirAt(rootFd, imageDataDir(imageId), MODES.imageDir);
  const dir = imageDataDir(imageId);
  // The directory fd is opened per call: big data is a handful of small files per image.
  withDir(
    rootFd,
    dir,
    (dirfd) => replaceFileAt(dirfd, bigDataFileName(key), bytes, { mode: MODES.bigData }),
  );
}

function withDir<T>(rootFd: number, rel: string, fn: (fd: number) => T): T {
  const fd = openDirAt(rootFd, rel);
  try {
    return fn(fd);
  } finally {
    close(fd);
  }
}
