/**
 * Errors of OCI reading: layouts, manifests, blobs, compressed streams and tar archives.
 *
 * Every error says what was expected, what was found, and where (a file path, a blob digest,
 * or a byte offset in a stream), so a message printed to a user points at the broken object.
 *
 * @module
 */

/** Base class of every error thrown by `lib/oci/`, so callers can catch them as one kind. */
export class OciError extends Error {
  override name = "OciError";
  /** The file, blob or stream the error is about (`blobs/sha256/ab…`, `index.json`, …). */
  readonly where: string;

  constructor(where: string, message: string, options?: ErrorOptions) {
    super(`${where}: ${message}`, options);
    this.where = where;
  }
}

/** A JSON document (index, manifest, config) or a layout file does not have the required shape. */
export class OciFormatError extends OciError {
  override name = "OciFormatError";
}

/**
 * Content does not match the digest (or size) that names it. Raised after the last byte was
 * read, so a caller that streamed the content must discard whatever it built from it.
 */
export class DigestMismatchError extends OciError {
  override name = "DigestMismatchError";
  constructor(
    where: string,
    /** What the descriptor or name promised, e.g. `sha256:ab…` or `1234 bytes`. */
    readonly expected: string,
    /** What the bytes actually hashed (or counted) to. */
    readonly found: string,
  ) {
    super(where, `digest mismatch: expected ${expected}, found ${found}`);
  }
}

/** The layout has no blob, manifest or tag by that name. */
export class OciNotFoundError extends OciError {
  override name = "OciNotFoundError";
}

/** A compressed stream is malformed, truncated, or uses a compression we do not read. */
export class CompressionError extends OciError {
  override name = "CompressionError";
}

/** A tar archive is malformed: bad checksum, truncated entry, invalid PAX record, … */
export class TarFormatError extends OciError {
  override name = "TarFormatError";
  /** Byte offset in the uncompressed archive where the problem starts. */
  readonly offset: number;
  constructor(where: string, offset: number, message: string) {
    super(where, `at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}
