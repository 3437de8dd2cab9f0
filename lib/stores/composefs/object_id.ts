/**
 * Object ids of a composefs repository: the fs-verity digest of the object's bytes, spelled as
 * lowercase hex, stored at `objects/<first byte hex>/<remaining hex>`.
 *
 * Spec: specs/composefs-repo.md §1.1 (naming, algorithm inferred from name length) and §3
 * (the digest itself, computed by lib/digest/fsverity.ts).
 *
 * @module
 */

import { HASH_SIZES, type HashAlgorithm } from "../../digest/hash.ts";

/** An object id: lowercase hex of the fs-verity digest (64 or 128 characters). */
export type ObjectId = string;

const HEX_RE = /^[0-9a-f]+$/;

/** True when `id` is a well-formed object id for `algorithm`. */
export function isObjectId(id: string, algorithm: HashAlgorithm): boolean {
  return id.length === HASH_SIZES[algorithm] * 2 && HEX_RE.test(id);
}

/**
 * The object's path below `objects/`: `XX/YYYY…`.
 *
 * @example
 * ```ts
 * objectPathname("1e2eaa42…"); // "1e/2eaa42…"
 * ```
 */
export function objectPathname(id: ObjectId): string {
  return `${id.slice(0, 2)}/${id.slice(2)}`;
}

/**
 * The algorithm an object file name (the part after `XX/`) implies: 62 hex digits are sha256,
 * 126 sha512 (composefs-rs `infer_metadata`), anything else `null`.
 */
export function algorithmOfObjectName(name: string): HashAlgorithm | null {
  if (!HEX_RE.test(name)) return null;
  if (name.length === HASH_SIZES.sha256 * 2 - 2) return "sha256";
  if (name.length === HASH_SIZES.sha512 * 2 - 2) return "sha512";
  return null;
}

/**
 * The object id a symlink target names, read from its trailing `XX/<rest>` as composefs-rs
 * `from_object_pathname` does (so `../objects/XX/…` and `../../objects/XX/…` both parse), or
 * `null` when the target does not end in an object path of this algorithm.
 */
export function objectIdFromTarget(target: string, algorithm: HashAlgorithm): ObjectId | null {
  const n = HASH_SIZES[algorithm] * 2;
  if (target.length < n + 1) return null;
  const tail = target.slice(target.length - (n + 1));
  if (tail[2] !== "/") return null;
  const before = target.length - (n + 1);
  if (before > 0 && target[before - 1] !== "/") return null;
  const id = tail.slice(0, 2) + tail.slice(3);
  return isObjectId(id, algorithm) ? id : null;
}
