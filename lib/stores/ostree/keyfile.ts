/**
 * GKeyFile text: the format of an ostree repo's `config` and of deployment `.origin` files.
 *
 * ```
 * # comment
 * [core]
 * repo_version=1
 * mode=bare
 * ```
 *
 * A writer must keep what it does not understand (spec: ../../../../shared/specs/ostree-repo.md
 * §1.1 "A writer that edits config must preserve unknown groups and keys"), so the parsed file
 * keeps every line, comments included, and edits change only the lines they touch.
 *
 * @module
 */

import { OstreeError } from "./errors.ts";

type Line =
  | { kind: "text"; text: string } // comment or blank line
  | { kind: "entry"; key: string; value: string; raw?: string }; // raw: the line as read

interface Group {
  name: string;
  lines: Line[];
  /** Created by an edit rather than parsed: written with a blank line before it. */
  added?: boolean;
}

/** Thrown for a line GLib would refuse to parse. */
export class KeyFileError extends OstreeError {
  override name = "KeyFileError";
}

/**
 * A parsed GKeyFile that can be read, edited and written back.
 *
 * @example
 * ```ts
 * const kf = KeyFile.parse("[core]\nrepo_version=1\nmode=bare\n", "config");
 * kf.getString("core", "mode"); // "bare"
 * kf.setString("composefs", "unified", "true");
 * kf.toString(); // "[core]\nrepo_version=1\nmode=bare\n\n[composefs]\nunified=true\n"
 * ```
 */
export class KeyFile {
  #preamble: Line[] = [];
  #groups: Group[] = [];

  /**
   * Parses `text`; `where` (a path) names the file in errors.
   *
   * @throws {KeyFileError} for a line that is neither a comment, a group header nor key=value,
   *   or a key before the first group.
   */
  static parse(text: string, where: string): KeyFile {
    const kf = new KeyFile();
    let current: Group | null = null;
    const lines = text.split("\n");
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    lines.forEach((raw, i) => {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      const trimmed = line.trimStart();
      if (trimmed === "" || trimmed.startsWith("#")) {
        (current ? current.lines : kf.#preamble).push({ kind: "text", text: line });
        return;
      }
      if (trimmed.startsWith("[")) {
        const close = trimmed.indexOf("]");
        if (close < 0 || trimmed.slice(close + 1).trim() !== "") {
          throw new KeyFileError(
            `${where}:${i + 1}: malformed group header ${JSON.stringify(line)}`,
          );
        }
        current = { name: trimmed.slice(1, close), lines: [] };
        kf.#groups.push(current);
        return;
      }
      const eq = line.indexOf("=");
      if (eq < 0) {
        throw new KeyFileError(
          `${where}:${i + 1}: expected key=value, found ${JSON.stringify(line)}`,
        );
      }
      if (!current) {
        throw new KeyFileError(`${where}:${i + 1}: key outside of any [group]`);
      }
      current.lines.push({
        kind: "entry",
        key: line.slice(0, eq).trim(),
        value: line.slice(eq + 1).trimStart(),
        raw: line,
      });
    });
    return kf;
  }

  /** Group names in file order. */
  groups(): string[] {
    return this.#groups.map((g) => g.name);
  }

  /** Keys of `group` in file order (each once). */
  keys(group: string): string[] {
    const out = new Set<string>();
    for (const g of this.#groups) {
      if (g.name !== group) continue;
      for (const l of g.lines) if (l.kind === "entry") out.add(l.key);
    }
    return [...out];
  }

  /** The raw (still escaped) value of `key`; the last occurrence wins, as in GLib. */
  getRaw(group: string, key: string): string | undefined {
    let found: string | undefined;
    for (const g of this.#groups) {
      if (g.name !== group) continue;
      for (const l of g.lines) if (l.kind === "entry" && l.key === key) found = l.value;
    }
    return found;
  }

  /** A string value with GKeyFile escapes (`\s \n \t \r \\`) decoded. */
  getString(group: string, key: string): string | undefined {
    const raw = this.getRaw(group, key);
    return raw === undefined ? undefined : unescapeValue(raw);
  }

  /**
   * A boolean value (`true`/`false`, also `1`/`0` as GLib accepts).
   *
   * @throws {KeyFileError} for any other value.
   */
  getBoolean(group: string, key: string): boolean | undefined {
    const raw = this.getRaw(group, key)?.trim();
    if (raw === undefined) return undefined;
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw new KeyFileError(
      `[${group}] ${key}: expected true or false, found ${JSON.stringify(raw)}`,
    );
  }

  /**
   * An integer value.
   *
   * @throws {KeyFileError} when the value is not a decimal integer.
   */
  getInteger(group: string, key: string): number | undefined {
    const raw = this.getRaw(group, key)?.trim();
    if (raw === undefined) return undefined;
    if (!/^[-+]?\d+$/.test(raw)) {
      throw new KeyFileError(
        `[${group}] ${key}: expected an integer, found ${JSON.stringify(raw)}`,
      );
    }
    return Number(raw);
  }

  /** Sets a raw value: replaces the last occurrence, or appends to the group (created if needed). */
  setRaw(group: string, key: string, value: string): void {
    if (key === "" || key.includes("=") || key.includes("\n") || key.includes("[")) {
      throw new KeyFileError(`invalid key ${JSON.stringify(key)}`);
    }
    if (value.includes("\n")) throw new KeyFileError(`[${group}] ${key}: raw value with a newline`);
    let last: { kind: "entry"; key: string; value: string; raw?: string } | undefined;
    for (const g of this.#groups) {
      if (g.name !== group) continue;
      for (const l of g.lines) if (l.kind === "entry" && l.key === key) last = l;
    }
    if (last) {
      last.value = value;
      last.raw = undefined;
      return;
    }
    let g = this.#groups.findLast((x) => x.name === group);
    if (!g) {
      g = { name: group, lines: [], added: true };
      this.#groups.push(g);
    }
    // Insert after the last entry, before trailing blank lines/comments that separate groups.
    let at = g.lines.length;
    while (at > 0 && g.lines[at - 1].kind === "text") at--;
    g.lines.splice(at, 0, { kind: "entry", key, value });
  }

  /** Sets a string value, escaping it as GKeyFile does. */
  setString(group: string, key: string, value: string): void {
    this.setRaw(group, key, escapeValue(value));
  }

  /** Sets a boolean value (`true` / `false`). */
  setBoolean(group: string, key: string, value: boolean): void {
    this.setRaw(group, key, value ? "true" : "false");
  }

  /** Removes every occurrence of `key` in `group`; returns whether one was there. */
  remove(group: string, key: string): boolean {
    let removed = false;
    for (const g of this.#groups) {
      if (g.name !== group) continue;
      const before = g.lines.length;
      g.lines = g.lines.filter((l) => !(l.kind === "entry" && l.key === key));
      removed ||= g.lines.length !== before;
    }
    return removed;
  }

  /** The file text; unchanged lines come back byte for byte (line endings become `\n`). */
  toString(): string {
    const out: string[] = [];
    const emit = (l: Line) => out.push(l.kind === "text" ? l.text : l.raw ?? `${l.key}=${l.value}`);
    this.#preamble.forEach(emit);
    for (const g of this.#groups) {
      // A group added by an edit is separated from the previous one by a blank line, as GLib
      // writes groups.
      if (g.added && out.length > 0 && out[out.length - 1] !== "") out.push("");
      out.push(`[${g.name}]`);
      g.lines.forEach(emit);
    }
    return out.length === 0 ? "" : out.join("\n") + "\n";
  }
}

function unescapeValue(raw: string): string {
  return raw.replace(/\\(.)/g, (_, c: string) => {
    switch (c) {
      case "s":
        return " ";
      case "n":
        return "\n";
      case "t":
        return "\t";
      case "r":
        return "\r";
      case "\\":
        return "\\";
      default:
        return `\\${c}`;
    }
  });
}

function escapeValue(value: string): string {
  let s = value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(
    /\r/g,
    "\\r",
  );
  // A leading space would be eaten by the parser: GLib writes it as \s.
  if (s.startsWith(" ")) s = "\\s" + s.slice(1);
  return s;
}
