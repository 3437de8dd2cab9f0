/**
 * Errors of the containers-storage store. Each names the store (graph root), the object (layer
 * or image id, big-data key, tar entry) and the file concerned, and says what was expected and
 * what was found.
 *
 * @module
 */

/** Base class of every error thrown on purpose by `lib/stores/cstorage/`. */
export class CStorageError extends Error {
  override name = "CStorageError";
  /** The file or object the error is about (absolute path, or `layer <id>` / `image <id>`). */
  readonly where: string;

  constructor(where: string, message: string, options?: ErrorOptions) {
    super(`${where}: ${message}`, options);
    this.where = where;
  }
}

/** `layers.json`, `images.json`, a tar-split file or a lock token does not have the expected shape. */
export class StoreFormatError extends CStorageError {
  override name = "StoreFormatError";
}

/** No layer with that id (or diff digest) in the store. */
export class LayerNotFoundError extends CStorageError {
  override name = "LayerNotFoundError";
}

/** No image matches the reference (id, id prefix, name or digest). */
export class ImageNotFoundError extends CStorageError {
  override name = "ImageNotFoundError";
}

/** A reference matches more than one image (a short id prefix, typically). */
export class AmbiguousImageError extends CStorageError {
  override name = "AmbiguousImageError";
}

/** An image has no big-data item under that key, or its file is missing. */
export class BigDataNotFoundError extends CStorageError {
  override name = "BigDataNotFoundError";
}

/**
 * Layer content does not match what the store promises: a file's CRC-64 or size differs from its
 * tar-split entry, or the reassembled tar does not hash to the layer's `diff-digest`.
 */
export class LayerIntegrityError extends CStorageError {
  override name = "LayerIntegrityError";
}

/**
 * A layer tar cannot be stored the way containers-storage stores it: duplicate paths (tar-split
 * refuses them), a path or hard link that leaves the layer, a path through a symlink, GNU sparse
 * files (tar-split cannot reproduce them), or an entry type the overlay driver does not extract.
 */
export class UnsupportedLayerError extends CStorageError {
  override name = "UnsupportedLayerError";
  /** The tar entry's path as stored (printable), when the problem is one entry. */
  readonly entry?: string;
  constructor(where: string, message: string, entry?: string, options?: ErrorOptions) {
    super(where, entry !== undefined ? `${JSON.stringify(entry)}: ${message}` : message, options);
    this.entry = entry;
  }
}

/** The uncompressed tar given for a layer does not hash to the diff id it was announced with. */
export class DiffIdMismatchError extends CStorageError {
  override name = "DiffIdMismatchError";
  constructor(where: string, readonly expected: string, readonly found: string) {
    super(where, `layer tar digest mismatch: expected ${expected}, found ${found}`);
  }
}

/** An image config or manifest handed to the writer is not what containers-storage stores. */
export class ImageInputError extends CStorageError {
  override name = "ImageInputError";
}

/** The store was opened read-only (a read-only mount, an additional image store). */
export class StoreReadOnlyError extends CStorageError {
  override name = "StoreReadOnlyError";
}
