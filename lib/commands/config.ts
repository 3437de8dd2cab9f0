/**
 * `unistore config [--json]`: bootc's merged install configuration of the host (the
 * `[install]` tables of `usr/lib`, `usr/local/lib`, `etc`, `run` + `/bootc/install/*.toml`),
 * with the file every value came from. A file bootc would refuse is an error: exit 1 with
 * `unistore: <file>: <key>: expected ..., found ...`.
 *
 * `--json` prints one line of canonical JSON (RFC 8785: sorted keys, no whitespace). Stable
 * shape:
 *
 * ```json
 * {
 *   "architecture": "x86_64",                       // what match-architectures is compared with
 *   "dirs": ["/usr/lib/bootc/install", ...],         // the four dirs searched, lowest priority first
 *   "files": [                                      // overridden/masked first, then merge order
 *     {"name": "50-unified.toml", "path": "/usr/lib/bootc/install/50-unified.toml",
 *      "status": "merged" | "skipped-architecture" | "no-install-table" | "overridden" | "masked",
 *      "detail": null | "overridden by /etc/bootc/install/50-unified.toml" | ...}
 *   ],
 *   "install": null | {"storage": {"unified": "enabled-with-copy"}, "block": ["direct"], ...},
 *                                                   // merged, as bootc print-configuration: kebab-case,
 *                                                   // nested, only keys that are set (null: no config)
 *   "unified": "disabled" | "enabled" | "enabled-with-copy",   // storage.unified, default disabled
 *   "values": [                                     // the same leaves in bootc struct order
 *     {"key": "storage.unified", "value": "enabled-with-copy",
 *      "sources": ["/usr/lib/bootc/install/50-unified.toml"]}  // several for kargs; [] = bootc default
 *   ],
 *   "warnings": []                                  // unknown [install.ostree] keys bootc ignores
 * }
 * ```
 *
 * @module
 */

import { canonicalJson, type JsonValue } from "../format/canonical_json.ts";
import {
  installConfigToBootcJson,
  loadInstallConfig,
  type MergedInstallConfig,
  unifiedModeOf,
} from "../host/install_config.ts";
import { HostRoot } from "../host/root.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const HELP = {
  usage: "unistore config [--json]",
  summary: "Show bootc's merged install configuration and the file each value came from.",
  details:
    "Reads the *.toml files of DIR/usr/lib/bootc/install, DIR/usr/local/lib/bootc/install,\n" +
    "DIR/etc/bootc/install and DIR/run/bootc/install with bootc's merge rules (a later dir's\n" +
    "file replaces one of the same name; files merged in name order; match-architectures;\n" +
    "kargs appended). Exit 1 naming the file and key when bootc would refuse a file.\n\n" +
    "  --json   one line of canonical JSON (see lib/commands/config.ts for the shape)",
};

/** The `--json` document (see the module doc). */
export function configJson(cfg: MergedInstallConfig): JsonValue {
  return {
    architecture: cfg.architecture,
    dirs: cfg.dirs,
    files: cfg.files.map((f) => ({
      name: f.name,
      path: f.path,
      status: f.status,
      detail: f.detail,
    })),
    install: installConfigToBootcJson(cfg) as JsonValue,
    unified: unifiedModeOf(cfg),
    values: cfg.values.map((v) => ({
      key: v.key,
      value: Array.isArray(v.value) ? [...v.value] : v.value,
      sources: [...v.sources],
    })),
    warnings: cfg.warnings,
  };
}

function tomlValue(v: string | boolean | string[]): string {
  if (Array.isArray(v)) return `[${v.map((s) => JSON.stringify(s)).join(", ")}]`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/**
 * The human rendering: a KEY / VALUE / SOURCE table, then the files and what became of them
 * (warnings are the caller's to print, on stderr).
 */
export function formatConfigTable(cfg: MergedInstallConfig): string {
  const out: string[] = [];
  if (cfg.install === null) {
    out.push(`no install configuration (architecture ${cfg.architecture})`);
  } else {
    const rows = cfg.values.map((v) => [
      v.key,
      tomlValue(v.value),
      v.sources.length === 0 ? "(bootc default)" : v.sources.join(", "),
    ]);
    const header = ["KEY", "VALUE", "SOURCE"];
    const w0 = Math.max(header[0].length, ...rows.map((r) => r[0].length));
    const w1 = Math.max(header[1].length, ...rows.map((r) => r[1].length));
    for (const r of [header, ...rows]) out.push(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`);
    out.push("", `unified storage: ${unifiedModeOf(cfg)} (architecture ${cfg.architecture})`);
  }
  out.push("");
  if (cfg.files.length === 0) {
    out.push(`files: none in ${cfg.dirs.join(", ")}`);
  } else {
    out.push("files:");
    const w = Math.max(...cfg.files.map((f) => f.status.length));
    for (const f of cfg.files) {
      out.push(`  ${f.status.padEnd(w)}  ${f.path}${f.detail ? ` (${f.detail})` : ""}`);
    }
  }
  return out.join("\n");
}

/** The `config` command. */
export const configCommand: Command = {
  name: "config",
  help: HELP,
  run(args: string[], ctx: CommandContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, {
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return Promise.resolve(0);
    }
    if (positionals.length > 0) {
      throw new UsageError(`config takes no arguments, found ${JSON.stringify(positionals[0])}`);
    }
    // An InstallConfigError propagates to main.ts: "unistore: <file>: <key>: ...", exit 1.
    const cfg = loadInstallConfig(new HostRoot(ctx.root));
    if (values.json) {
      ctx.out(canonicalJson(configJson(cfg)));
    } else {
      ctx.out(formatConfigTable(cfg));
      for (const w of cfg.warnings) ctx.err(`unistore: warning: ${w}`);
    }
    return Promise.resolve(0);
  },
};
