/**
 * `unistore image import SOURCE [--to STORES]`: moving one image into the
 * host's stores. composefs is the hub (DESIGN §2): every import lands there
 * first.
 *
 * @module
 */

import { HostRoot } from "../host/root.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { importResolvedImage, parseOciLayoutRef } from "../stores/composefs/oci_image.ts";
import { OciLayout } from "../oci/layout.ts";
import { parseCommandArgs } from "./args.ts";
import { commandProgress } from "./progress.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const IMPORT_HELP = {
  usage: "unistore image import oci:DIR[:TAG] [--to composefs] [--json]",
  summary: "Imports an image from an OCI layout into the host's composefs repository.",
  details: `Every layer is decompressed, checked against its blob digest and diff_id, and stored as
a splitstream whose file payloads are fs-verity-named objects; then the config and manifest,
the tag TAG (when given) and bootc's localhost/bootc-<manifest digest> tag. Layers already
present are skipped. The repository is ROOT/sysroot/composefs (created, sha512, if missing).

--json prints {"source", "store", "manifestDigest", "configDigest",
  "layers": [{"diffId", "skipped"}], "tags": [...]}.`,
};

const HELP = {
  usage: "unistore image SUBCOMMAND [ARGS]",
  summary: "Images across the host's stores.",
  details: `subcommands:
  import oci:DIR[:TAG] [--to composefs] [--json]   import an OCI layout into composefs`,
};

async function importCommand(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    to: { type: "string", default: "composefs" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(formatHelp(IMPORT_HELP));
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("image import takes exactly one SOURCE");
  const source = positionals[0];
  if (!source.startsWith("oci:")) {
    throw new UsageError(
      `unsupported source ${JSON.stringify(source)}: expected oci:DIR[:TAG]`,
    );
  }
  const targets = values.to.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const t of targets) {
    if (t !== "composefs") {
      throw new UsageError(
        `--to: this version imports into composefs only, found ${JSON.stringify(t)}`,
      );
    }
  }
  const { dir, tag } = parseOciLayoutRef(source);
  // The source is read and checked before anything is created on the host.
  const layout = await OciLayout.open(dir);
  const image = await layout.resolveImage(tag);
  const host = new HostRoot(ctx.root);
  if (!host.isDir("sysroot")) {
    throw new Error(`${host.sysroot}: no such directory; is ${host.dir} the root of a bootc host?`);
  }
  using repo = await ComposefsRepo.ensure(host.composefsRepo);
  const progress = commandProgress(ctx);
  const layerSizes = image.manifest.layers.map((l) => l.size);
  progress.begin("composefs-import", "Importing into composefs", source, {
    bytes: layerSizes.reduce((a, b) => a + b, 0),
    steps: layerSizes.length,
  });
  const result = await importResolvedImage(repo, layout, image, {
    tagAs: tag ?? null,
    onEvent: (e) => {
      if (e.kind === "layer-start") return;
      const subtask = { id: e.diffId, description: `layer ${e.index + 1}/${layerSizes.length}` };
      progress.advance({ bytes: layerSizes[e.index], steps: 1 }, subtask);
      if (!ctx.verbose) return;
      ctx.err(`layer ${e.diffId}: ${e.kind === "layer-skipped" ? "already present" : "imported"}`);
    },
  });
  progress.end();
  if (values.json) {
    ctx.out(JSON.stringify({
      source,
      store: "composefs",
      manifestDigest: result.manifestDigest,
      configDigest: result.configDigest,
      layers: result.layers.map((l) => ({ diffId: l.diffId, skipped: l.skipped })),
      tags: result.tags,
    }));
  } else if (!ctx.quiet) {
    const fresh = result.layers.filter((l) => !l.skipped).length;
    ctx.out(
      `imported ${source} into composefs (${host.composefsRepo})\n` +
        `  config:   ${result.configDigest}\n` +
        `  manifest: ${result.manifestDigest}\n` +
        `  layers:   ${result.layers.length} (${fresh} imported, ` +
        `${result.layers.length - fresh} already present)\n` +
        `  tags:     ${result.tags.join(", ") || "(none)"}`,
    );
  }
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
