// UAPI version comparison (BLS `version` ordering), against the ordered list systemd's own
// test of strverscmp_improved() uses, plus the cases BLS entries meet.

import assert from "node:assert/strict";
import { compareVersions } from "../../lib/host/uapi_version.ts";

// Each is older than every later one (systemd src/test/test-string-util.c).
const ASCENDING = [
  "",
  "~1",
  "ab",
  "abb",
  "abc",
  "0001",
  "002",
  "12",
  "122",
  "122.9",
  "123~rc1",
  "123",
  "123-a",
  "123-a.1",
  "123-a1",
  "123-a1.1",
  "123-3",
  "123-3.1",
  "123^patch1",
  "123^1",
  "123.a-1",
  "123.1-1",
  "123a-1",
  "124",
];

Deno.test("UAPI version order: systemd's ascending list, pairwise", () => {
  for (let i = 0; i < ASCENDING.length; i++) {
    assert.equal(compareVersions(ASCENDING[i], ASCENDING[i]), 0, ASCENDING[i]);
    for (let j = i + 1; j < ASCENDING.length; j++) {
      const [a, b] = [ASCENDING[i], ASCENDING[j]];
      assert.ok(compareVersions(a, b) < 0, `${JSON.stringify(a)} < ${JSON.stringify(b)}`);
      assert.ok(compareVersions(b, a) > 0, `${JSON.stringify(b)} > ${JSON.stringify(a)}`);
    }
  }
});

Deno.test("UAPI version order: equivalences and BLS-style versions", () => {
  assert.equal(compareVersions("0123", "123"), 0); // leading zeros
  // "_" is skipped, so "1_2" is 1 then 2; a "." before a segment marks the older version.
  assert.ok(compareVersions("1_2", "1.2") > 0);
  assert.ok(compareVersions("10", "9") > 0); // numeric, not lexical: ostree's version N
  assert.ok(compareVersions("41.20251125.0", "41.20251124.0") > 0);
  assert.ok(compareVersions("fedora-42.0", "fedora-41.9") > 0);
  assert.ok(compareVersions("6.1.0-13-amd64", "6.1.0-9-amd64") > 0);
});
