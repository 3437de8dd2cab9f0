/**
 * The tar entries of a layer stored in a composefs repository, each regular file with where its
 * bytes are (an object id, or the inline bytes), read from the layer splitstream without reading
 * any object.
 *
 * A layer splitstream (specs/composefs-repo.md §5.10) is the exact layer tar in which the payload
 * of every regular file over 64 bytes is an external chunk: the whole content of one object. The
 * headers, small payloads and padding are inline. So the tar can be parsed from the inline bytes
 * alone if each external chunk is stood in for by as many placeholder bytes as the object holds:
 * {@linkcode TarReader} then sees a well-formed archive, and the offsets tell which object is the
 * payload of which entry. The objects' bytes are read later, once, by whoever clones them.
 *
 * What is checked, because a foreign writer could get it wrong (composefs-rs `get_entry` checks
 * the same): an external chunk starts exactly at a regular file's payload and is exactly as long
 * (the object's size); a regular file over {@linkcode INLINE_CONTENT_MAX} bytes is external and
 * none at or below it is; no external chunk lies anywhere else (headers, padding, trailer).
 *
 * @module
 */

import { isErrno } from "../../ffi/errno.ts";
import { statAt } from "../../ffi/fs.ts";
import { type TarEntry, TarReader } from "../oci/tar.ts";
import { type ObjectId, objectPathname } from "../stores/composefs/object_id.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CONTENT_TYPE, INLINE_CONTENT_MAX, SplitStream } from "../stores/composefs/splitstream.ts";
import { LayerStreamError } from "./errors.ts";
import { placeholderTar } from "./placeholder_tar.ts";

/** Where a regular file's bytes are. */
export type FileContent =
  | { kind: "object"; id: ObjectId; size: number }
  | { kind: "inline"; bytes: Uint8Array };

/** One tar entry of a layer; `content` is set for regular files (`file`, `contiguous`). */
export interface LayerEntry {
  /** The parsed header (path, type, owner, mode, xattrs, link target, ...). */
  tar: TarEntry;
  content?: FileContent;
}

/**
 * The entries of the layer splitstream stored as object `streamId`, in archive order.
 *
 * @param where names the layer in errors (e.g. `composefs/streams/oci-layer-sha256:…`).
 * @throws {LayerStreamError} when external chunks and file payloads do not line up.
 *
 * @example
 * ```ts ignore
 * for await (const e of layerEntries(repo, image.layerStreams.get(diffId)!)) {
 *   if (e.content?.kind === "object") console.log(e.tar.pathText, "is object", e.content.id);
 * }
 * ```
 */
export async function* layerEntries(
  repo: ComposefsRepo,
  streamId: ObjectId,
  where = `${repo.path}/${repo.objectPath(streamId)}`,
): AsyncGenerator<LayerEntry> {
  using stream = SplitStream.openObject(repo, streamId, CONTENT_TYPE.ociLayer, where);
  /** External chunks seen by the tar reader and not yet matched to an entry, in order. */
  const externals: { id: ObjectId; size: number; offset: number }[] = [];
  const tarBytes = placeholderTar(stream.chunks(), (c, offset) => {
    if (c.kind === "inline") return c.bytes;
    const size = objectSize(repo, c.id, where);
    externals.push({ id: c.id, size, offset });
    return size;
  });

  const tar = new TarReader(tarBytes, where);
  const stray = (e: TarEntry | null) => {
    const x = externals[0];
    return new LayerStreamError(
      where,
      `external chunk (object ${x.id}) at byte ${x.offset} is not the payload of a regular ` +
        `file over ${INLINE_CONTENT_MAX} bytes` +
        (e
          ? ` (found it at entry ${JSON.stringify(e.pathText)})`
          : " (found it after the last entry)"),
    );
  };
  for (let e = await tar.next(); e !== null; e = await tar.next()) {
    if (externals.length > 0) throw stray(e);
    if (e.sparse) {
      throw new LayerStreamError(
        `${where} entry ${JSON.stringify(e.pathText)}`,
        "sparse tar entries are not supported (composefs layers cannot hold them)",
      );
    }
    const regular = e.type === "file" || e.type === "contiguous";
    if (!regular) {
      yield { tar: e };
      continue;
    }
    if (e.payloadSize > INLINE_CONTENT_MAX) {
      for await (const _ of tar.readPayload()) { /* placeholder bytes */ }
      const x = externals.shift();
      if (!x || x.offset !== e.payloadOffset || x.size !== e.payloadSize) {
        throw new LayerStreamError(
          `${where} entry ${JSON.stringify(e.pathText)}`,
          `expected the ${e.payloadSize}-byte payload at byte ${e.payloadOffset} to be one ` +
            `external chunk, found ${
              x
                ? `object ${x.id} of ${x.size} bytes at byte ${x.offset}`
                : "inline data (a payload over 64 bytes must be an object)"
            }`,
        );
      }
      yield { tar: e, content: { kind: "object", id: x.id, size: x.size } };
    } else {
      const bytes = new Uint8Array(e.payloadSize);
      let at = 0;
      for await (const part of tar.readPayload()) {
        bytes.set(part, at);
        at += part.length;
      }
      if (externals.length > 0) throw stray(e);
      yield { tar: e, content: { kind: "inline", bytes } };
    }
  }
  for await (const _ of tar.readTrailer()) { /* end-of-archive blocks and record padding */ }
  if (externals.length > 0) throw stray(null);
}

function objectSize(repo: ComposefsRepo, id: ObjectId, where: string): number {
  try {
    return statAt(repo.objectsDirfd(), objectPathname(id)).size;
  } catch (e) {
    if (isErrno(e, "ENOENT")) {
      throw new LayerStreamError(where, `references object ${id}, which is missing`);
    }
    throw e;
  }
}
