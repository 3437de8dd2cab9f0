import assert from "node:assert/strict";
import { NameFingerprintSet } from "../../../lib/stores/cstorage/name_fingerprints.ts";
import { DuplicatePathCheck } from "../../../lib/stores/cstorage/tar_split.ts";
import { UnsupportedLayerError } from "../../../lib/stores/cstorage/errors.ts";

/** Paths shaped like a large distribution layer's: shared prefixes, numbered leaves. */
function layerNames(n: number): string[] {
  const dirs = ["usr/share/locale", "usr/lib64/python3.12/site-packages", "usr/share/doc"];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(`${dirs[i % 3]}/pkg${(i / 3) >> 6}/LC_MESSAGES/file-${i}.mo`);
  }
  return out;
}

Deno.test("name fingerprints: 300,000 distinct names are all new, then all seen", () => {
  const names = layerNames(300_000);
  const seen = new NameFingerprintSet();
  // Growing from 1,024 slots to 1,048,576 on the way: every rehash must keep every name.
  for (const n of names) assert.equal(seen.add(n), true, n);
  assert.equal(seen.size, 300_000);
  for (const n of names) assert.equal(seen.add(n), false, n);
  assert.equal(seen.size, 300_000);
});

Deno.test("name fingerprints: names that differ by order, length or one high byte stay apart", () => {
  const seen = new NameFingerprintSet();
  const names = [
    "",
    "\0",
    "a",
    "a\0",
    "ab",
    "ba",
    "etc/passwd",
    "etc/passwe",
    "etc/passw\xe9", // a non-UTF-8 byte, as binary strings carry it
    "etc/passw\xe8",
    "etc/pass/wd",
  ];
  for (const n of names) assert.equal(seen.add(n), true, JSON.stringify(n));
  for (const n of names) assert.equal(seen.add(n), false, JSON.stringify(n));
});

Deno.test("duplicate paths: a name that cleans to one already seen is refused, naming it", () => {
  const check = new DuplicatePathCheck("layer abc");
  for (const n of layerNames(5000)) check.add(n);
  check.add("etc/passwd");
  assert.throws(
    () => check.add("./etc//passwd"),
    (e: unknown) =>
      e instanceof UnsupportedLayerError && /layer abc/.test(e.message) &&
      /\.\/etc\/\/passwd/.test(e.message) && /duplicate paths/.test(e.message),
  );
  assert.throws(() => check.add(layerNames(5000)[4321]), UnsupportedLayerError);
});
