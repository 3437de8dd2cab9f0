/**
 * `unistore image list` and `unistore image import SOURCE [--to STORES]`: the
 * host's stores seen as one. composefs is the hub (DESIGN §2): an import
 * lands there first, and goes on to ostree from there by reflink.
 *
 * @module
 */

import { HostRoot } from "../host/root.ts";
import { OciLayout } from "../oci/layout.ts";
import { importComposefsImageToOstree } from "../pipeline/composefs_to_ostree.ts";
import { listHostImages } from "../pipeline/image_list.ts";
import { exportComposefsImageToCStorage } from "../pipeline/composefs_to_cstorage.ts";
import { importCStorageImageToComposefs } from "../pipeline/cstorage_to_composefs.ts";
import { CStorage } from "../stores/cstorage/mod.ts";
import type { CopyPolicy } from "../reflink/place.ts";
import {
  importResolvedImage,
  parseOciLayoutRef,
  resolveTag,
} from "../stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";
import { commandProgress } from "./progress.ts";

const TARGETS = ["composefs", "ostree", "containers-storage"] as const;
type Target = typeof TARGETS[number];

const IMPORT_HELP = {
  usage: "unistore image import SOURCE [--to composefs,containers-storage,ostree]\n" +
    "                             [--require-reflinks] [--image-reference REF] [--name NAME] [--json]",
  summary: "Imports one image into the host's stores, through composefs.",
  details: `SOURCE
  oci:DIR[:TAG]    an OCI image layout: every layer is checked against its blob digest and
                   diff_id and stored in ROOT/sysroot/composefs (created, sha512, if missing)
                   with the tag TAG and bootc's localhost/bootc-<manifest digest> tag
  composefs:REF    an image already in composefs, by tag or manifest digest
  containers-storage:REF
                   an image in bootc's containers-storage (ROOT/sysroot/ostree/bootc/storage),
                   by name or id: its layers are rebuilt from tar-split and diff/ and imported
                   into composefs, file payloads cloned from diff/

--to               stores to put the image in (default composefs). ostree: the commit is
                   synthesized from composefs by reflink under ostree/container/image/<ref>,
                   with ostree-ext's metadata; already present commits are kept.
                   containers-storage: rebuilt from composefs with the same layer digests and
                   image id, diff/ files cloned from composefs objects, tar-split written
--require-reflinks fail (before writing) where a store cannot share blocks; default: copy
--image-reference  the reference ostree records (default: SOURCE for oci:, the tag for
                   composefs:)
--name             the name in containers-storage (default localhost/bootc-recovered:<id>,
                   as bootc names images it rebuilds from composefs)
--json             {"source", "manifestDigest", "configDigest",
                    "composefs": {"layers": [{"diffId", "skipped"}], "tags": [...]} | null,
                    "ostree": {"ref", "commit", "skippedExisting", "reflinkedBytes",
                               "copiedBytes"} | null,
                    "containersStorage": {"imageId", "names", "skippedExisting",
                                          "clonedBytes"} | null}`,
};

const LIST_HELP = {
  usage: "unistore image list [--json]",
  summary: "Lists every image by config digest: its names, its stores, and whether it is live.",
  details: `live: a boot entry (booted, staged, rollback or another deployment) reaches it.
--json  [{"configDigest", "manifestDigests", "names", "inComposefs", "inOstree",
          "inContainersStorage", "live"}]`,
};

const HELP = {
  usage: "unistore image SUBCOMMAND [ARGS]",
  summary: "Images across the host's stores.",
  details: `subcommands:
  list [--json]                                   every image, its names, stores, liveness
  import SOURCE [--to STORES] [--json]            move one image into the stores`,
};

function parseTargets(list: string): Target[] {
  const out: Target[] = [];
  for (const raw of list.split(",").map((t) => t.trim()).filter((t) => t !== "")) {
    if (!(TARGETS as readonly string[]).includes(raw)) {
      throw new UsageError(
        `--to: expected a list of ${TARGETS.join(", ")}, found ${JSON.stringify(raw)}`,
      );
    }
    if (!out.includes(raw as Target)) out.push(raw as Target);
  }
  return out.length === 0 ? ["composefs"] : out;
}

interface ComposefsOutcome {
  manifestDigest: string;
  configDigest: string;
  layers: { diffId: string; skipped: boolean }[];
  tags: string[];
}

/** oci:DIR[:TAG] into composefs; the layout is read and checked before the host is touched. */
async function importOciIntoComposefs(
  source: string,
  host: HostRoot,
  ctx: CommandContext,
): Promise<ComposefsOutcome> {
  const { dir, tag } = parseOciLayoutRef(source);
  const layout = await OciLayout.open(dir);
  const image = await layout.resolveImage(tag);
  if (!host.isDir("sysroot")) {
    throw new Error(`${host.sysroot}: no such directory; is ${host.dir} the root of a bootc host?`);
  }
  using repo = await ComposefsRepo.ensure(host.composefsRepo);
  const progress = commandProgress(ctx);
  const sizes = image.manifest.layers.map((l) => l.size);
  progress.begin("composefs-import", "Importing into composefs", source, {
    bytes: sizes.reduce((a, b) => a + b, 0),
    steps: sizes.length,
  });
  const result = await importResolvedImage(repo, layout, image, {
    tagAs: tag ?? null,
    onEvent: (e) => {
      if (e.kind === "layer-start") return;
      const subtask = { id: e.diffId, description: `layer ${e.index + 1}/${sizes.length}` };
      progress.advance({ bytes: sizes[e.index], steps: 1 }, subtask);
      if (ctx.verbose) {
        ctx.err(
          `layer ${e.diffId}: ${e.kind === "layer-skipped" ? "already present" : "imported"}`,
        );
      }
    },
  });
  progress.end();
  return {
    manifestDigest: result.manifestDigest,
    configDigest: result.configDigest,
    layers: result.layers.map((l) => ({ diffId: l.diffId, skipped: l.skipped })),
    tags: result.tags,
  };
}

async function importCommand(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    to: { type: "string", default: "composefs" },
    "require-reflinks": { type: "boolean" },
    "image-reference": { type: "string" },
    name: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(formatHelp(IMPORT_HELP));
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("image import takes exactly one SOURCE");
  const source = positionals[0];
  const targets = parseTargets(values.to);
  const policy: CopyPolicy = values["require-reflinks"] ? "reflink-required" : "reflink-or-copy";
  const host = new HostRoot(ctx.root);

  let hub: ComposefsOutcome | null = null;
  let hubRef: string;
  let imageReference = values["image-reference"];
  if (source.startsWith("oci:")) {
    hub = await importOciIntoComposefs(source, host, ctx);
    hubRef = hub.manifestDigest;
    imageReference ??= source;
  } else if (source.startsWith("containers-storage:")) {
    const ref = source.slice("containers-storage:".length);
    if (ref === "") throw new UsageError("containers-storage: needs an image name or id");
    using cstore = await CStorage.open(host.bootcContainersStorage(), { readOnly: true });
    using cfs = await ComposefsRepo.ensure(host.composefsRepo);
    const r = await importCStorageImageToComposefs(cstore, cfs, ref, { policy, tagAs: null });
    hub = {
      manifestDigest: r.manifestDigest,
      configDigest: r.configDigest,
      layers: r.layers.map((l) => ({ diffId: l.diffId, skipped: l.skipped })),
      tags: r.tags,
    };
    hubRef = r.manifestDigest;
  } else if (source.startsWith("composefs:")) {
    hubRef = source.slice("composefs:".length);
    if (hubRef === "") throw new UsageError("composefs: needs a tag or manifest digest");
    if (targets.includes("composefs") && targets.length === 1) {
      throw new UsageError(`${source} is already in composefs; name another store with --to`);
    }
  } else {
    throw new UsageError(
      `unsupported source ${JSON.stringify(source)}: expected oci:DIR[:TAG], ` +
        `containers-storage:REF or composefs:REF`,
    );
  }

  let ostree = null;
  if (targets.includes("ostree")) {
    if (!host.isDir("sysroot/ostree/repo")) {
      throw new Error(`${host.ostreeRepo}: no ostree repository on this host`);
    }
    const progress = commandProgress(ctx);
    progress.begin("ostree-synthesis", "Synthesizing the ostree commit", hubRef, {});
    const r = await importComposefsImageToOstree({
      root: ctx.root,
      ref: hubRef,
      policy,
      imageReference,
    });
    progress.end();
    ostree = {
      ref: r.ref,
      commit: r.commit,
      skippedExisting: r.skippedExisting,
      reflinkedBytes: r.stats.reflinkedBytes,
      copiedBytes: r.stats.copiedBytes,
    };
    hub ??= await describeComposefsImage(host, hubRef, r.manifestDigest, r.configDigest);
  }
  let cstorage = null;
  if (targets.includes("containers-storage")) {
    if (source.startsWith("containers-storage:")) {
      throw new UsageError(`${source} is already in containers-storage`);
    }
    const path = host.bootcContainersStorage();
    await Deno.mkdir(path, { recursive: true, mode: 0o700 });
    using cfs = await ComposefsRepo.open(host.composefsRepo, { readOnly: true });
    using cstore = await CStorage.open(path, { create: true });
    const r = await exportComposefsImageToCStorage(cfs, cstore, hubRef, {
      policy,
      names: values.name ? [values.name] : undefined,
    });
    cstorage = {
      imageId: r.imageId,
      names: r.names,
      skippedExisting: r.skippedExisting,
      clonedBytes: r.stats.clonedBytes,
    };
    hub ??= {
      manifestDigest: r.manifestDigest,
      configDigest: r.configDigest,
      layers: [],
      tags: [],
    };
  }
  const manifestDigest = hub?.manifestDigest ?? hubRef;
  if (values.json) {
    ctx.out(JSON.stringify({
      source,
      manifestDigest,
      configDigest: hub?.configDigest ?? null,
      composefs: hub && !source.startsWith("composefs:")
        ? { layers: hub.layers, tags: hub.tags }
        : null,
      ostree,
      containersStorage: cstorage,
    }));
    return 0;
  }
  if (ctx.quiet) return 0;
  const lines = [`imported ${source}`];
  if (hub && !source.startsWith("composefs:")) {
    const fresh = hub.layers.filter((l) => !l.skipped).length;
    lines.push(
      `  composefs: config ${hub.configDigest}`,
      `             manifest ${hub.manifestDigest}`,
      `             ${hub.layers.length} layers (${fresh} imported, ` +
        `${hub.layers.length - fresh} already present); tags: ${hub.tags.join(", ") || "(none)"}`,
    );
  }
  if (ostree) {
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    lines.push(
      ostree.skippedExisting
        ? `  ostree:    ${ostree.ref} -> ${ostree.commit} (already synthesized)`
        : `  ostree:    ${ostree.ref} -> ${ostree.commit} (${mib(ostree.reflinkedBytes)} MiB ` +
          `reflinked, ${mib(ostree.copiedBytes)} MiB copied)`,
    );
  }
  if (cstorage) {
    lines.push(
      `  containers-storage: ${cstorage.imageId.slice(0, 12)} ${cstorage.names.join(", ")}` +
        (cstorage.skippedExisting ? " (already present)" : ""),
    );
  }
  ctx.out(lines.join("\n"));
  return 0;
}

async function describeComposefsImage(
  host: HostRoot,
  ref: string,
  manifestDigest: string,
  configDigest: string,
): Promise<ComposefsOutcome> {
  using repo = await ComposefsRepo.open(host.composefsRepo, { readOnly: true });
  const digest = ref.startsWith("sha256:") ? ref : resolveTag(repo, ref) ?? manifestDigest;
  return { manifestDigest: digest, configDigest, layers: [], tags: [] };
}

async function listCommand(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(formatHelp(LIST_HELP));
    return 0;
  }
  if (positionals.length > 0) throw new UsageError("image list takes no arguments");
  const images = await listHostImages(new HostRoot(ctx.root));
  if (values.json) {
    ctx.out(JSON.stringify(images));
    return 0;
  }
  if (images.length === 0) {
    ctx.out("no images in any store");
    return 0;
  }
  const rows = [["IMAGE ID", "COMPOSEFS", "OSTREE", "C-STORAGE", "LIVE", "NAMES"]];
  const yes = (b: boolean) => (b ? "yes" : "-");
  for (const img of images) {
    rows.push([
      img.configDigest.replace(/^sha256:/, "").slice(0, 12),
      yes(img.inComposefs),
      yes(img.inOstree),
      yes(img.inContainersStorage),
      yes(img.live),
      img.names.join(", "),
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  ctx.out(
    rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n"),
  );
  return 0;
}

/** The `image` command. */
export const imageCommand: Command = {
  name: "image",
  help: HELP,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    switch (sub) {
      case "import":
        return await importCommand(rest, ctx);
      case "list":
        return await listCommand(rest, ctx);
      case undefined:
      case "--help":
      case "-h":
        ctx.out(formatHelp(HELP));
        return sub === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown image subcommand ${JSON.stringify(sub)}\n${HELP.details}`);
    }
  },
};
