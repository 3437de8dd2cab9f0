/**
 * A layer's directory in the overlay driver's home (`ROOT/overlay/<id>/`), made as c/storage's
 * `Driver.create` makes it (specs/containers-storage.md §1):
 *
 * ```
 * overlay/<id>/        0700
 *   diff/              base layer 0555; a child copies its parent's diff mode
 *   link               the short id (26 base32 chars, no newline), 0644
 *   lower              "l/<parent link>:<parent's lower>" (children only), 0644
 *   empty/             base layers only: the dummy lowerdir, 0700
 *   work/ merged/      0700
 * overlay/l/<link> -> ../<id>/diff
 * ```
 *
 * podman mounts an image as `lowerdir=l/<top link>:<top's lower>`; a wrong or missing `l/`
 * link makes `podman run` fail with ENOENT at mount time.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import {
  close,
  closeQuietly,
  ensureDirAt,
  fchmod,
  fstat,
  mkdirAt,
  O,
  openAt,
  openDirAt,
  readFileAt,
  readlinkAt,
  symlinkAt,
  unlinkAt,
  writeAll,
} from "../../../ffi/fs.ts";
import { StoreFormatError } from "./errors.ts";
import { LAYER_DIR, LINK_ID_LENGTH, MODES, PATHS } from "./layout.ts";
import { removeTreeAt } from "../../../ffi/remove_tree.ts";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** A random short link id: base32 of random bytes, cut to 26 chars (overlay `generateID`). */
export function newLinkId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil((LINK_ID_LENGTH * 5) / 8)));
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < LINK_ID_LENGTH) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.slice(0, LINK_ID_LENGTH);
}

const LINK_ID_RE = /^[A-Z0-9]{1,64}$/;
const LINK_TARGET_RE = /^\.\.\/([0-9a-f]{64})\/diff$/;

function writeSmallFile(dirfd: number, name: string, text: string, mode: number): void {
  const fd = openAt(dirfd, name, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, mode);
  try {
    fchmod(fd, mode);
    writeAll(fd, new TextEncoder().encode(text), name);
  } finally {
    close(fd);
  }
}

/** The short link id of layer `id` (its `link` file), or null when it has none. */
export function readLinkId(driverFd: number, driverPath: string, id: string): string | null {
  let text: string;
  try {
    text = new TextDecoder().decode(readFileAt(driverFd, `${id}/${LAYER_DIR.link}`)).trim();
  } catch (e) {
    if (isErrno(e, "ENOENT")) return null;
    throw e;
  }
  if (!LINK_ID_RE.test(text)) {
    throw new StoreFormatError(
      `${driverPath}/${id}/link`,
      `expected a short link id, found ${JSON.stringify(text)}`,
    );
  }
  return text;
}

/** The entries of layer `id`'s `lower` file (`l/<link>` each, uppermost first); [] for none. */
export function readLowers(driverFd: number, id: string): string[] {
  try {
    const text = new TextDecoder().decode(readFileAt(driverFd, `${id}/${LAYER_DIR.lower}`)).trim();
    return text === "" ? [] : text.split(":");
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
}

/**
 * The layer id an `l/<link>` entry points at (`../<id>/diff`), or null when the link is
 * missing. The target is parsed, never followed.
 */
export function resolveLinkId(driverFd: number, driverPath: string, link: string): string | null {
  const name = link.startsWith(`${PATHS.linkDir}/`) ? link.slice(PATHS.linkDir.length + 1) : link;
  if (!LINK_ID_RE.test(name)) {
    throw new StoreFormatError(
      `${driverPath}/${PATHS.linkDir}`,
      `invalid short link ${JSON.stringify(link)}`,
    );
  }
  let target: string;
  try {
    target = readlinkAt(driverFd, `${PATHS.linkDir}/${name}`);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return null;
    throw e;
  }
  const m = LINK_TARGET_RE.exec(target);
  if (!m) {
    throw new StoreFormatError(
      `${driverPath}/${PATHS.linkDir}/${name}`,
      `expected a symlink to ../<layer id>/diff, found ${JSON.stringify(target)}`,
    );
  }
  return m[1];
}

/** What {@linkcode createLayerDir} made. */
export interface CreatedLayerDir {
  linkId: string;
  /** The `lower` file's content (children only). */
  lower: string | null;
}

/**
 * Creates `overlay/<id>/` for a new layer on top of `parentId` (null: base layer). A leftover
 * directory of the same id is removed first, as the overlay driver does. The parent's
 * directory and `link` must exist.
 */
export function createLayerDir(
  driverFd: number,
  driverPath: string,
  id: string,
  parentId: string | null,
): CreatedLayerDir {
  ensureDirAt(driverFd, PATHS.linkDir, MODES.linkDir);
  removeLayerDir(driverFd, driverPath, id);

  let diffMode: number = MODES.baseDiff;
  let lower: string | null = null;
  if (parentId !== null) {
    const parentDiff = openDirAt(driverFd, `${parentId}/${LAYER_DIR.diff}`);
    try {
      diffMode = fstat(parentDiff).mode & 0o7777;
    } finally {
      close(parentDiff);
    }
    const parentLink = readLinkId(driverFd, driverPath, parentId);
    if (parentLink === null) {
      throw new StoreFormatError(`${driverPath}/${parentId}/link`, "parent layer has no link file");
    }
    lower = [`${PATHS.linkDir}/${parentLink}`, ...readLowers(driverFd, parentId)].join(":");
  }

  mkdirAt(driverFd, id, MODES.layerDir);
  const dirfd = openDirAt(driverFd, id);
  try {
    fchmod(dirfd, MODES.layerDir);
    mkdirAt(dirfd, LAYER_DIR.diff, 0o700);
    chmodDir(dirfd, LAYER_DIR.diff, diffMode);
    let linkId = newLinkId();
    for (let attempt = 0;; attempt++) {
      try {
        symlinkAt(`../${id}/${LAYER_DIR.diff}`, driverFd, `${PATHS.linkDir}/${linkId}`);
        break;
      } catch (e) {
        if (!isErrno(e, "EEXIST") || attempt > 8) throw e;
        linkId = newLinkId();
      }
    }
    writeSmallFile(dirfd, LAYER_DIR.link, linkId, MODES.linkFile);
    for (const d of [LAYER_DIR.work, LAYER_DIR.merged]) {
      mkdirAt(dirfd, d, MODES.workDir);
      chmodDir(dirfd, d, MODES.workDir);
    }
    if (lower === null) {
      mkdirAt(dirfd, LAYER_DIR.empty, MODES.workDir);
      chmodDir(dirfd, LAYER_DIR.empty, MODES.workDir);
    } else {
      writeSmallFile(dirfd, LAYER_DIR.lower, lower, MODES.lowerFile);
    }
    return { linkId, lower };
  } finally {
    close(dirfd);
  }
}

function chmodDir(dirfd: number, name: string, mode: number): void {
  const fd = openDirAt(dirfd, name);
  try {
    fchmod(fd, mode);
  } finally {
    closeQuietly(fd);
  }
}

/**
 * Removes `overlay/<id>/` and its `l/` link (only when that link points at this layer).
 * Missing pieces are fine: this is also the rollback of a half-created layer.
 */
export function removeLayerDir(driverFd: number, driverPath: string, id: string): void {
  let linkId: string | null = null;
  try {
    linkId = readLinkId(driverFd, driverPath, id);
  } catch (e) {
    if (!(e instanceof StoreFormatError)) throw e;
  }
  if (linkId !== null) {
    try {
      if (resolveLinkId(driverFd, driverPath, linkId) === id) {
        unlinkAt(driverFd, `${PATHS.linkDir}/${linkId}`);
      }
    } catch (e) {
      if (!(e instanceof StoreFormatError) && !isErrno(e, "ENOENT")) throw e;
    }
  }
  removeTreeAt(driverFd, id);
}
