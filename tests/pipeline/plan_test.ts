/**
 * The plan: composefs images matched to ostree image commits by manifest digest and by config
 * digest (the image identity), each with its state and whether a synthesis is needed, and the
 * ostree images composefs does not have.
 */

import assert from "node:assert/strict";
import {
  type ComposefsImage,
  type OstreeImage,
  planComposefsToOstree,
} from "../../lib/pipeline/plan.ts";

const d = (c: string) => `sha256:${c.repeat(64)}`;

function ostree(
  name: string,
  manifest: string | null,
  config: string | null,
  synthesized: boolean,
): OstreeImage {
  return {
    imageReference: `docker://quay.io/x/${name}`,
    ref: `ostree/container/image/${name}`,
    commit: name.padEnd(64, "0"),
    manifestDigest: manifest,
    configDigest: config,
    synthesized,
  };
}

Deno.test("plan: each composefs image gets the state ostree has it in", () => {
  const cfs: ComposefsImage[] = [
    { manifestDigest: d("1"), configDigest: d("a"), tags: ["quay.io/x/one:1"] },
    { manifestDigest: d("2"), configDigest: d("b"), tags: ["quay.io/x/two:1"] },
    { manifestDigest: d("3"), configDigest: d("c"), tags: ["quay.io/x/three:1"] },
    { manifestDigest: d("4"), configDigest: d("e"), tags: ["quay.io/x/four:1", "localhost/b"] },
    { manifestDigest: d("5"), configDigest: d("f"), tags: ["both"] },
  ];
  const os: OstreeImage[] = [
    ostree("one", d("1"), d("a"), true), // synthesized from the same manifest
    ostree("two", d("2"), d("b"), false), // pulled by ostree-ext
    ostree("three-recompressed", d("9"), d("c"), true), // same config, other manifest
    ostree("five-pulled", d("5"), d("f"), false),
    ostree("five-synth", d("5"), d("f"), true), // a synthesized one wins over a pulled one
    ostree("legacy", null, null, false), // no image metadata
    ostree("elsewhere", d("8"), d("8"), false),
  ];
  const plan = planComposefsToOstree(cfs, os);
  assert.deepEqual(
    plan.composefsToOstree.map((i) => [i.tags[0], i.state, i.needsSynthesis]),
    [
      ["quay.io/x/one:1", "synthesized", false],
      ["quay.io/x/two:1", "pulled", true],
      ["quay.io/x/three:1", "other-manifest", true],
      ["quay.io/x/four:1", "missing", true],
      ["both", "synthesized", false],
    ],
  );
  const [one, two, three, four, five] = plan.composefsToOstree;
  assert.match(one.reason, /synthesized from this manifest/);
  assert.match(two.reason, /pulled, not synthesized/);
  assert.match(three.reason, new RegExp(`only under manifest ${d("9")}`));
  assert.equal(four.reason, "no ostree commit of this image");
  assert.deepEqual(four.tags, ["quay.io/x/four:1", "localhost/b"]);
  assert.deepEqual(five.ostree.map((o) => o.ref), [
    "ostree/container/image/five-pulled",
    "ostree/container/image/five-synth",
  ]);
  assert.match(five.reason, /five-synth/);
  assert.deepEqual(plan.ostreeOnly.map((o) => o.ref), [
    "ostree/container/image/legacy",
    "ostree/container/image/elsewhere",
  ]);
});

Deno.test("plan: empty stores plan nothing; an ostree-only store is all ostreeOnly", () => {
  assert.deepEqual(planComposefsToOstree([], []), { composefsToOstree: [], ostreeOnly: [] });
  const os = [ostree("a", d("1"), d("2"), true)];
  assert.deepEqual(planComposefsToOstree([], os).ostreeOnly, os);
});
