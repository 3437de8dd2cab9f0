/**
 * Tar entry names as containers-storage sees them: cleaned like Go's `filepath.Clean`, checked
 * for escapes, and split into components that are opened one by one relative to a directory fd
 * (never joined onto a host path).
 *
 * Names are raw bytes (they need not be UTF-8), carried as binary strings
 * (lib/oci/binary_string.ts).
 *
 * @module
 */

import { type BinaryString, bytesFromBinary } from "../../oci/binary_string.ts";

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** A binary string for messages: UTF-8 where valid, U+FFFD elsewhere. */
export function printable(s: BinaryString): string {
  return utf8.decode(bytesFromBinary(s));
}

/**
 * Go's `path/filepath.Clean` on a slash-separated name: repeated slashes collapsed, `.`
 * dropped, `x/..` removed, `..` at the root dropped, `"."` for an empty result. tar-split uses
 * it to find duplicate entries; the overlay driver uses it before extracting.
 *
 * @example
 * ```ts
 * goClean("./etc//passwd"); // "etc/passwd"
 * goClean("/a/../../b"); // "/b"
 * goClean("a/../../b"); // "../b"
 * ```
 */
export function goClean(path: BinaryString): BinaryString {
  if (path === "") return ".";
  const rooted = path.charCodeAt(0) === 0x2f;
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const body = out.join("/");
  if (rooted) return `/${body}`;
  return body === "" ? "." : body;
}

/** Why a name cannot be placed below the layer root. */
export type PathEscape = { escape: string };

/**
 * The components of a tar name below the extraction root, as the overlay driver resolves
 * `filepath.Join(dest, name)`: leading `/` ignored, `.` and `..` resolved lexically. A name
 * that climbs above the root returns `{ escape }` instead (c/storage refuses it as a breakout).
 * The root itself is the empty array.
 *
 * @example
 * ```ts
 * layerComponents("/usr/./bin/"); // ["usr", "bin"]
 * layerComponents("../etc/passwd"); // { escape: "../etc/passwd" }
 * ```
 */
export function layerComponents(name: BinaryString): BinaryString[] | PathEscape {
  const out: string[] = [];
  const rooted = name.charCodeAt(0) === 0x2f;
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0) out.pop();
      else if (!rooted) return { escape: name };
      continue;
    }
    out.push(part);
  }
  return out;
}

/** Go's `path.Base`: the last element, trailing slashes ignored; `"."` for empty, `"/"` for root. */
export function goBase(path: BinaryString): BinaryString {
  if (path === "") return ".";
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 0x2f) end--;
  if (end === 0) return "/";
  const start = path.lastIndexOf("/", end - 1) + 1;
  return path.slice(start, end);
}
