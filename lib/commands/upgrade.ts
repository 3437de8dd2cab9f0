/**
 * `unistore upgrade [--image REF] [--check]`: the pull pipeline of an ostree host bound to
 * composefs (registry or `oci:` layout → composefs → ostree commit synthesized by reflink →
 * `ostree admin deploy`); the work is lib/pipeline/upgrade.ts, this module prints.
 *
 * @module
 */

import { HostRoot } from "../host/root.ts";
import {
  checkForUpgrade,
  type UpgradeCheck,
  upgradeHost,
  type UpgradeResult,
} from "../pipeline/upgrade.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";
import { commandProgress } from "./progress.ts";

const HELP = {
  usage: "unistore upgrade [--image REF] [--check]",
  summary: "Pulls the host image into composefs and deploys its ostree commit made by reflink.",
  details: `For ostree hosts bound to composefs (unistore set-unified composefs). The image is
the booted deployment's origin, or --image REF: docker://NAME, oci:DIR[:TAG], or a registry
name (quay.io/x/os:42). When the image differs from the queued deployment's (staged, pending,
else booted; compared by config digest), or the queued commit was not synthesized from
composefs, upgrade:
  1. pulls it with skopeo into ROOT/sysroot/ostree/repo/tmp (removed afterwards); registries
     on loopback (localhost, 127.0.0.0/8, [::1]) are reached without TLS verification;
  2. imports it into ROOT/sysroot/composefs, and on unified hosts (bootc.json) rebuilds it
     from there in bootc's containers-storage (ROOT/sysroot/ostree/bootc/storage);
  3. synthesizes the ostree commit by reflink (byte copies only with bootc.json
     "enabled-with-copy"; otherwise a filesystem without reflinks fails before any pull);
  4. deploys it with ostree admin deploy: staged on a booted system (--root /), written as the
     new default elsewhere; the booted deployment stays as the rollback.
Signatures are not verified: a signed origin is followed as its unverified image.

--image REF  the image to upgrade to (also switches the origin to it)
--check      only says whether an update is available; changes nothing

exit codes: 0 done, up to date, or checked; 1 failure (host not bound, pull or deploy
failed: nothing deployed); 2 usage`,
};

function checkLines(c: UpgradeCheck): string[] {
  const q = c.queued;
  const name = `${q.checksum}.${q.serial}`;
  if (c.updateAvailable) {
    return [
      `update available: ${c.source.imageReference} ${c.image.manifestDigest}`,
      `  ${q.slot} deployment ${name}: ${q.manifestDigest ? q.manifestDigest : "no image"}${
        q.originReference !== c.source.originReference ? ` (origin ${q.originReference})` : ""
      }`,
    ];
  }
  if (c.restageNeeded) {
    return [
      `no update available for ${c.source.imageReference} (${c.image.manifestDigest})`,
      `  but the ${q.slot} deployment ${name} was not synthesized from composefs: ` +
      "unistore upgrade re-stages it",
    ];
  }
  return [
    `no update available for ${c.source.imageReference} (${c.image.manifestDigest})`,
  ];
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function resultLines(r: UpgradeResult, composefsPath: string): string[] {
  const c = r.check;
  if (r.status === "up-to-date") return [...checkLines(c), "nothing was changed"];
  const lines: string[] = [];
  const id = c.source.imageReference;
  if (r.pulled) lines.push(`pulled ${id} (${c.image.manifestDigest})`);
  if (r.composefs) {
    const fresh = r.composefs.layers.filter((l) => !l.skipped).length;
    lines.push(
      `composefs: imported ${r.composefs.manifestDigest} into ${composefsPath} ` +
        `(${r.composefs.layers.length} layers: ${fresh} new, ` +
        `${r.composefs.layers.length - fresh} already present)`,
    );
  } else {
    lines.push(`composefs: ${composefsPath} already held ${c.image.manifestDigest}`);
  }
  const cs = r.containersStorage;
  if (cs?.skippedExisting) {
    lines.push(`containers-storage: already held image ${cs.imageId} (${cs.names.join(", ")})`);
  } else if (cs) {
    const written = cs.layers.filter((l) => !l.reused).length;
    const copied = cs.stats.filesCloned.copy_file_range + cs.stats.filesCloned.readwrite;
    lines.push(
      `containers-storage: image ${cs.imageId} as ${cs.names.join(", ")} (${written} layers ` +
        `written, ${cs.layers.length - written} reused; ${cs.stats.filesCloned.reflink} files ` +
        `reflinked, ${copied} copied)`,
    );
  }
  const s = r.synthesis!;
  if (s.skippedExisting) {
    lines.push(`ostree: commit ${s.commit} was already synthesized from this manifest`);
  } else {
    lines.push(
      `ostree: synthesized commit ${s.commit} (${s.stats.files} files): ` +
        `${mib(s.stats.reflinkedBytes)} reflinked, ${mib(s.stats.copiedBytes)} copied, ` +
        `${mib(s.stats.inlineBytes)} written inline (${r.policy})`,
    );
  }
  const d = r.deployment!;
  const name = `${d.checksum}.${d.serial}`;
  for (const p of d.replaced) lines.push(`undeployed ${p} (queued, not booted): replaced`);
  if (d.mode === "staged") {
    lines.push(`staged ${name} (stateroot ${d.stateroot}): queued for the next boot`);
  } else {
    lines.push(
      `deployed ${name} as the default of stateroot ${d.stateroot}` +
        (c.booted ? `; the booted ${c.booted} stays as the rollback` : ""),
    );
  }
  return lines;
}

async function upgrade(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    image: { type: "string" },
    check: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(formatHelp(HELP));
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      `upgrade takes no arguments, found ${JSON.stringify(positionals[0])}; ` +
        "give the image with --image REF",
    );
  }
  if (values.image === "") throw new UsageError("--image: expected an image reference");
  if (values.check) {
    const c = await checkForUpgrade({ root: ctx.root, image: values.image });
    for (const w of c.warnings) ctx.err(`warning: ${w}`);
    ctx.out(checkLines(c).join("\n"));
    return 0;
  }
  const r = await upgradeHost({
    root: ctx.root,
    image: values.image,
    progress: commandProgress(ctx),
  });
  for (const w of r.check.warnings) ctx.err(`warning: ${w}`);
  if (!ctx.quiet) {
    ctx.out(resultLines(r, new HostRoot(ctx.root).composefsRepo).join("\n"));
  }
  return 0;
}

/** The `upgrade` command. */
export const upgradeCommand: Command = {
  name: "upgrade",
  help: HELP,
  run: upgrade,
};
