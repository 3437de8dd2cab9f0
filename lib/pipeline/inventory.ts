/**
 * What each store holds, in the shape lib/pipeline/plan.ts compares: the composefs repository's
 * tagged images and the ostree repository's image commits. Reads metadata only (tags, splitstream
 * headers, commit objects).
 *
 * @module
 */

import { OciError } from "../oci/errors.ts";
import { parseManifest } from "../oci/manifest.ts";
import { listTags, manifestStreamName } from "../stores/composefs/oci_image.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CONTENT_TYPE, SplitStream } from "../stores/composefs/splitstream.ts";
import { listImages } from "../stores/ostree/image.ts";
import type { OstreeRepo } from "../stores/ostree/repo.ts";
import type { ComposefsImage, OstreeImage } from "./plan.ts";

const CONFIG_REF_PREFIX = "config:";

/**
 * Every tagged image of the composefs repository, one per manifest digest with all its tags
 * (bootc's `localhost/bootc-…` GC-root tags included), sorted by manifest digest. The config
 * digest comes from the manifest stream's `config:<digest>` named ref, so no JSON is read.
 */
export function composefsImages(repo: ComposefsRepo): ComposefsImage[] {
  const byDigest = new Map<string, string[]>();
  for (const t of listTags(repo)) {
    const tags = byDigest.get(t.manifestDigest) ?? [];
    tags.push(t.name);
    byDigest.set(t.manifestDigest, tags);
  }
  const out: ComposefsImage[] = [];
  for (const [manifestDigest, tags] of [...byDigest].sort(([a], [b]) => (a < b ? -1 : 1))) {
    using s = SplitStream.openStream(
      repo,
      manifestStreamName(manifestDigest),
      CONTENT_TYPE.ociManifest,
    );
    const configKey = [...s.index.namedRefs.keys()].find((k) => k.startsWith(CONFIG_REF_PREFIX));
    out.push({
      manifestDigest,
      configDigest: configKey?.slice(CONFIG_REF_PREFIX.length) ?? "",
      tags,
    });
  }
  return out;
}

/**
 * Every image commit of the ostree repository (`ostree/container/image/…`), with the config
 * digest read from the manifest in its metadata (null when absent or unparsable).
 */
export function ostreeImages(repo: OstreeRepo): OstreeImage[] {
  return listImages(repo).map((img) => {
    let configDigest: string | null = null;
    if (img.metadata) {
      try {
        const m = parseManifest(
          new TextEncoder().encode(img.metadata.manifest),
          `${img.ref} ostree.manifest`,
        );
        configDigest = m.config.digest;
      } catch (e) {
        if (!(e instanceof OciError)) throw e;
      }
    }
    return {
      imageReference: img.imageReference,
      ref: img.ref,
      commit: img.commit,
      manifestDigest: img.metadata?.manifestDigest ?? null,
      configDigest,
      synthesized: img.metadata?.composefsSynthesized ?? false,
    };
  });
}
