/**
 * Errors of the reflink engine.
 *
 * @module
 */

/**
 * The target filesystem cannot share blocks with the source, and the policy
 * forbids copying. Raised before anything was written into the target.
 */
export class ReflinkUnsupportedError extends Error {
  /** The errno name FICLONE answered: `EOPNOTSUPP` (filesystem), `EXDEV` (two filesystems), ... */
  readonly code: string;
  /** The directory (or file) the clone was aimed at. */
  readonly target: string;

  constructor(code: string, target: string, detail: string) {
    super(
      `reflinks are not available for ${target}: ${detail} (${code}); ` +
        `use a reflink-capable filesystem (XFS with reflink=1, btrfs) or allow byte copies ` +
        `(unified = "enabled-with-copy")`,
    );
    this.name = "ReflinkUnsupportedError";
    this.code = code;
    this.target = target;
  }
}

/**
 * A file being placed changed between its clone and the read that named it: the clone holds
 * bytes nobody hashed, so it was dropped. Stores' sources (containers-storage `diff/` files,
 * objects) are never rewritten in place; this means another program is writing into one.
 */
export class SourceChangedError extends Error {
  /** The source file. */
  readonly source: string;
  /** What the source was when cloned, and what it was after the read (size and ctime). */
  readonly before: string;
  readonly after: string;

  constructor(source: string, before: string, after: string) {
    super(
      `${source} changed while it was cloned: expected it unchanged (${before}), found ${after}; ` +
        `stop whatever is writing into it and run again`,
    );
    this.name = "SourceChangedError";
    this.source = source;
    this.before = before;
    this.after = after;
  }
}

/** Why FICLONE failed, in words a user can act on. */
export function explainCloneErrno(code: string): string {
  switch (code) {
    case "EOPNOTSUPP":
      return "the filesystem does not support reflinks";
    case "EXDEV":
      return "source and target are on different filesystems";
    case "EINVAL":
      return "the filesystem refused the clone (unaligned range or unsupported file)";
    case "EISDIR":
      return "source or target is a directory";
    case "EBADF":
      return "the target is not open for writing";
    default:
      return "the clone failed";
  }
}
