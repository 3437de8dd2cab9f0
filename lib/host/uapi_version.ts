/**
 * Version comparison of the UAPI Version Format Specification
 * (https://uapi-group.org/specifications/specs/version_format_specification/), as systemd's
 * `strverscmp_improved()` and bootc's `uapi_version::Version` implement it. BLS entries are
 * ordered by their `version` field with it (newest first); for the plain integers ostree
 * writes (`version 3`) it agrees with glibc `strverscmp`, which ostree uses.
 *
 * Rules, in order, per segment: characters other than `[A-Za-z0-9~^.-]` are skipped; `~`
 * sorts before everything (even the end: `1~rc1 < 1`); the end of the string sorts before any
 * remaining segment; then, at a `-`, `^` or `.` in one string only, that string is older
 * (checked in this order, so `1-1 < 1^1 < 1.1 < 1a`); numeric
 * segments compare by value (leading zeros ignored) and beat alphabetic ones; alphabetic
 * segments compare bytewise, a longer one being newer when one is a prefix of the other.
 *
 * @module
 */

const VALID = /[A-Za-z0-9~^.-]/;
const DIGIT = /[0-9]/;
const ALPHA = /[A-Za-z]/;

function cmp(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function strcmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Compares two version strings: negative when `a` is older than `b`, 0 when equivalent,
 * positive when newer.
 *
 * @example
 * ```ts
 * compareVersions("41.20251125.0", "41.20251124.0") > 0; // true
 * compareVersions("1.0~rc1", "1.0") < 0;                 // true
 * compareVersions("10", "9") > 0;                        // true
 * ```
 */
export function compareVersions(a: string, b: string): number {
  if (a === "" || b === "") return strcmp(a, b);
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && !VALID.test(a[i])) i++;
    while (j < b.length && !VALID.test(b[j])) j++;
    const ca = a[i] ?? "";
    const cb = b[j] ?? "";
    if (ca === "~" || cb === "~") {
      const r = cmp(ca !== "~" ? 1 : 0, cb !== "~" ? 1 : 0);
      if (r !== 0) return r;
      i++;
      j++;
    }
    if (i >= a.length || j >= b.length) return strcmp(a.slice(i), b.slice(j));
    for (const sep of ["-", "^", "."]) {
      const sa = a[i] === sep;
      const sb = b[j] === sep;
      if (sa || sb) {
        // The string with the separator here is the older one (123-1 < 123^1 < 123.1 < 123a),
        // though any of them is newer than the string ending (123 < 123^1).
        const r = cmp(sa ? 0 : 1, sb ? 0 : 1);
        if (r !== 0) return r;
        i++;
        j++;
      }
    }
    const da = DIGIT.test(a[i] ?? "");
    const db = DIGIT.test(b[j] ?? "");
    let ea = i;
    let eb = j;
    if (da || db) {
      while (ea < a.length && DIGIT.test(a[ea])) ea++;
      while (eb < b.length && DIGIT.test(b[eb])) eb++;
      let r = cmp(ea > i ? 1 : 0, eb > j ? 1 : 0);
      if (r !== 0) return r;
      while (a[i] === "0") i++;
      while (b[j] === "0") j++;
      r = cmp(ea - i, eb - j);
      if (r !== 0) return r;
      r = strcmp(a.slice(i, ea), b.slice(j, eb));
      if (r !== 0) return r;
    } else {
      while (ea < a.length && ALPHA.test(a[ea])) ea++;
      while (eb < b.length && ALPHA.test(b[eb])) eb++;
      const n = Math.min(ea - i, eb - j);
      let r = strcmp(a.slice(i, i + n), b.slice(j, j + n));
      if (r !== 0) return r;
      r = cmp(ea - i, eb - j);
      if (r !== 0) return r;
    }
    i = ea;
    j = eb;
  }
}
