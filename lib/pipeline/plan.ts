/**
 * What is missing where: given what each store holds, which images the pipeline has to move.
 * Pure: the inputs come from lib/pipeline/inventory.ts (or a test), nothing is read here.
 *
 * Image identity across stores is the OCI config digest (DESIGN §4): a manifest digest changes
 * when an image is recompressed, the config digest (and with it the layers' diff_ids) does not.
 * The synthesis itself is keyed by manifest digest, as bootc keys it: a composefs image needs a
 * synthesis unless the ostree repository has a commit synthesized from that very manifest.
 *
 * @module
 */

/** An image in the composefs repository (all its tags). */
export interface ComposefsImage {
  manifestDigest: string;
  configDigest: string;
  tags: string[];
}

/** An image commit in the ostree repository (`ostree/container/image/…`). */
export interface OstreeImage {
  /** `docker://quay.io/x/y:tag`. */
  imageReference: string;
  ref: string;
  commit: string;
  /** null when the commit carries no image metadata. */
  manifestDigest: string | null;
  /** From the manifest in the commit metadata; null when unknown. */
  configDigest: string | null;
  /** `ostree-ext.composefs-synthesized` is set. */
  synthesized: boolean;
}

/**
 * Where a composefs image stands in ostree:
 * - `synthesized`: a commit synthesized from the same manifest exists: nothing to do;
 * - `pulled`: a commit of the same manifest exists but was not synthesized (ostree-ext pulled
 *   it), so its objects do not share blocks with composefs;
 * - `other-manifest`: only commits of the same image under another manifest digest exist;
 * - `missing`: no commit of this image.
 */
export type OstreeState = "synthesized" | "pulled" | "other-manifest" | "missing";

/** One composefs image and what the ostree repository has of it. */
export interface ComposefsToOstreeItem {
  manifestDigest: string;
  configDigest: string;
  tags: string[];
  state: OstreeState;
  /** Every ostree image commit of this image (same config or manifest digest). */
  ostree: OstreeImage[];
  /** `synthesizeOstreeCommit` has work to do. */
  needsSynthesis: boolean;
  /** One line saying why (or why not). */
  reason: string;
}

/** What the pipeline would do between composefs and ostree. */
export interface ComposefsOstreePlan {
  /** One item per composefs image, in input order. */
  composefsToOstree: ComposefsToOstreeItem[];
  /** ostree image commits of no composefs image (pulled before unification, for example). */
  ostreeOnly: OstreeImage[];
}

/**
 * Matches composefs images to ostree image commits and says which need a synthesis.
 *
 * @example
 * ```ts
 * const plan = planComposefsToOstree(
 *   [{ manifestDigest: "sha256:aa", configDigest: "sha256:cc", tags: ["quay.io/x:1"] }],
 *   [],
 * );
 * plan.composefsToOstree[0].state; // "missing"
 * plan.composefsToOstree[0].needsSynthesis; // true
 * ```
 */
export function planComposefsToOstree(
  composefs: readonly ComposefsImage[],
  ostree: readonly OstreeImage[],
): ComposefsOstreePlan {
  const matched = new Set<OstreeImage>();
  const items = composefs.map((img): ComposefsToOstreeItem => {
    const same = ostree.filter((o) =>
      o.manifestDigest === img.manifestDigest ||
      (o.configDigest !== null && o.configDigest === img.configDigest)
    );
    same.forEach((o) => matched.add(o));
    const sameManifest = same.filter((o) => o.manifestDigest === img.manifestDigest);
    const base = {
      manifestDigest: img.manifestDigest,
      configDigest: img.configDigest,
      tags: [...img.tags],
      ostree: same,
    };
    const synthesized = sameManifest.find((o) => o.synthesized);
    if (synthesized) {
      return {
        ...base,
        state: "synthesized",
        needsSynthesis: false,
        reason: `ostree commit ${synthesized.commit} (${synthesized.ref}) was synthesized ` +
          `from this manifest`,
      };
    }
    if (sameManifest.length > 0) {
      return {
        ...base,
        state: "pulled",
        needsSynthesis: true,
        reason: `ostree commit ${sameManifest[0].commit} was pulled, not synthesized from ` +
          `composefs: its objects share no blocks with composefs`,
      };
    }
    if (same.length > 0) {
      return {
        ...base,
        state: "other-manifest",
        needsSynthesis: true,
        reason: `ostree has this image (config ${img.configDigest}) only under manifest ` +
          `${same[0].manifestDigest ?? "(unknown)"}`,
      };
    }
    return {
      ...base,
      state: "missing",
      needsSynthesis: true,
      reason: "no ostree commit of this image",
    };
  });
  return {
    composefsToOstree: items,
    ostreeOnly: ostree.filter((o) => !matched.has(o)),
  };
}
