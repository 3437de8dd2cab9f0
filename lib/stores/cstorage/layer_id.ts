/**
 * Layer ids as c/image derives them (`storage_dest.go` `layerID`; specs/containers-storage.md
 * §2.2): a base layer's id is the hex of its DiffID; a child's id is
 * `sha256_hex(<parent id> + "+" + <DiffID hex>)`. Any other derivation makes podman and skopeo
 * pull the same image again into layers of their own instead of reusing ours.
 *
 * @module
 */

import { hashBytes, toHex } from "../../digest/hash.ts";
import { ImageInputError } from "./errors.ts";
import { isStorageId } from "./layout.ts";

const DIFF_ID_RE = /^sha256:([0-9a-f]{64})$/;

/** The hex part of a `sha256:<hex>` DiffID; throws {@linkcode ImageInputError} otherwise. */
export function diffIdHex(diffId: string, where = "diff id"): string {
  const m = DIFF_ID_RE.exec(diffId);
  if (!m) {
    throw new ImageInputError(
      where,
      `expected a DiffID "sha256:<64 hex>", found ${JSON.stringify(diffId)}`,
    );
  }
  return m[1];
}

/**
 * The id containers-storage gives an image layer with DiffID `diffId` on top of `parentId`
 * (null for a base layer).
 *
 * @example
 * ```ts
 * layerId(null, "sha256:57668afc5780925aa96cbcded57b95a3bc1b7435086bd378e80bb8984aaf6d68");
 * // "57668afc5780925aa96cbcded57b95a3bc1b7435086bd378e80bb8984aaf6d68"
 * layerId(
 *   "57668afc5780925aa96cbcded57b95a3bc1b7435086bd378e80bb8984aaf6d68",
 *   "sha256:324247619d938a5f1d7fbb948b2f9b8aa5edf8695488ae76bb674fcddee54625",
 * ); // "8df12966d0bb8141d3061daec864f3c55da0cbe39368e3c05bdac431b5e5cda3"
 * ```
 */
export function layerId(parentId: string | null, diffId: string): string {
  const hex = diffIdHex(diffId);
  if (parentId === null) return hex;
  if (!isStorageId(parentId)) {
    throw new ImageInputError(
      "parent layer",
      `expected a 64-hex layer id, found ${JSON.stringify(parentId)}`,
    );
  }
  return toHex(hashBytes("sha256", new TextEncoder().encode(`${parentId}+${hex}`)));
}

/** The ids of a whole chain of DiffIDs (base first), each on top of the previous one. */
export function layerChainIds(diffIds: readonly string[]): string[] {
  const ids: string[] = [];
  let parent: string | null = null;
  for (const d of diffIds) {
    parent = layerId(parent, d);
    ids.push(parent);
  }
  return ids;
}
