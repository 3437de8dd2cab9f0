/**
 * Errors of the host layer. Each names the file it is about (as a path on this machine, i.e.
 * under `--root`), what was expected and what was found, so a command can print the message as
 * it is: `unistore: <file>: <key>: expected ..., found ...`.
 *
 * @module
 */

/** Base class: everything `lib/host/` throws on purpose is a `HostError`. */
export class HostError extends Error {
  override name = "HostError";
}

/**
 * A host file (BLS entry, origin, staged-deployment marker, `bootc.json`, kernel command line,
 * ostree repo `config`) that is present but does not parse or holds a value unistore refuses.
 */
export class HostFileError extends HostError {
  override name = "HostFileError";
  /** The file, as a path on this machine. */
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(`${path}: ${message}`, options);
    this.path = path;
  }
}

/**
 * An install-config file (`*.toml` under a `bootc/install` dir) that bootc would refuse: bad
 * TOML, an unknown key, or a value of the wrong type or outside the allowed set.
 *
 * The message is `<file>: <key>: expected <expected>, found <found>`; for TOML syntax errors
 * `<key>` is `line L, column C` and the smol-toml code excerpt follows on the next lines.
 */
export class InstallConfigError extends HostError {
  override name = "InstallConfigError";
  /** The file, as a path on this machine. */
  readonly file: string;
  /** Dotted key path (`install.storage.unified`), or null for a TOML syntax error. */
  readonly key: string | null;
  /** What was allowed, e.g. `one of "disabled", "enabled", "enabled-with-copy"`. */
  readonly expected: string;
  /** What the file holds, rendered as TOML-ish text (`"enable"`, `3`, `a table`). */
  readonly found: string;
  /** 1-based position of a TOML syntax error. */
  readonly line?: number;
  readonly column?: number;

  constructor(
    init: {
      file: string;
      key: string | null;
      expected: string;
      found: string;
      line?: number;
      column?: number;
      excerpt?: string;
    },
    options?: ErrorOptions,
  ) {
    const where = init.key ?? `line ${init.line}, column ${init.column}`;
    const excerpt = init.excerpt ? `\n${init.excerpt.trimEnd()}` : "";
    super(
      `${init.file}: ${where}: expected ${init.expected}, found ${init.found}${excerpt}`,
      options,
    );
    this.file = init.file;
    this.key = init.key;
    this.expected = init.expected;
    this.found = init.found;
    this.line = init.line;
    this.column = init.column;
  }
}
