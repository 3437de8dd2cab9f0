/**
 * Checking one image of a store, after c/storage's `store.Check` (specs/containers-storage.md
 * §6), restricted to what an image needs to be usable and exportable:
 *
 * - every layer of its chain exists, is complete, and has `overlay/<id>/diff`, a `link` whose
 *   `l/` symlink points back at it, the `lower` file its parents imply (or `empty/` for a base
 *   layer), and a tar-split file;
 * - the config big-data item exists, hashes to the image id, and its `rootfs.diff_ids` are the
 *   chain's `diff-digest`s;
 * - every big-data item exists with its recorded size (and, deep, its recorded digest);
 * - deep: each layer's tar, rebuilt from tar-split and `diff/`, passes every CRC-64 and hashes
 *   to its `diff-digest` (`LayerDigests`).
 *
 * Problems are returned, not thrown: a report lists all of them.
 *
 * @module
 */

import { SysError } from "../../../ffi/errno.ts";
import { S, statAt } from "../../../ffi/fs.ts";
import { hashBytes, toHex } from "../../digest/hash.ts";
import { isManifestKey, readImageBigData } from "./big_data.ts";
import { CStorageError } from "./errors.ts";
import type { ImageRecord } from "./image_record.ts";
import { configDiffIds } from "./image_writer.ts";
import type { LayerRecord } from "./layer_record.ts";
import { verifyLayer } from "./layer_tar.ts";
import { LAYER_DIR, PATHS, tarSplitPath } from "./layout.ts";
import { readLinkId, readLowers, resolveLinkId } from "./overlay_layer.ts";
import type { StoreRoot } from "./store_root.ts";

/** One thing wrong with an image. */
export interface CheckProblem {
  /** `image <id>`, `layer <id>` or `image <id> big-data <key>`. */
  object: string;
  /** The file concerned, when there is one. */
  path?: string;
  message: string;
}

/** The verdict on one image. */
export interface ImageCheckReport {
  imageId: string;
  names: string[];
  /** Layer ids, base first, as far as the chain could be followed. */
  layers: string[];
  deep: boolean;
  ok: boolean;
  problems: CheckProblem[];
}

/** Options of {@linkcode checkImageRecord}. */
export interface CheckOptions {
  /** Rebuild every layer tar and re-hash big data (reads everything). */
  deep?: boolean;
}

function isDir(root: StoreRoot, rel: string): boolean {
  try {
    return (statAt(root.fd, rel).mode & S.IFMT) === S.IFDIR;
  } catch (e) {
    if (e instanceof SysError && (e.is("ENOENT") || e.is("ENOTDIR"))) return false;
    throw e;
  }
}

function exists(root: StoreRoot, rel: string): boolean {
  try {
    statAt(root.fd, rel);
    return true;
  } catch (e) {
    if (e instanceof SysError && (e.is("ENOENT") || e.is("ENOTDIR"))) return false;
    throw e;
  }
}

const sha256 = (b: Uint8Array) => `sha256:${toHex(hashBytes("sha256", b))}`;

/**
 * Checks `image` against the store's layers (`layers`, by id). The caller holds read locks on
 * the layer and image stores.
 */
export async function checkImageRecord(
  root: StoreRoot,
  image: ImageRecord,
  layers: ReadonlyMap<string, LayerRecord>,
  opts: CheckOptions = {},
): Promise<ImageCheckReport> {
  const problems: CheckProblem[] = [];
  const imageObj = `image ${image.id}`;
  const driverPath = `${root.path}/${PATHS.driverDir}`;

  // The chain, top first while walking.
  const chain: LayerRecord[] = [];
  const seen = new Set<string>();
  for (let id = image.topLayer, child = "the image"; id !== null;) {
    if (seen.has(id)) {
      problems.push({ object: imageObj, message: `layer chain loops at ${id}` });
      break;
    }
    seen.add(id);
    const layer = layers.get(id);
    if (!layer) {
      problems.push({
        object: `layer ${id}`,
        path: `${root.path}/${PATHS.layersDir}/${PATHS.layersJson}`,
        message: `missing (needed by ${child})`,
      });
      break;
    }
    chain.push(layer);
    child = `layer ${id}`;
    id = layer.parent;
  }
  chain.reverse();

  for (const [i, layer] of chain.entries()) {
    const obj = `layer ${layer.id}`;
    const dir = `${PATHS.driverDir}/${layer.id}`;
    if (layer.incomplete) {
      problems.push({ object: obj, message: "flagged incomplete (being written or deleted)" });
    }
    if (!isDir(root, `${dir}/${LAYER_DIR.diff}`)) {
      problems.push({
        object: obj,
        path: `${root.path}/${dir}/${LAYER_DIR.diff}`,
        message: "diff directory missing",
      });
      continue;
    }
    try {
      root.withDir(PATHS.driverDir, (driverFd) => {
        const link = readLinkId(driverFd, driverPath, layer.id);
        if (link === null) {
          problems.push({
            object: obj,
            path: `${root.path}/${dir}/link`,
            message: "link file missing",
          });
        } else if (resolveLinkId(driverFd, driverPath, link) !== layer.id) {
          problems.push({
            object: obj,
            path: `${driverPath}/${PATHS.linkDir}/${link}`,
            message: `short link ${link} does not point at ../${layer.id}/diff`,
          });
        }
        if (layer.parent === null) {
          if (!isDir(root, `${dir}/${LAYER_DIR.empty}`)) {
            problems.push({
              object: obj,
              path: `${root.path}/${dir}/empty`,
              message: "base layer has no empty/ directory",
            });
          }
        } else if (i > 0 && chain[i - 1].id === layer.parent) {
          const parentLink = readLinkId(driverFd, driverPath, chain[i - 1].id);
          const expected = parentLink === null
            ? null
            : [`${PATHS.linkDir}/${parentLink}`, ...readLowers(driverFd, chain[i - 1].id)].join(
              ":",
            );
          const found = readLowers(driverFd, layer.id).join(":");
          if (expected !== null && found !== expected) {
            problems.push({
              object: obj,
              path: `${root.path}/${dir}/lower`,
              message: `lower is ${JSON.stringify(found)}, the parents imply ${
                JSON.stringify(expected)
              }`,
            });
          }
        }
      });
    } catch (e) {
      if (!(e instanceof CStorageError)) throw e;
      problems.push({ object: obj, path: e.where, message: e.message });
    }
    if (layer.diffDigest && !exists(root, tarSplitPath(layer.id))) {
      problems.push({
        object: obj,
        path: `${root.path}/${tarSplitPath(layer.id)}`,
        message: "tar-split file missing",
      });
    }
  }

  // Config: present, named by its digest, and fixing the chain's DiffIDs.
  const configKey = `sha256:${image.id}`;
  try {
    const config = readImageBigData(root.fd, root.path, image.id, configKey);
    if (sha256(config) !== configKey) {
      problems.push({
        object: `${imageObj} big-data ${configKey}`,
        message: `config hashes to ${sha256(config)}`,
      });
    }
    const diffIds = configDiffIds(config, `${imageObj} config`);
    const chainIds = chain.map((l) => l.diffDigest ?? "(none)");
    const complete = chain.length === 0 ? image.topLayer === null : chain[0].parent === null;
    if (complete && JSON.stringify(diffIds) !== JSON.stringify(chainIds)) {
      problems.push({
        object: imageObj,
        message: `config diff_ids ${JSON.stringify(diffIds)} differ from the layers' diff-digests ${
          JSON.stringify(chainIds)
        }`,
      });
    }
  } catch (e) {
    if (!(e instanceof CStorageError)) throw e;
    problems.push({
      object: `${imageObj} big-data ${configKey}`,
      path: e.where,
      message: e.message,
    });
  }

  for (const key of image.bigDataNames) {
    const obj = `${imageObj} big-data ${key}`;
    let bytes: Uint8Array;
    try {
      bytes = readImageBigData(root.fd, root.path, image.id, key);
    } catch (e) {
      if (!(e instanceof CStorageError)) throw e;
      problems.push({ object: obj, path: e.where, message: "file missing" });
      continue;
    }
    const size = image.bigDataSizes[key];
    if (size !== undefined && size !== bytes.length) {
      problems.push({ object: obj, message: `${bytes.length} bytes, big-data-sizes says ${size}` });
    }
    const digest = image.bigDataDigests[key];
    if (
      opts.deep && digest?.startsWith("sha256:") && !isSchema1Manifest(key, bytes) &&
      sha256(bytes) !== digest
    ) {
      problems.push({
        object: obj,
        message: `hashes to ${sha256(bytes)}, big-data-digests says ${digest}`,
      });
    }
  }

  if (opts.deep) {
    for (const layer of chain) {
      if (!layer.diffDigest) continue;
      try {
        await verifyLayer(root, layer);
      } catch (e) {
        if (!(e instanceof CStorageError)) throw e;
        problems.push({ object: `layer ${layer.id}`, path: e.where, message: e.message });
      }
    }
  }

  return {
    imageId: image.id,
    names: image.names,
    layers: chain.map((l) => l.id),
    deep: opts.deep ?? false,
    ok: problems.length === 0,
    problems,
  };
}

/** Schema 1 manifests are digested without their signatures: their bytes do not hash to the key. */
function isSchema1Manifest(key: string, bytes: Uint8Array): boolean {
  if (!isManifestKey(key)) return false;
  try {
    return JSON.parse(new TextDecoder().decode(bytes)).schemaVersion === 1;
  } catch {
    return false;
  }
}
