/**
 * Ref names: ostree's syntax check, `remote:ref` refspecs, and the ostree-ext escaping that
 * turns an arbitrary string (an image reference, a layer digest) into one ref component.
 *
 * Spec: ../../../../shared/specs/ostree-repo.md §1.3 (ref syntax) and §9.1 (ostree-ext refs).
 * The escaping follows bootc `crates/ostree-ext/src/refescape.rs`: ASCII letters and digits pass;
 * `-` passes; `/` passes only right after a letter or digit and not at the end; `_` becomes
 * `__`; any other character becomes `_<HEX>_`, the hex being its Unicode code point in upper
 * case, at least two digits (`:` → `_3A_`, `é` → `_E9_`).
 *
 * @module
 */

import { RefError } from "./errors.ts";

/** Where ostree-ext keeps the merge commit of each image (`ostree/container/image/<escaped>`). */
export const IMAGE_REF_PREFIX = "ostree/container/image";
/** Where ostree-ext keeps one commit per layer blob. */
export const LAYER_REF_PREFIX = "ostree/container/blob";
/** Protected base images (bootc uses `ostree/container/baseimage/bootc/…`). */
export const BASE_IMAGE_REF_PREFIX = "ostree/container/baseimage";

// ostree-core.c OSTREE_REF_REGEXP; GRegex's \w is ASCII-only here (no G_REGEX_UCP).
const REF_FRAGMENT = "[A-Za-z0-9_][-._A-Za-z0-9_]*";
const REF_RE = new RegExp(`^(?:${REF_FRAGMENT}/)*${REF_FRAGMENT}$`);
const REMOTE_RE = new RegExp(`^${REF_FRAGMENT}$`);

/** True when ostree accepts `name` as a ref (branch) name. */
export function isValidRefName(name: string): boolean {
  return REF_RE.test(name);
}

/** @throws {RefError} unless ostree accepts `name` as a ref name. */
export function validateRefName(name: string): void {
  if (!isValidRefName(name)) {
    throw new RefError(
      `invalid ref name ${JSON.stringify(name)}: expected components of letters, digits, ` +
        `"-", "." and "_" separated by "/", each starting with a letter, digit or "_"`,
    );
  }
}

/** A refspec split into remote (or null for a local ref) and ref name. */
export interface Refspec {
  remote: string | null;
  ref: string;
}

/**
 * Splits `remote:ref` (or a plain local `ref`) and validates both parts.
 *
 * @example
 * ```ts
 * parseRefspec("fedora:fedora/x86_64/coreos/stable"); // { remote: "fedora", ref: "fedora/x86_64/coreos/stable" }
 * parseRefspec("exampleos/stable"); // { remote: null, ref: "exampleos/stable" }
 * ```
 */
export function parseRefspec(spec: string): Refspec {
  const colon = spec.indexOf(":");
  if (colon < 0) {
    validateRefName(spec);
    return { remote: null, ref: spec };
  }
  const remote = spec.slice(0, colon);
  const ref = spec.slice(colon + 1);
  if (!REMOTE_RE.test(remote)) {
    throw new RefError(`invalid remote name in refspec ${JSON.stringify(spec)}`);
  }
  validateRefName(ref);
  return { remote, ref };
}

const isAsciiAlnum = (c: string) => /^[A-Za-z0-9]$/.test(c);

/**
 * Escapes `s` into a single ref component (ostree-ext `escape_for_ref`).
 *
 * @throws {RefError} for an empty string or an embedded NUL.
 * @example
 * ```ts
 * escapeForRef("docker://quay.io/fedora/fedora-bootc:42");
 * // "docker_3A__2F__2F_quay_2E_io/fedora/fedora-bootc_3A_42"
 * ```
 */
export function escapeForRef(s: string): string {
  if (s === "") throw new RefError("cannot escape an empty string into a ref");
  const chars = [...s];
  let out = "";
  let prevAlnum = false;
  chars.forEach((c, i) => {
    if (c === "\0") {
      throw new RefError(`embedded NUL in ${JSON.stringify(s)}: not allowed in a ref`);
    }
    const alnum = isAsciiAlnum(c);
    const hasNext = i < chars.length - 1;
    if (alnum || c === "-") out += c;
    else if (c === "/" && prevAlnum && hasNext) out += c;
    else if (c === "_") out += "__";
    else out += `_${c.codePointAt(0)!.toString(16).toUpperCase().padStart(2, "0")}_`;
    prevAlnum = alnum;
  });
  return out;
}

/**
 * Reverses {@linkcode escapeForRef}.
 *
 * @throws {RefError} for a character escaping never produces or a malformed `_XX_` escape.
 */
export function unescapeForRef(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (isAsciiAlnum(c) || c === "-" || c === "/") {
      out += c;
    } else if (c === "_") {
      if (s[i + 1] === "_") {
        out += "_";
        i++;
        continue;
      }
      const close = s.indexOf("_", i + 1);
      const hex = close < 0 ? "" : s.slice(i + 1, close);
      if (!/^[0-9A-Fa-f]+$/.test(hex)) {
        throw new RefError(`malformed escape at offset ${i} of ref component ${JSON.stringify(s)}`);
      }
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        throw new RefError(`escape _${hex}_ in ${JSON.stringify(s)} is not a Unicode character`);
      }
      out += String.fromCodePoint(cp);
      i = close;
    } else {
      throw new RefError(
        `invalid character ${JSON.stringify(c)} in escaped ref ${JSON.stringify(s)}`,
      );
    }
  }
  return out;
}

/**
 * The ref for `s` under `prefix`: `prefix/escaped`.
 *
 * @example
 * ```ts
 * prefixEscapeForRef("ostree/container/blob", "sha256:abc"); // "ostree/container/blob/sha256_3A_abc"
 * ```
 */
export function prefixEscapeForRef(prefix: string, s: string): string {
  const ref = `${prefix}/${escapeForRef(s)}`;
  validateRefName(ref);
  return ref;
}

/**
 * The string a ref under `prefix` stands for.
 *
 * @throws {RefError} when `ref` is not below `prefix`, or does not unescape.
 */
export function unprefixUnescapeRef(prefix: string, ref: string): string {
  if (!ref.startsWith(prefix + "/")) {
    throw new RefError(`ref ${JSON.stringify(ref)} is not below ${prefix}/`);
  }
  return unescapeForRef(ref.slice(prefix.length + 1));
}

/**
 * The ostree-ext ref of an image's merge commit.
 *
 * @example
 * ```ts
 * imageRef("ostree-unverified-registry:quay.io/x/y:tag");
 * // "ostree/container/image/ostree-unverified-registry_3A_quay_2E_io/x/y_3A_tag"
 * ```
 */
export function imageRef(imageReference: string): string {
  return prefixEscapeForRef(IMAGE_REF_PREFIX, imageReference);
}

/** The image reference an `ostree/container/image/…` ref stands for. */
export function imageReferenceOfRef(ref: string): string {
  return unprefixUnescapeRef(IMAGE_REF_PREFIX, ref);
}

/** The ostree-ext ref of a layer commit, from the layer's digest (`sha256:…`). */
export function layerRef(digest: string): string {
  return prefixEscapeForRef(LAYER_REF_PREFIX, digest);
}
