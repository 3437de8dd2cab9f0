/**
 * Errors of the composefs repository: each names the repository path and the object, stream or
 * file involved, and says what was expected and what was found.
 *
 * @module
 */

/** Base class of every error thrown by `lib/stores/composefs/`. */
export class ComposefsError extends Error {
  override name = "ComposefsError";
  /** The file or object the error is about, relative to the repository (or absolute). */
  readonly where: string;

  constructor(where: string, message: string, options?: ErrorOptions) {
    super(`${where}: ${message}`, options);
    this.where = where;
  }
}

/** `meta.json` is missing, unparsable, or asks for something this implementation refuses. */
export class RepoMetadataError extends ComposefsError {
  override name = "RepoMetadataError";
}

/** The directory holds no repository (no `meta.json`, no `objects/`). */
export class RepoNotFoundError extends ComposefsError {
  override name = "RepoNotFoundError";
}

/** A write was attempted on a repository opened read-only (unknown read-only-compatible feature). */
export class RepoReadOnlyError extends ComposefsError {
  override name = "RepoReadOnlyError";
}

/** Secure mode was requested but the filesystem (or kernel) has no fs-verity. */
export class VerityUnsupportedError extends ComposefsError {
  override name = "VerityUnsupportedError";
}

/** An object's content does not match its name (or its measured fs-verity digest). */
export class ObjectDigestError extends ComposefsError {
  override name = "ObjectDigestError";
  constructor(where: string, readonly expected: string, readonly found: string) {
    super(where, `fs-verity digest mismatch: expected ${expected}, found ${found}`);
  }
}

/** A stream, object, or ref that should exist does not. */
export class ComposefsNotFoundError extends ComposefsError {
  override name = "ComposefsNotFoundError";
}

/** A splitstream is malformed (bad header, ranges beyond the file, corrupt sections). */
export class SplitstreamFormatError extends ComposefsError {
  override name = "SplitstreamFormatError";
}
