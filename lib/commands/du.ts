/**
 * `unistore du [--json]`: logical and physical bytes per store and how much
 * the stores share, as a table a person reads at a glance.
 *
 * JSON (stable): {"stores": [{"name", "path", "present", "files", "logicalBytes",
 * "physicalBytes", "sharedWithOtherStores"}], "logicalBytes", "physicalBytes", "savedBytes"}.
 *
 * @module
 */

import { measureDiskUsage } from "../host/disk_usage.ts";
import { HostRoot } from "../host/root.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, formatHelp, UsageError } from "./context.ts";

const HELP = {
  usage: "unistore du [--json]",
  summary: "Shows logical vs physical bytes per image store and the blocks they share.",
  details: `logical:  the sum of the sizes of the store's files (each inode once)
physical: the blocks those files occupy, from FIEMAP (a block shared by several files once)
shared:   of the physical bytes, those another store's files use too (reflinks, dedupe)
saved:    logical - physical over all stores: what separate copies would have cost

Stores: ROOT/sysroot/ostree/repo/objects, ROOT/sysroot/composefs/objects and the overlay
directory of bootc's containers-storage.`,
};

/** Formats a byte count with a binary unit, e.g. `1.5 GiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** The `du` command. */
export const duCommand: Command = {
  name: "du",
  help: HELP,
  run(args, ctx) {
    const { values, positionals } = parseCommandArgs(args, {
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return Promise.resolve(0);
    }
    if (positionals.length > 0) throw new UsageError("du takes no arguments");
    const du = measureDiskUsage(new HostRoot(ctx.root));
    if (values.json) {
      ctx.out(JSON.stringify(du));
      return Promise.resolve(0);
    }
    const rows = [["store", "files", "logical", "physical", "shared"]];
    for (const s of du.stores) {
      rows.push(
        s.present
          ? [
            s.name,
            String(s.files),
            formatBytes(s.logicalBytes),
            formatBytes(s.physicalBytes),
            formatBytes(s.sharedWithOtherStores),
          ]
          : [s.name, "-", "-", "-", "(absent)"],
      );
    }
    rows.push([
      "all stores",
      String(du.stores.reduce((n, s) => n + s.files, 0)),
      formatBytes(du.logicalBytes),
      formatBytes(du.physicalBytes),
      "",
    ]);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    const line = (r: string[]) =>
      r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
        .trimEnd();
    const pct = du.logicalBytes > 0 ? Math.round((du.savedBytes / du.logicalBytes) * 100) : 0;
    ctx.out(
      [
        ...rows.map(line),
        "",
        `saved by sharing: ${formatBytes(du.savedBytes)} (${pct}% of logical)`,
      ]
        .join("\n"),
    );
    return Promise.resolve(0);
  },
};
