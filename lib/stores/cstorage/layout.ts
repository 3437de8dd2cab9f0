/**
 * Where things live in a containers-storage graph root with the overlay driver, and the
 * permissions c/storage gives them (specs/containers-storage.md §1, §2.4, §3.1).
 *
 * ```
 * ROOT/storage.lock                          graph lock
 * ROOT/overlay/l/<26 chars> -> ../<id>/diff  short names used in `lower`
 * ROOT/overlay/<id>/{diff,link,lower|empty,work,merged}
 * ROOT/overlay-layers/{layers.json,volatile-layers.json,layers.lock,<id>.tar-split.gz}
 * ROOT/overlay-images/{images.json,images.lock,<image id>/<big-data file>}
 * ```
 *
 * Every name here is read by podman, skopeo and buildah: changing one makes the store
 * unreadable to them (or makes unistore miss what they wrote).
 *
 * @module
 */

/** The storage driver this module reads and writes. The directory prefixes derive from it. */
export const DRIVER = "overlay";

/** Graph-root relative paths. */
export const PATHS = {
  /** Graph lock (c/storage's `graphLock`). */
  graphLock: "storage.lock",
  /** The driver's home: one directory per layer, plus `l/`. */
  driverDir: `${DRIVER}`,
  /** Short symlinks `l/<link id> -> ../<layer id>/diff`, named in `lower` files. */
  linkDir: "l",
  layersDir: `${DRIVER}-layers`,
  layersJson: "layers.json",
  volatileLayersJson: "volatile-layers.json",
  layersLock: "layers.lock",
  imagesDir: `${DRIVER}-images`,
  imagesJson: "images.json",
  imagesLock: "images.lock",
} as const;

/** File suffix of a layer's tar-split data in `overlay-layers/`. */
export const TAR_SPLIT_SUFFIX = ".tar-split.gz";

/** Names in `overlay/` that are not layer directories (c/storage `ListLayers`). */
export const DRIVER_DIR_NON_LAYERS = new Set([
  "l",
  "staging",
  "tempdirs",
  "backingFsBlockDev",
  ".has-mount-program",
]);

/** Files and directories inside `overlay/<layer id>/`. */
export const LAYER_DIR = {
  diff: "diff",
  link: "link",
  lower: "lower",
  empty: "empty",
  work: "work",
  merged: "merged",
} as const;

/**
 * Modes c/storage creates things with. Diff of a base layer: 0555 (`defaultPerms`); a child's
 * diff copies its parent's diff mode.
 */
export const MODES = {
  storeDir: 0o700,
  layerDir: 0o700,
  baseDiff: 0o555,
  linkDir: 0o755,
  linkFile: 0o644,
  lowerFile: 0o644,
  workDir: 0o700,
  json: 0o600,
  tarSplit: 0o600,
  bigData: 0o600,
  imageDir: 0o700,
  lockFile: 0o644,
  /** Parents a tar creates implicitly (`MkdirAll(…, 0777)` under podman's umask 022). */
  implicitDir: 0o755,
} as const;

/**
 * Length of a short link id (`generateID(idLength)` in the overlay driver). The kernel's mount
 * option page limits the `lowerdir=` string; longer ids fit fewer layers.
 */
export const LINK_ID_LENGTH = 26;

/** A layer or image id: 64 lowercase hex digits. */
export const ID_RE = /^[0-9a-f]{64}$/;

/** True when `id` looks like a c/storage layer or image id. */
export function isStorageId(id: string): boolean {
  return ID_RE.test(id);
}

/** `overlay-layers/<id>.tar-split.gz`, relative to the graph root. */
export function tarSplitPath(layerId: string): string {
  return `${PATHS.layersDir}/${layerId}${TAR_SPLIT_SUFFIX}`;
}
