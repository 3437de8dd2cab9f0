/**
 * Boot Loader Specification Type 1 entries (`loader/entries/*.conf`), the bootloader's list of
 * what the host can boot, and which deployment each entry boots.
 *
 * Format (https://uapi-group.org/specifications/specs/boot_loader_specification/): one
 * `key value` per line, the key ending at the first whitespace; `#` comments and blank lines
 * ignored; `initrd` may repeat, other keys last-wins. ostree writes (ostree-repo.md §10.2):
 *
 * ```
 * title exampleos 1.0 (ostree:0)
 * version 2
 * options root=LABEL=root rw ostree=/ostree/boot.1/exampleos/<bootcsum>/0
 * linux /ostree/exampleos-<bootcsum>/vmlinuz-6.1.0
 * initrd /ostree/exampleos-<bootcsum>/initramfs-6.1.0.img
 * ```
 *
 * bootc's composefs backend writes `bootc_<os_id>-<version>-<1|0>.conf` with `sort-key
 * bootc-<os_id>-<0|1>` and `options ... composefs=<hex>`, or for UKIs an `efi`/`uki` key naming
 * `bootc_composefs-<hex>.efi` (spec bootc-unified-storage.md §9.3); staged entries wait in
 * `loader/entries.staged` until finalization.
 *
 * Orders:
 * - bootc / BLS order ({@linkcode compareBlsEntries}): `sort-key` ascending, then
 *   `machine-id`, then `version` descending (UAPI version compare); the first entry is the
 *   default (systemd-boot's order, and bootc's `get_sorted_type1_boot_entries(ascending)`).
 * - ostree order ({@linkcode listOstreeBlsEntries}): only `ostree-*.conf`, `version`
 *   descending; index 0 is the default deployment (ostree-repo.md §10.3).
 *
 * @module
 */

import {
  type ComposefsKarg,
  KernelCmdline,
  type OstreeKarg,
  parseComposefsKarg,
} from "./cmdline.ts";
import { HostFileError } from "./errors.ts";
import type { HostRoot } from "./root.ts";
import { compareVersions } from "./uapi_version.ts";
import { DT } from "../../ffi/fs.ts";

/** One parsed BLS Type 1 entry. */
export interface BlsEntry {
  /** File name, e.g. `ostree-2.conf`. */
  name: string;
  /** The file on this machine. */
  path: string;
  /** True when read from `loader/entries.staged` (bootc composefs, not yet finalized). */
  staged: boolean;
  title?: string;
  version?: string;
  machineId?: string;
  sortKey?: string;
  linux?: string;
  initrd: string[];
  /** `efi` (UKI or EFI program). */
  efi?: string;
  /** `uki` (systemd ≥ 258 spelling of a UKI reference). */
  uki?: string;
  options?: string;
  /** Every `key value` line in file order, unknown keys included. */
  fields: [string, string][];
  /** `options` parsed as a kernel command line (empty when there are none). */
  cmdline: KernelCmdline;
}

/** Which deployment an entry boots. */
export type BlsDeploymentRef =
  /** An ostree deployment: the `ostree=` karg, resolved through `boot.B` symlinks. */
  | { kind: "ostree"; karg: OstreeKarg }
  /** A composefs deployment: its id is `karg.digest` (`state/deploy/<id>`). */
  | { kind: "composefs"; karg: ComposefsKarg }
  | { kind: "none" };

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** bootc's `TYPE1_ENT_PATH_STAGED`, next to `entries`. */
const STAGED_ENTRIES_DIR = "entries.staged";

/** bootc's UKI file name prefix (`UKI_NAME_PREFIX`); older bootc wrote bare `<hex>.efi`. */
const UKI_PREFIX = "bootc_composefs-";

/**
 * Parses one entry. `path` names the file in the result and in errors.
 *
 * @example
 * ```ts
 * const e = parseBlsEntry("title T\nversion 2\nlinux /k\ninitrd /a\ninitrd /b\noptions rw\n", "x.conf");
 * e.initrd;              // ["/a", "/b"]
 * e.cmdline.has("rw");   // true
 * ```
 */
export function parseBlsEntry(text: string, path: string, staged = false): BlsEntry {
  const fields: [string, string][] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\S+)(?:\s+(.*))?$/.exec(line)!;
    fields.push([m[1], (m[2] ?? "").trim()]);
  }
  const name = path.slice(path.lastIndexOf("/") + 1);
  const entry: BlsEntry = {
    name,
    path,
    staged,
    initrd: [],
    fields,
    cmdline: KernelCmdline.parse("", `${path}: options`),
  };
  for (const [key, value] of fields) {
    switch (key) {
      case "title":
        entry.title = value;
        break;
      case "version":
        entry.version = value;
        break;
      case "machine-id":
        entry.machineId = value;
        break;
      case "sort-key":
        entry.sortKey = value;
        break;
      case "linux":
        entry.linux = value;
        break;
      case "initrd":
        entry.initrd.push(value);
        break;
      case "efi":
        entry.efi = value;
        break;
      case "uki":
        entry.uki = value;
        break;
      case "options":
        entry.options = value;
        break;
    }
  }
  if (entry.options !== undefined) {
    entry.cmdline = KernelCmdline.parse(entry.options, `${path}: options`);
  }
  return entry;
}

/**
 * BLS / bootc order: negative when `a` is listed before `b`. `sort-key` ascending (bytewise),
 * then `machine-id`, then `version` descending; an entry with a sort-key (or machine-id)
 * before one without; finally the file name, so the order is total.
 */
export function compareBlsEntries(a: BlsEntry, b: BlsEntry): number {
  for (const field of ["sortKey", "machineId"] as const) {
    const x = a[field];
    const y = b[field];
    if (x !== undefined && y !== undefined) {
      if (x !== y) return x < y ? -1 : 1;
    } else if (x !== undefined || y !== undefined) {
      return x !== undefined ? -1 : 1;
    }
  }
  const byVersion = compareVersions(b.version ?? "", a.version ?? "");
  if (byVersion !== 0) return byVersion;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Reads every `*.conf` entry of the host's boot entries dir ({@linkcode HostRoot.bootEntriesRel})
 * in BLS / bootc order; with `staged: true`, those of `loader/entries.staged` instead. An
 * absent dir gives `[]`; names that are not UTF-8, dotfiles and non-files are skipped.
 *
 * @throws {HostFileError} naming the entry when a file cannot be read as UTF-8 text.
 */
export function listBlsEntries(root: HostRoot, opts: { staged?: boolean } = {}): BlsEntry[] {
  let dirRel = root.bootEntriesRel();
  if (opts.staged) dirRel = `${dirRel.slice(0, dirRel.lastIndexOf("/"))}/${STAGED_ENTRIES_DIR}`;
  const list = root.listDir(dirRel);
  if (list === null) return [];
  const out: BlsEntry[] = [];
  for (const ent of list) {
    let name: string;
    try {
      name = utf8Strict.decode(ent.nameBytes);
    } catch {
      continue;
    }
    if (!name.endsWith(".conf") || name.startsWith(".")) continue;
    if (ent.type !== DT.REG && ent.type !== DT.LNK && ent.type !== DT.UNKNOWN) continue;
    const rel = `${dirRel}/${name}`;
    const bytes = root.readFile(rel);
    if (bytes === null) continue; // a dangling symlink
    let text: string;
    try {
      text = utf8Strict.decode(bytes);
    } catch (e) {
      throw new HostFileError(root.path(rel), "expected a UTF-8 text BLS entry", { cause: e });
    }
    out.push(parseBlsEntry(text, root.path(rel), opts.staged ?? false));
  }
  return out.sort(compareBlsEntries);
}

/**
 * ostree's view of the entries dir: only `ostree-*.conf`, `version` descending (ties by
 * name). Index 0 is the default (newest) deployment; `version` = n_deployments − index.
 */
export function listOstreeBlsEntries(root: HostRoot): BlsEntry[] {
  return listBlsEntries(root)
    .filter((e) => e.name.startsWith("ostree-"))
    .sort((a, b) => {
      const v = compareVersions(b.version ?? "", a.version ?? "");
      return v !== 0 ? v : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
}

/**
 * Which deployment `entry` boots: `ostree=` → ostree; `composefs=` (else `composefs.digest=`)
 * in `options` → composefs; else a UKI named `bootc_composefs-<hex>.efi` (or `<hex>.efi`) →
 * composefs; otherwise none.
 *
 * @throws {HostFileError} when the karg is present but malformed.
 */
export function entryDeployment(entry: BlsEntry): BlsDeploymentRef {
  const ostree = entry.cmdline.ostree();
  if (ostree) return { kind: "ostree", karg: ostree };
  // bootc matches deployments by `composefs=` (BLSConfig::get_verity).
  const cfs = entry.cmdline.composefsV2() ?? entry.cmdline.composefsV1();
  if (cfs) return { kind: "composefs", karg: cfs };
  const efi = entry.uki ?? entry.efi;
  if (efi !== undefined) {
    let base = efi.slice(efi.lastIndexOf("/") + 1);
    if (base.endsWith(".efi")) {
      base = base.slice(0, -4);
      if (base.startsWith(UKI_PREFIX)) base = base.slice(UKI_PREFIX.length);
      const karg = parseComposefsKarg("composefs", base);
      if (karg) return { kind: "composefs", karg };
    }
  }
  return { kind: "none" };
}

/** Where an `ostree=` karg leads: the deployment dir it resolves to. */
export interface OstreeDeploymentDir {
  stateroot: string;
  /** `<commit>.<deployserial>`, the deployment's name in `ostree admin status`. */
  name: string;
  /** Path relative to the host root, `sysroot/ostree/deploy/<os>/deploy/<csum>.<serial>`. */
  rel: string;
  /** The same on this machine. */
  path: string;
}

const DEPLOY_DIR = /^sysroot\/ostree\/deploy\/([^/]+)\/deploy\/([0-9a-f]{64}\.\d+)$/;

/**
 * Follows an `ostree=` karg as the initramfs does: `sysroot` + karg through the
 * `ostree/boot.B` → `boot.B.S` and `<os>/<bootcsum>/<serial>` symlinks (resolved inside the
 * root). Returns null when the path does not resolve (bootversion not current, deployment
 * removed).
 *
 * @throws {HostFileError} when it resolves somewhere that is not a deployment dir.
 */
export function resolveOstreeKarg(root: HostRoot, karg: OstreeKarg): OstreeDeploymentDir | null {
  const rel = root.resolve(`sysroot${karg.path}`);
  if (rel === null) return null;
  const m = DEPLOY_DIR.exec(rel);
  if (!m) {
    throw new HostFileError(
      root.path(`sysroot${karg.path}`),
      `expected a link to sysroot/ostree/deploy/<stateroot>/deploy/<commit>.<serial>, found ${
        JSON.stringify(rel)
      }`,
    );
  }
  return { stateroot: m[1], name: m[2], rel, path: root.path(rel) };
}
