/**
 * bootc's install configuration: `[install]` TOML fragments in four directories, merged by
 * bootc's rules (spec bootc-unified-storage.md §7; bootc `crates/lib/src/install/config.rs`,
 * files found by liboverdrop).
 *
 * Files: `*.toml` in `usr/lib/bootc/install`, `usr/local/lib/bootc/install`,
 * `etc/bootc/install`, `run/bootc/install` (under `--root`), in that order. A file in a later
 * dir replaces the earlier file of the same name; a symlink to `/dev/null` removes it; other
 * symlinks, dirs and dotfiles are ignored (liboverdrop). The surviving files are merged in
 * file-name order (bytewise).
 *
 * Merge: a file whose `match-architectures` does not contain the current architecture (Rust
 * naming: `x86_64`, `aarch64`) is skipped whole; scalars and `block` last-wins; `kargs` and
 * `karg-deletes` are appended; nested tables merge field by field. Afterwards `root-fs-type`
 * and `filesystem.root.type` are made equal (the latter wins) and `block` defaults to
 * `["direct"]`.
 *
 * Validation is bootc's `deny_unknown_fields` serde: only `[install]` at top level; every key
 * below is known and typed ({@linkcode INSTALL_CONFIG_SCHEMA}); a bad value anywhere, even in
 * a file later skipped for its architecture, is an error. One exception, as in bootc:
 * `[install.ostree]` accepts and ignores unknown keys (serde `default` without
 * `deny_unknown_fields`), reported as warnings.
 *
 * ```toml
 * # usr/lib/bootc/install/50-unified.toml
 * [install.storage]
 * unified = "enabled-with-copy"
 * ```
 *
 * @module
 */

import { parse as parseToml, TomlDate, TomlError } from "smol-toml";
import { AT, close, DT, isType, readDir, readlinkAt, S, statAt } from "../../ffi/fs.ts";
import { isErrno } from "../../ffi/errno.ts";
import { InstallConfigError } from "./errors.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";
import { UNIFIED_MODES, type UnifiedMode } from "./unified_mode.ts";

/** `root-fs-type` / `filesystem.root.type`. */
export type Filesystem = "xfs" | "ext4" | "btrfs";
/** An entry of `block`. */
export type BlockSetup = "direct" | "tpm2-luks";
/** `bootloader`. */
export type Bootloader = "grub" | "grub-cc" | "systemd" | "none";

/** The merged `[install]` table, typed (bootc `InstallConfiguration`, camelCase). */
export interface InstallConfiguration {
  rootFsType?: Filesystem;
  block?: BlockSetup[];
  filesystem?: { root?: { type?: Filesystem } };
  kargs?: string[];
  kargDeletes?: string[];
  ostree?: { blsAppendExceptDefault?: string };
  stateroot?: string;
  rootMountSpec?: string;
  bootMountSpec?: string;
  bootupd?: { skipBootUuid?: boolean };
  bootloader?: Bootloader;
  discoverablePartitions?: boolean;
  enforceContainerSigpolicy?: boolean;
  storage?: { unified?: UnifiedMode };
}

/** A value a leaf key can hold. */
export type InstallConfigScalar = string | boolean | string[];

type Leaf =
  | { type: "enum"; values: readonly string[] }
  | { type: "enum-list"; values: readonly string[] }
  | { type: "string" }
  | { type: "string-list"; merge: "append" | "replace" }
  | { type: "bool" };
type SchemaNode = Leaf | {
  type: "table";
  fields: Record<string, SchemaNode>;
  unknownKeys: "error" | "warn";
};

const FILESYSTEMS = ["xfs", "ext4", "btrfs"] as const;

/**
 * Every key bootc accepts under `[install]`, in bootc's struct order (which is the order
 * `unistore config` lists them in). Adding or removing a key changes which files unistore
 * accepts: keep it equal to bootc's (spec §7.2), or unistore and bootc disagree about a host.
 */
export const INSTALL_CONFIG_SCHEMA: SchemaNode = {
  type: "table",
  unknownKeys: "error",
  fields: {
    "root-fs-type": { type: "enum", values: FILESYSTEMS },
    "block": { type: "enum-list", values: ["direct", "tpm2-luks"] },
    "filesystem": {
      type: "table",
      unknownKeys: "error",
      fields: {
        root: {
          type: "table",
          unknownKeys: "error",
          fields: { type: { type: "enum", values: FILESYSTEMS } },
        },
      },
    },
    "kargs": { type: "string-list", merge: "append" },
    "karg-deletes": { type: "string-list", merge: "append" },
    "match-architectures": { type: "string-list", merge: "replace" },
    "ostree": {
      type: "table",
      unknownKeys: "warn",
      fields: { "bls-append-except-default": { type: "string" } },
    },
    "stateroot": { type: "string" },
    "root-mount-spec": { type: "string" },
    "boot-mount-spec": { type: "string" },
    "bootupd": {
      type: "table",
      unknownKeys: "error",
      fields: { "skip-boot-uuid": { type: "bool" } },
    },
    "bootloader": { type: "enum", values: ["grub", "grub-cc", "systemd", "none"] },
    "discoverable-partitions": { type: "bool" },
    "enforce-container-sigpolicy": { type: "bool" },
    "storage": {
      type: "table",
      unknownKeys: "error",
      fields: { unified: { type: "enum", values: UNIFIED_MODES } },
    },
  },
};

/** bootc's default `block` when no file sets it (`canonicalize()`). */
const DEFAULT_BLOCK: BlockSetup[] = ["direct"];

/** What happened to one candidate file. */
export type InstallConfigFileStatus =
  /** Parsed and merged. */
  | "merged"
  /** Parsed, then skipped: `match-architectures` lacks the current architecture. */
  | "skipped-architecture"
  /** Parsed; has no `[install]` table, so contributes nothing. */
  | "no-install-table"
  /** Not read: a file of the same name in a later dir (or a `/dev/null` mask) replaces it. */
  | "overridden"
  /** A symlink to `/dev/null`, removing earlier files of its name. */
  | "masked";

/** One candidate file and what became of it. */
export interface InstallConfigFile {
  /** File name (the override key). */
  name: string;
  /** The file on this machine. */
  path: string;
  status: InstallConfigFileStatus;
  /** Why it was skipped or overridden (`overridden by ...`, `match-architectures [...]`). */
  detail: string | null;
}

/** One leaf setting of the merged config and the files it came from. */
export interface InstallConfigValue {
  /** Dotted key below `[install]`, e.g. `storage.unified`. */
  key: string;
  value: InstallConfigScalar;
  /** Files in merge order; several for appended lists; `[]` for bootc's `block` default. */
  sources: string[];
}

/** The merged configuration and how it came about. */
export interface MergedInstallConfig {
  /** The architecture `match-architectures` was compared against. */
  architecture: string;
  /** The four dirs searched (paths on this machine), lowest priority first. */
  dirs: string[];
  /**
   * Every candidate file: first those replaced while scanning the dirs (`overridden`, `masked`),
   * then the survivors in merge (file-name) order with what became of each.
   */
  files: InstallConfigFile[];
  /** The merged `[install]` table; null when no file contributed (bootc: no config). */
  install: InstallConfiguration | null;
  /** The same leaves with their sources, in struct order (`match-architectures` left out). */
  values: InstallConfigValue[];
  /** Unknown keys bootc ignores (only inside `[install.ostree]`). */
  warnings: string[];
}

/** A file parsed and validated: its leaves by dotted key, in file order. */
export interface ParsedInstallConfigFile {
  path: string;
  /** False when the file has no `[install]` table. */
  hasInstall: boolean;
  /** Leaf values by dotted key below `[install]`. */
  leaves: Map<string, InstallConfigScalar>;
  warnings: string[];
}

/**
 * The architecture name bootc compares `match-architectures` with: Rust's
 * `std::env::consts::ARCH` for this process (`x86_64`, `aarch64`).
 */
export function rustArchitecture(denoArch: string = Deno.build.arch): string {
  // Deno's names for its two Linux architectures are already Rust's.
  switch (denoArch) {
    case "x86_64":
    case "aarch64":
      return denoArch;
    default:
      throw new Error(`unsupported architecture ${JSON.stringify(denoArch)}`);
  }
}

/**
 * Parses and validates one install-config file.
 *
 * @throws {InstallConfigError} for bad TOML (with line and column), a top-level key other than
 *   `install`, an unknown key, or a value of the wrong type or outside the allowed set.
 * @example
 * ```ts
 * const f = parseInstallConfigFile('[install.storage]\nunified = "enabled"\n', "50.toml");
 * f.leaves.get("storage.unified"); // "enabled"
 * ```
 */
export function parseInstallConfigFile(text: string, path: string): ParsedInstallConfigFile {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const msg = e.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      throw new InstallConfigError({
        file: path,
        key: null,
        expected: "valid TOML",
        found: msg,
        line: e.line,
        column: e.column,
        excerpt: e.codeblock,
      }, { cause: e });
    }
    throw e;
  }
  const leaves = new Map<string, InstallConfigScalar>();
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(doc)) {
    if (key !== "install") {
      throw new InstallConfigError({
        file: path,
        key: quoteKey(key),
        expected: "only the [install] table",
        found: `an unknown key with value ${describe(value)}`,
      });
    }
  }
  const hasInstall = Object.hasOwn(doc, "install");
  if (hasInstall) validate(doc.install, INSTALL_CONFIG_SCHEMA, ["install"], path, leaves, warnings);
  return { path, hasInstall, leaves, warnings };
}

function validate(
  value: unknown,
  node: SchemaNode,
  keyPath: string[],
  file: string,
  leaves: Map<string, InstallConfigScalar>,
  warnings: string[],
): void {
  const key = keyPath.map(quoteKey).join(".");
  const fail = (expected: string, found: unknown, at = key): never => {
    throw new InstallConfigError({ file, key: at, expected, found: describe(found) });
  };
  const leafKey = keyPath.slice(1).join(".");
  switch (node.type) {
    case "table": {
      if (!isTable(value)) return fail("a table", value);
      for (const [k, v] of Object.entries(value)) {
        const child = node.fields[k];
        if (child === undefined) {
          const allowed = Object.keys(node.fields).join(", ");
          if (node.unknownKeys === "warn") {
            warnings.push(
              `${file}: unknown key ${
                [...keyPath, k].map(quoteKey).join(".")
              } ignored (as bootc does)`,
            );
            continue;
          }
          throw new InstallConfigError({
            file,
            key: [...keyPath, k].map(quoteKey).join("."),
            expected: `one of the keys ${allowed}`,
            found: `an unknown key with value ${describe(v)}`,
          });
        }
        validate(v, child, [...keyPath, k], file, leaves, warnings);
      }
      return;
    }
    case "enum":
      if (typeof value !== "string" || !node.values.includes(value)) {
        return fail(`one of ${node.values.map((v) => JSON.stringify(v)).join(", ")}`, value);
      }
      leaves.set(leafKey, value);
      return;
    case "enum-list": {
      const expected = `an array of ${node.values.map((v) => JSON.stringify(v)).join(", ")}`;
      if (!Array.isArray(value)) return fail(expected, value);
      value.forEach((v, i) => {
        if (typeof v !== "string" || !node.values.includes(v)) {
          fail(`one of ${node.values.map((x) => JSON.stringify(x)).join(", ")}`, v, `${key}[${i}]`);
        }
      });
      leaves.set(leafKey, [...value] as string[]);
      return;
    }
    case "string":
      if (typeof value !== "string") return fail("a string", value);
      leaves.set(leafKey, value);
      return;
    case "string-list":
      if (!Array.isArray(value)) return fail("an array of strings", value);
      value.forEach((v, i) => {
        if (typeof v !== "string") fail("a string", v, `${key}[${i}]`);
      });
      leaves.set(leafKey, [...value] as string[]);
      return;
    case "bool":
      if (typeof value !== "boolean") return fail("true or false", value);
      leaves.set(leafKey, value);
      return;
  }
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof TomlDate);
}

/** A TOML key as it would be written: bare when it can be, quoted otherwise. */
function quoteKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

/** A TOML value rendered for an error message. */
function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    return String(v);
  }
  if (typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof TomlDate) return v.toISOString();
  if (Array.isArray(v)) return `[${v.map(describe).join(", ")}]`;
  if (isTable(v)) {
    const inner = Object.entries(v).map(([k, x]) => `${quoteKey(k)} = ${describe(x)}`).join(", ");
    return `a table { ${inner} }`;
  }
  return String(v);
}

/** A file that survived liboverdrop's override-by-name. */
interface Candidate {
  name: string;
  rel: string;
}

const byteOrder = (a: string, b: string): number => {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

/**
 * Loads and merges the install configuration of `root` (see the module doc for the rules).
 * `architecture` overrides the process's own (for tests and cross-architecture roots).
 *
 * @throws {InstallConfigError} for the first file that bootc would refuse, naming the file, the
 *   dotted key, the value found and the allowed values.
 * @example
 * ```ts
 * const cfg = loadInstallConfig(new HostRoot("/"));
 * cfg.install?.storage?.unified ?? "disabled";
 * ```
 */
export function loadInstallConfig(
  root: HostRoot,
  opts: { architecture?: string } = {},
): MergedInstallConfig {
  const architecture = opts.architecture ?? rustArchitecture();
  const files: InstallConfigFile[] = [];
  const current = new Map<string, Candidate>();
  for (const dir of HOST_PATHS.installConfigDirs) {
    let dirfd: number | null;
    try {
      dirfd = root.openDir(dir);
    } catch (e) {
      // liboverdrop skips a base it cannot list; a file where the dir should be is that case.
      if (isErrno(e, "ENOTDIR")) continue;
      throw e;
    }
    if (dirfd === null) continue;
    try {
      for (const ent of readDir(dirfd)) {
        const name = ent.name;
        // Dotfiles are ignored (bootc passes ignore_dotfiles); so are names that are not UTF-8
        // (decoded with U+FFFD), which no bootc image ships.
        if (name.startsWith(".") || !name.endsWith(".toml") || name.includes("\uFFFD")) continue;
        const rel = `${dir}/${name}`;
        let type = ent.type;
        if (type === DT.UNKNOWN) {
          const mode = statAt(dirfd, name, AT.SYMLINK_NOFOLLOW).mode;
          type = isType(mode, S.IFREG) ? DT.REG : isType(mode, S.IFLNK) ? DT.LNK : DT.DIR;
        }
        let masked = false;
        if (type === DT.LNK) {
          // Only a link to /dev/null counts (it masks); liboverdrop ignores other symlinks.
          if (readlinkAt(dirfd, name) !== "/dev/null") continue;
          masked = true;
        } else if (type !== DT.REG) {
          continue;
        }
        const previous = current.get(name);
        if (previous) {
          files.push({
            name,
            path: root.path(previous.rel),
            status: "overridden",
            detail: `overridden by ${root.path(rel)}`,
          });
        }
        if (masked) {
          files.push({
            name,
            path: root.path(rel),
            status: "masked",
            detail: "symlink to /dev/null",
          });
          current.delete(name);
        } else {
          current.set(name, { name, rel });
        }
      }
    } finally {
      close(dirfd);
    }
  }

  const ordered = [...current.values()].sort((a, b) => byteOrder(a.name, b.name));
  const merged = new Map<string, InstallConfigValue>();
  const warnings: string[] = [];
  let any = false;
  for (const c of ordered) {
    const path = root.path(c.rel);
    const bytes = root.readFile(c.rel);
    if (bytes === null) continue; // removed while we looked
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      throw new InstallConfigError({
        file: path,
        key: null,
        expected: "UTF-8 TOML",
        found: "invalid UTF-8",
        line: 1,
        column: 1,
      }, {
        cause: e,
      });
    }
    const parsed = parseInstallConfigFile(text, path);
    warnings.push(...parsed.warnings);
    if (!parsed.hasInstall) {
      files.push({ name: c.name, path, status: "no-install-table", detail: "no [install] table" });
      continue;
    }
    const arches = parsed.leaves.get("match-architectures") as string[] | undefined;
    if (arches !== undefined && !arches.includes(architecture)) {
      files.push({
        name: c.name,
        path,
        status: "skipped-architecture",
        detail: `match-architectures ${JSON.stringify(arches)} does not include ${architecture}`,
      });
      continue;
    }
    any = true;
    files.push({ name: c.name, path, status: "merged", detail: null });
    for (const [key, value] of parsed.leaves) {
      if (key === "match-architectures") continue;
      const prev = merged.get(key);
      if (prev && (key === "kargs" || key === "karg-deletes")) {
        prev.value = [...(prev.value as string[]), ...(value as string[])];
        if (!prev.sources.includes(path)) prev.sources.push(path);
      } else {
        merged.set(key, { key, value, sources: [path] });
      }
    }
  }

  if (any) canonicalize(merged);
  const values = LEAF_ORDER.filter((k) => merged.has(k)).map((k) => merged.get(k)!);
  return {
    architecture,
    dirs: root.installConfigDirs,
    files,
    install: any ? toInstallConfiguration(values) : null,
    values,
    warnings,
  };
}

/** bootc's `canonicalize()`: sync the two root filesystem keys; default `block`. */
function canonicalize(merged: Map<string, InstallConfigValue>): void {
  const fsType = merged.get("filesystem.root.type");
  const rootFsType = merged.get("root-fs-type");
  if (fsType) {
    merged.set("root-fs-type", {
      key: "root-fs-type",
      value: fsType.value,
      sources: [...fsType.sources],
    });
  } else if (rootFsType) {
    merged.set("filesystem.root.type", {
      key: "filesystem.root.type",
      value: rootFsType.value,
      sources: [...rootFsType.sources],
    });
  }
  if (!merged.has("block")) {
    merged.set("block", { key: "block", value: [...DEFAULT_BLOCK], sources: [] });
  }
}

/** Dotted leaf keys in schema (bootc struct) order. */
const LEAF_ORDER: string[] = (() => {
  const out: string[] = [];
  const walk = (node: SchemaNode, prefix: string[]) => {
    if (node.type !== "table") {
      out.push(prefix.join("."));
      return;
    }
    for (const [k, child] of Object.entries(node.fields)) walk(child, [...prefix, k]);
  };
  walk(INSTALL_CONFIG_SCHEMA, []);
  return out;
})();

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function toInstallConfiguration(values: InstallConfigValue[]): InstallConfiguration {
  const out: Record<string, unknown> = {};
  for (const { key, value } of values) {
    const parts = key.split(".").map(camel);
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = Array.isArray(value) ? [...value] : value;
  }
  return out as InstallConfiguration;
}

/**
 * The merged config as bootc's `install print-configuration` shapes it: kebab-case keys,
 * nested tables, only the keys that are set; null when there is no config.
 */
export function installConfigToBootcJson(cfg: MergedInstallConfig): Record<string, unknown> | null {
  if (cfg.install === null) return null;
  const out: Record<string, unknown> = {};
  for (const { key, value } of cfg.values) {
    const parts = key.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = Array.isArray(value) ? [...value] : value;
  }
  return out;
}

/** `storage.unified` of the merged config, `disabled` when unset or without config. */
export function unifiedModeOf(cfg: MergedInstallConfig): UnifiedMode {
  return cfg.install?.storage?.unified ?? "disabled";
}
