/**
 * The kernel command line (`/proc/cmdline`, or a BLS entry's `options`), and the two kargs
 * that say which deployment a host booted:
 *
 * - `ostree=/ostree/boot.<0|1>/<stateroot>/<bootcsum>/<bootserial>` (ostree-repo.md §10.2,
 *   §10.3: the initramfs resolves it through the `boot.B` → `boot.B.S` symlinks to the
 *   deployment dir);
 * - `composefs=<hex>` / `composefs=?<hex>` (bootc's composefs backend, spec
 *   bootc-unified-storage.md §9.3; `?` = fs-verity optional), and `composefs.digest=<digest>`,
 *   which composefs-boot checks first and which names the V1 EROFS image
 *   (composefs-repo.md §9, §10). Its digest may also be written self-describing,
 *   `v1-sha512-12:<hex>`.
 *
 * Splitting follows the kernel's `next_arg()` (lib/cmdline.c): whitespace separates
 * parameters except inside double quotes; there are no escapes; the key ends at the first
 * `=`; one pair of quotes around a whole parameter or around its value is removed. Keys are
 * compared as the kernel's `parameq()` does: `-` and `_` are the same character.
 *
 * @module
 */

import { HostFileError } from "./errors.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";

/** One parameter of a command line. */
export interface CmdlineParam {
  /** The part before the first `=` (quotes removed). */
  key: string;
  /** The part after the first `=` with surrounding quotes removed; null for a bare flag. */
  value: string | null;
}

/** A parsed `ostree=` karg. */
export interface OstreeKarg {
  /** The karg value as written, e.g. `/ostree/boot.1/default/<bootcsum>/0`. */
  path: string;
  /** `0` or `1`: the bootversion whose `boot.B` symlink the path goes through. */
  bootversion: 0 | 1;
  stateroot: string;
  /** sha256 hex over kernel ‖ initramfs (‖ devicetree). */
  bootcsum: string;
  /** Index among the deployments sharing `bootcsum`. */
  bootserial: number;
}

/** A parsed `composefs=` or `composefs.digest=` karg. */
export interface ComposefsKarg {
  /** Which karg: `composefs` (V2 EROFS, what bootc writes) or `composefs.digest` (V1 EROFS). */
  karg: "composefs" | "composefs.digest";
  /** The image's fs-verity digest, lower-case hex: 128 digits (sha512) or 64 (sha256). */
  digest: string;
  /** `?` prefix: the image may lack fs-verity (bootc's `missingVerityAllowed`). */
  insecure: boolean;
  /** The `v1-sha512-12` style prefix when the digest was written self-describing, else null. */
  format: string | null;
}

/** `/ostree/boot.B/<stateroot>/<bootcsum>/<serial>` with nothing before or after. */
const OSTREE_KARG = /^\/ostree\/boot\.([01])\/([^/]+)\/([0-9a-f]{64})\/(\d+)$/;

/** `v<N>-<alg>-<log2 block size>:` in front of a `composefs.digest=` value. */
const DIGEST_FORMAT = /^(v\d+-(sha256|sha512)-\d+):(.*)$/;

/**
 * A kernel command line, split as the kernel splits it.
 *
 * @example
 * ```ts
 * const c = KernelCmdline.parse('root=UUID=1 rw "quiet=a b" ostree=/ostree/boot.1/default/' +
 *   "0".repeat(64) + "/0\n");
 * c.get("quiet");           // "a b"
 * c.has("rw");              // true
 * c.ostree()?.stateroot;    // "default"
 * ```
 */
export class KernelCmdline {
  /** The text as given (for messages). */
  readonly text: string;
  /** Every parameter in order. */
  readonly params: readonly CmdlineParam[];
  /** Where the text came from, for errors (a path, or `BLS entry <file> options`). */
  readonly source: string;

  private constructor(text: string, params: CmdlineParam[], source: string) {
    this.text = text;
    this.params = params;
    this.source = source;
  }

  /** Splits `text`; `source` names it in errors raised by the karg accessors. */
  static parse(text: string, source = "kernel command line"): KernelCmdline {
    return new KernelCmdline(text, splitCmdline(text), source);
  }

  /**
   * The value of the first parameter named `key` (`-`/`_` equivalent): a string, null when
   * the parameter is a bare flag, undefined when it is absent.
   */
  get(key: string): string | null | undefined {
    const p = this.params.find((p) => paramEq(p.key, key));
    return p === undefined ? undefined : p.value;
  }

  /** The values of every parameter named `key`, in order. */
  getAll(key: string): (string | null)[] {
    return this.params.filter((p) => paramEq(p.key, key)).map((p) => p.value);
  }

  /** True when a parameter named `key` is present (with or without a value). */
  has(key: string): boolean {
    return this.params.some((p) => paramEq(p.key, key));
  }

  /**
   * The `ostree=` karg, or null when there is none.
   *
   * @throws {HostFileError} when it is present but not `/ostree/boot.[01]/<os>/<csum>/<n>`.
   */
  ostree(): OstreeKarg | null {
    const v = this.get("ostree");
    if (v === undefined) return null;
    if (v === null) {
      throw new HostFileError(this.source, "ostree: expected ostree=PATH, found a bare flag");
    }
    const parsed = parseOstreeKarg(v);
    if (!parsed) {
      throw new HostFileError(
        this.source,
        `ostree: expected /ostree/boot.<0|1>/<stateroot>/<64 hex bootcsum>/<serial>, found ${
          JSON.stringify(v)
        }`,
      );
    }
    return parsed;
  }

  /**
   * The composefs image the command line boots: `composefs.digest=` when present (composefs-
   * boot checks it first), else `composefs=`; null when neither is there.
   *
   * @throws {HostFileError} when the karg's digest is not 64 or 128 hex digits.
   */
  composefs(): ComposefsKarg | null {
    return this.composefsV1() ?? this.composefsV2();
  }

  /** Only the `composefs=` karg (what bootc writes and matches deployments by). */
  composefsV2(): ComposefsKarg | null {
    return this.#composefsKarg("composefs");
  }

  /** Only the `composefs.digest=` karg. */
  composefsV1(): ComposefsKarg | null {
    return this.#composefsKarg("composefs.digest");
  }

  /** Every composefs digest this command line names (both kargs), for matching deployments. */
  composefsDigests(): string[] {
    return [this.composefsV1(), this.composefsV2()].filter((k) => k !== null).map((k) => k.digest);
  }

  #composefsKarg(karg: "composefs" | "composefs.digest"): ComposefsKarg | null {
    // Exact key match: composefs-rs matches the literal prefix, and "composefs_backup=" must
    // not count (bootc's test_find_in_cmdline).
    const p = this.params.find((p) => p.key === karg);
    if (p === undefined) return null;
    if (p.value === null) {
      throw new HostFileError(
        this.source,
        `${karg}: expected ${karg}=<hex digest>, found a bare flag`,
      );
    }
    const parsed = parseComposefsKarg(karg, p.value);
    if (!parsed) {
      throw new HostFileError(
        this.source,
        `${karg}: expected [?]<64 or 128 hex digits>${
          karg === "composefs.digest" ? " (optionally v1-sha512-12:<hex>)" : ""
        }, found ${JSON.stringify(p.value)}`,
      );
    }
    return parsed;
  }
}

/**
 * The host's kernel command line, `DIR/proc/cmdline`; null when the file does not exist (a
 * root that is not booted, or early boot without /proc).
 */
export function readKernelCmdline(root: HostRoot): KernelCmdline | null {
  const text = root.readText(HOST_PATHS.procCmdline);
  return text === null ? null : KernelCmdline.parse(text, root.procCmdline);
}

/** Kernel `next_arg()` splitting; see the module doc. */
export function splitCmdline(text: string): CmdlineParam[] {
  const out: CmdlineParam[] = [];
  let i = 0;
  const n = text.length;
  const isSpace = (c: string) =>
    c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\v" || c === "\f";
  while (i < n) {
    while (i < n && isSpace(text[i])) i++;
    if (i >= n) break;
    let start = i;
    let quoted = false;
    let inQuote = false;
    if (text[i] === '"') {
      start = ++i;
      quoted = true;
      inQuote = true;
    }
    let equals = -1;
    while (i < n) {
      const c = text[i];
      if (isSpace(c) && !inQuote) break;
      if (equals < 0 && c === "=") equals = i;
      if (c === '"') inQuote = !inQuote;
      i++;
    }
    let end = i;
    // A quote opening the whole parameter loses its closing quote at the end.
    if (quoted && end > start && text[end - 1] === '"') end--;
    if (equals < 0 || equals >= end) {
      out.push({ key: text.slice(start, end), value: null });
    } else {
      let vStart = equals + 1;
      let vEnd = end;
      if (text[vStart] === '"') {
        vStart++;
        if (vEnd > vStart && text[vEnd - 1] === '"') vEnd--;
      }
      out.push({
        key: text.slice(start, equals),
        value: text.slice(vStart, Math.max(vStart, vEnd)),
      });
    }
    i++; // past the separating whitespace (or the end)
  }
  return out;
}

/** Parses an `ostree=` value; null when it is not `/ostree/boot.[01]/<os>/<csum>/<serial>`. */
export function parseOstreeKarg(value: string): OstreeKarg | null {
  const m = OSTREE_KARG.exec(value);
  if (!m) return null;
  return {
    path: value,
    bootversion: m[1] === "1" ? 1 : 0,
    stateroot: m[2],
    bootcsum: m[3],
    bootserial: Number(m[4]),
  };
}

/**
 * Parses a `composefs=` / `composefs.digest=` value (`[?]<hex>`, or for `composefs.digest`
 * also `[?]v1-sha512-12:<hex>`); null when the digest is not 64 or 128 hex digits.
 */
export function parseComposefsKarg(
  karg: "composefs" | "composefs.digest",
  value: string,
): ComposefsKarg | null {
  let v = value;
  const insecure = v.startsWith("?");
  if (insecure) v = v.slice(1);
  let format: string | null = null;
  if (karg === "composefs.digest") {
    const m = DIGEST_FORMAT.exec(v);
    if (m) {
      format = m[1];
      v = m[3];
      const want = m[2] === "sha512" ? 128 : 64;
      if (v.length !== want) return null;
    }
  }
  if (!/^[0-9a-fA-F]+$/.test(v) || (v.length !== 64 && v.length !== 128)) return null;
  return { karg, digest: v.toLowerCase(), insecure, format };
}

/** The kernel's `parameq()`: `-` and `_` in parameter names are interchangeable. */
function paramEq(a: string, b: string): boolean {
  return a.length === b.length && a.replaceAll("-", "_") === b.replaceAll("-", "_");
}
