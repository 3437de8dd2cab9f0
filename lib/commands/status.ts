/**
 * `unistore status [--format human|json|yaml] [--verbose] [--booted]`: bootc-compatible host
 * status (spec bootc-unified-storage.md §8), with bootc PR #2205's `status.storage` and the
 * human `Storage` row. The Host object is built by lib/host/status.ts.
 *
 * Formats, as `bootc status` has them (`status.rs::status`):
 * - `json`: RFC 8785 canonical JSON, one line (bootc `to_canon_json_writer`); the stable,
 *   documented form to parse;
 * - `yaml`: the same object, keys in bootc's struct order; the default when stdout is not a
 *   terminal;
 * - `human` (also bootc's `humanreadable`): the default on a terminal; not for parsing:
 *
 * ```
 *   Staged image: quay.io/example/someimage:latest
 *         Digest: sha256:16dc… (arm64)
 *        Version: nightly (2023-10-14T19:22:15Z)
 *
 * ● Booted image: quay.io/example/someimage:latest
 *         Digest: sha256:736b… (arm64)
 *        Version: nightly (2023-09-30T19:22:16Z)
 *   /usr overlay: transient, read/write
 *        Storage: unified (enabled-with-copy)
 * ```
 *   Row labels are right-aligned to the slot prefix; a system without a booted deployment
 *   prints `System is not deployed via bootc.`.
 *
 * `--booted` keeps only the booted slot (staged and rollback cleared, as bootc does). `--json`
 * is bootc's hidden legacy spelling of `--format json`; `--format-version 0|1` is accepted
 * (both are v1). `--verbose` is a global option.
 *
 * @module
 */

import { canonicalJson } from "../format/canonical_json.ts";
import { toYaml } from "../format/yaml.ts";
import { HostRoot } from "../host/root.ts";
import {
  type BootcBootEntry,
  type BootcHost,
  type BootcHostStatus,
  filterToBooted,
  hostJson,
  type ImageStatus,
  readHostStatus,
} from "../host/status.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const HELP = {
  usage: "unistore status [--format human|json|yaml] [--booted] [--verbose]",
  summary: "Show the host's deployments as bootc status does, with the unified-storage state.",
  details:
    "Reads DIR/proc/cmdline (booted), the boot entries, origins and image metadata of the\n" +
    "ostree or composefs deployments, and the unified-storage flags (ostree repo config\n" +
    "[composefs] unified, sysroot/composefs/bootc.json).\n\n" +
    "  --format FMT   human (default on a terminal), yaml (default otherwise), json (canonical,\n" +
    "                 one line: the stable form to parse)\n" +
    "  --booted       only the booted deployment\n" +
    "  --verbose      more rows in the human format (state root, commit, signature, ...)",
};

/** Output formats; `humanreadable` is bootc's name for `human`. */
export type StatusFormat = "human" | "json" | "yaml";

/** What {@linkcode runStatus} needs; `isTerminal` decides the default format. */
export interface StatusOptions {
  root: string;
  format?: StatusFormat;
  booted?: boolean;
  verbose?: boolean;
  /** Whether stdout is a terminal (default: ask Deno). */
  isTerminal?: boolean;
}

/** The rendered status and the warnings met while reading it. */
export interface StatusOutput {
  text: string;
  warnings: string[];
  host: BootcHost;
}

/**
 * Reads the host at `opts.root` and renders it. This is what the `status` command prints;
 * callers that want the object itself use `readHostStatus` from lib/host/status.ts.
 *
 * @example
 * ```ts ignore
 * const { text } = await runStatus({ root: "/", format: "json" });
 * ```
 */
export async function runStatus(opts: StatusOptions): Promise<StatusOutput> {
  const report = await readHostStatus(new HostRoot(opts.root));
  const host = opts.booted ? filterToBooted(report.host) : report.host;
  const format = opts.format ??
    ((opts.isTerminal ?? Deno.stdout.isTerminal()) ? "human" : "yaml");
  let text: string;
  switch (format) {
    case "json":
      text = canonicalJson(hostJson(host));
      break;
    case "yaml":
      text = toYaml(hostJson(host)).replace(/\n$/, "");
      break;
    case "human":
      text = formatStatusHuman(host, { verbose: opts.verbose ?? false });
      break;
  }
  return { text, warnings: report.warnings, host };
}

// ---------------------------------------------------------------------------------------------
// Human output (bootc `human_readable_output`)

type Slot = "staged" | "booted" | "rollback" | null;

/** bootc's `Glyph::BlackCircle`, marking the booted slot. */
const BOOTED_GLYPH = "●";

const utf8 = new TextEncoder();

/** `"{label}: "` right-aligned to `width` characters (bootc `write_row_name`). */
function row(label: string, width: number, value: string): string {
  return `${" ".repeat(Math.max(0, width - [...label].length))}${label}: ${value}`;
}

/** bootc `format_timestamp`: RFC 3339 truncated to seconds. */
function humanTimestamp(t: string): string {
  return `${t.slice(0, 19)}Z`;
}

function overlayText(s: BootcHostStatus): string | null {
  const o = s.usrOverlay;
  if (!o) return null;
  return `${o.persistence}, ${o.accessMode === "readOnly" ? "read-only" : "read/write"}`;
}

function storageText(s: BootcHostStatus): string | null {
  if (!s.storage) return null;
  if (s.storage.unified !== "disabled") return `unified (${s.storage.unified})`;
  return s.storage.ostreeComposefsBound ? "ostree-composefs-bound" : null;
}

function verboseOstreeRows(
  out: string[],
  e: BootcBootEntry,
  slot: Slot,
  width: number,
): void {
  if (!e.ostree) return;
  out.push(row("StateRoot", width, e.ostree.stateroot));
  out.push(row("Deploy serial", width, String(e.ostree.deploySerial)));
  out.push(row("Staged", width, slot === "staged" ? "yes" : "no"));
}

function renderImageSlot(
  out: string[],
  slot: Slot,
  e: BootcBootEntry,
  image: ImageStatus,
  s: BootcHostStatus,
  verbose: boolean,
): void {
  const ref = image.image.transport === "registry"
    ? image.image.image
    : `${image.image.transport}:${image.image.image}`;
  const prefix = slot === "staged"
    ? "  Staged image"
    : slot === "booted"
    ? `${BOOTED_GLYPH} Booted image`
    : slot === "rollback"
    ? "  Rollback image"
    : "   Other image";
  const w = [...prefix].length;
  out.push(`${prefix}: ${ref}`);
  out.push(row("Digest", w, `${image.imageDigest} (${image.architecture})`));
  if (e.composefs) out.push(row("Verity", w, e.composefs.verity));
  const ts = image.timestamp === null ? null : humanTimestamp(image.timestamp);
  if (image.version !== null) {
    out.push(row("Version", w, ts === null ? image.version : `${image.version} (${ts})`));
  } else if (ts !== null) {
    out.push(row("Timestamp", w, ts));
  }
  if (e.pinned) out.push(row("Pinned", w, "yes"));
  const cached = e.cachedUpdate;
  if (cached && cached.imageDigest !== image.imageDigest) {
    if (cached.version !== null) {
      const cts = cached.timestamp === null ? "" : ` (${humanTimestamp(cached.timestamp)})`;
      out.push(row("UpdateVersion", w, `${cached.version}${cts}`));
    } else {
      out.push(row("Update", w, "Available"));
    }
    out.push(row("UpdateDigest", w, cached.imageDigest));
  }
  if (slot === "booted") {
    const overlay = overlayText(s);
    if (overlay !== null) out.push(row("/usr overlay", w, overlay));
    const storage = storageText(s);
    if (storage !== null) out.push(row("Storage", w, storage));
  }
  if (verbose) {
    if (e.ostree) {
      verboseOstreeRows(out, e, slot, w);
      out.push(row("Commit", w, e.ostree.checksum));
    }
    const sig = image.image.signature;
    if (sig !== undefined) {
      out.push(row(
        "Signature",
        w,
        typeof sig === "object"
          ? `ostree-remote:${sig.ostreeRemote}`
          : sig === "containerPolicy"
          ? "container-policy"
          : "insecure",
      ));
    }
    out.push(row("Soft-reboot", w, e.softRebootCapable ? "yes" : "no"));
    if (e.composefs) {
      out.push(row("FsVerity", w, e.composefs.missingVerityAllowed ? "Not Enforced" : "Enforced"));
    }
    if (slot === "staged") out.push(row("Download-only", w, e.downloadOnly ? "yes" : "no"));
  }
}

function renderOstreeSlot(
  out: string[],
  slot: Slot,
  e: BootcBootEntry,
  s: BootcHostStatus,
  verbose: boolean,
): void {
  const prefix = slot === "staged"
    ? "  Staged ostree"
    : slot === "booted"
    ? `${BOOTED_GLYPH} Booted ostree`
    : slot === "rollback"
    ? "  Rollback ostree"
    : " Other ostree";
  // bootc measures these prefixes in bytes, so the glyph counts 3: kept for identical output.
  const w = utf8.encode(prefix).length;
  out.push(prefix);
  out.push(row("Commit", w, e.ostree!.checksum));
  if (e.pinned) out.push(row("Pinned", w, "yes"));
  if (slot === "booted") {
    const overlay = overlayText(s);
    if (overlay !== null) out.push(row("/usr overlay", w, overlay));
  }
  if (verbose) {
    verboseOstreeRows(out, e, slot, w);
    out.push(row("Soft-reboot", w, e.softRebootCapable ? "yes" : "no"));
    if (slot === "staged") out.push(row("Download-only", w, e.downloadOnly ? "yes" : "no"));
  }
}

function renderComposefsSlot(out: string[], slot: Exclude<Slot, null>, e: BootcBootEntry): void {
  const prefix = slot === "staged"
    ? "  Staged composefs"
    : slot === "booted"
    ? `${BOOTED_GLYPH} Booted composefs`
    : "  Rollback composefs";
  out.push(prefix);
  out.push(row("Commit", utf8.encode(prefix).length, e.composefs!.verity));
}

/**
 * The human rendering of `host` (bootc `human_readable_output`; spec §8.3): staged, booted and
 * rollback slots separated by blank lines, then other deployments; or
 * `System is not deployed via bootc.` when nothing is booted. No trailing newline.
 */
export function formatStatusHuman(host: BootcHost, opts: { verbose?: boolean } = {}): string {
  const s = host.status;
  if (s.booted === null) return "System is not deployed via bootc.";
  const verbose = opts.verbose ?? false;
  const out: string[] = [];
  const slots: [Exclude<Slot, null>, BootcBootEntry | null][] = [
    ["staged", s.staged],
    ["booted", s.booted],
    ["rollback", s.rollback],
  ];
  for (const [slot, e] of slots) {
    if (!e) continue;
    if (out.length > 0) out.push("");
    if (e.image) renderImageSlot(out, slot, e, e.image, s, verbose);
    else if (e.ostree) renderOstreeSlot(out, slot, e, s, verbose);
    else if (e.composefs) renderComposefsSlot(out, slot, e);
    else out.push(`Current ${slot} state is unknown`);
  }
  for (const e of s.otherDeployments ?? []) {
    out.push("");
    if (e.image) renderImageSlot(out, null, e, e.image, s, verbose);
    else if (e.ostree) renderOstreeSlot(out, null, e, s, verbose);
  }
  return out.join("\n");
}

function parseFormat(v: string): StatusFormat {
  switch (v) {
    case "human":
    case "humanreadable":
      return "human";
    case "json":
    case "yaml":
      return v;
    default:
      throw new UsageError(
        `--format: expected human, humanreadable, json or yaml, found ${JSON.stringify(v)}`,
      );
  }
}

/** The `status` command. */
export const statusCommand: Command = {
  name: "status",
  help: HELP,
  async run(args: string[], ctx: CommandContext): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, {
      format: { type: "string" },
      json: { type: "boolean" },
      booted: { type: "boolean" },
      verbose: { type: "boolean", short: "v" },
      "format-version": { type: "string" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return 0;
    }
    if (positionals.length > 0) {
      throw new UsageError(`status takes no arguments, found ${JSON.stringify(positionals[0])}`);
    }
    const fv = values["format-version"];
    if (fv !== undefined && fv !== "0" && fv !== "1") {
      throw new UsageError(`--format-version: expected 0 or 1, found ${JSON.stringify(fv)}`);
    }
    if (values.json && values.format !== undefined && parseFormat(values.format) !== "json") {
      throw new UsageError("--json and --format disagree; use --format json");
    }
    const format = values.format !== undefined
      ? parseFormat(values.format)
      : values.json
      ? "json"
      : undefined;
    const r = await runStatus({
      root: ctx.root,
      format,
      booted: values.booted ?? false,
      verbose: ctx.verbose || (values.verbose ?? false),
    });
    for (const w of r.warnings) ctx.err(`unistore: warning: ${w}`);
    ctx.out(r.text);
    return 0;
  },
};
