/**
 * The unified-storage mode: the value of `[install.storage] unified` in bootc's install config
 * and of `"unified"` in `composefs/bootc.json` (bootc `UnifiedStorageState`, kebab-case; spec
 * bootc-unified-storage.md §4, §7.2).
 *
 * - `disabled` (default): the stores do not share blocks;
 * - `enabled`: sharing by reflink only; fails when the filesystem has none (bootc `ZeroCopy`);
 * - `enabled-with-copy`: reflink where possible, byte copies otherwise (bootc `IfPossible`).
 *
 * @module
 */

/** One of the three modes. */
export type UnifiedMode = "disabled" | "enabled" | "enabled-with-copy";

/**
 * Every mode, in bootc's declaration order. The spellings are bootc's on-disk and config
 * format: changing one makes unistore unable to read bootc's files and bootc unable to read
 * unistore's.
 */
export const UNIFIED_MODES: readonly UnifiedMode[] = ["disabled", "enabled", "enabled-with-copy"];

/** True when `v` is one of {@linkcode UNIFIED_MODES}. */
export function isUnifiedMode(v: unknown): v is UnifiedMode {
  return typeof v === "string" && (UNIFIED_MODES as readonly string[]).includes(v);
}
