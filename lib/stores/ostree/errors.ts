/**
 * Errors of the ostree store. Each names what was expected, what was found, and the object or
 * path concerned, so a message printed by a command tells the user where to look.
 *
 * @module
 */

/** Base class: everything this directory throws on purpose is an `OstreeError`. */
export class OstreeError extends Error {
  override name = "OstreeError";
}

/** Bytes that are not a valid (or not a normal-form) GVariant of the expected type. */
export class GVariantError extends OstreeError {
  override name = "GVariantError";
  /** The GVariant type string that was being read or written. */
  readonly type: string;
  constructor(type: string, message: string) {
    super(`GVariant ${type}: ${message}`);
    this.type = type;
  }
}

/** The repository is in a mode unistore does not read or write (archive, bare-user-only, ...). */
export class UnsupportedRepoModeError extends OstreeError {
  override name = "UnsupportedRepoModeError";
  constructor(readonly repoPath: string, readonly mode: string) {
    super(
      `ostree repository ${repoPath} has mode "${mode}"; unistore supports only "bare" and ` +
        `"bare-user"`,
    );
  }
}

/** `config` is missing, unreadable or says something libostree would refuse. */
export class RepoConfigError extends OstreeError {
  override name = "RepoConfigError";
  constructor(readonly repoPath: string, message: string) {
    super(`ostree repository ${repoPath}: ${message}`);
  }
}

/** The repo lock could not be taken before the timeout (another process holds it). */
export class RepoLockedError extends OstreeError {
  override name = "RepoLockedError";
  constructor(readonly lockPath: string, kind: string, timeoutMs: number) {
    super(
      `cannot take the ${kind} lock on ${lockPath} within ${timeoutMs} ms: another process ` +
        `(ostree prune, ostree admin, another unistore) holds a conflicting lock`,
    );
  }
}

/** An object that should be in the repository is not. */
export class ObjectMissingError extends OstreeError {
  override name = "ObjectMissingError";
  constructor(readonly repoPath: string, readonly object: string) {
    super(`ostree repository ${repoPath}: object ${object} is missing`);
  }
}

/** An object's bytes or metadata do not match its name, or do not parse. */
export class ObjectCorruptError extends OstreeError {
  override name = "ObjectCorruptError";
  constructor(readonly repoPath: string, readonly object: string, detail: string) {
    super(`ostree repository ${repoPath}: object ${object} is corrupt: ${detail}`);
  }
}

/**
 * A tree entry ostree cannot store: a name that is not UTF-8, contains "/" or is "." / "..",
 * or a file type other than regular file, symlink and directory (ostree commit refuses fifos,
 * sockets and device nodes: "Not a regular file or symlink").
 */
export class UnsupportedEntryError extends OstreeError {
  override name = "UnsupportedEntryError";
  /** The entry's path as given, printable (non-UTF-8 bytes as \xNN). */
  readonly path: string;
  constructor(path: string, reason: string) {
    super(`${path}: ${reason}`);
    this.path = path;
  }
}

/** A tree entry stream that contradicts itself (hardlink to a missing path, bad metadata). */
export class TreeEntryError extends OstreeError {
  override name = "TreeEntryError";
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

/** A ref name that ostree would refuse, or a ref that does not exist. */
export class RefError extends OstreeError {
  override name = "RefError";
}

/** A deployment, boot entry or sysroot that does not look as ostree lays it out. */
export class SysrootError extends OstreeError {
  override name = "SysrootError";
  constructor(readonly where: string, message: string) {
    super(`${where}: ${message}`);
  }
}
