// Canonical JSON against RFC 8785's own examples and bootc's status sample (spec §8.2).

import assert from "node:assert/strict";
import {
  canonicalJson,
  CanonicalJsonError,
  type JsonValue,
} from "../../lib/format/canonical_json.ts";

Deno.test("RFC 8785 §3.2.2: literals, numbers and string escapes", () => {
  // The RFC's input, as a JSON text (JSON.parse gives the same values a JSON reader would).
  const input = JSON.parse(`{
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\"\\/",
    "literals": [null, true, false]
  }`);
  assert.equal(
    canonicalJson(input),
    String
      .raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
  );
});

Deno.test("RFC 8785 §3.2.3: member names sorted by UTF-16 code units", () => {
  const input: JsonValue = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
  };
  const out = canonicalJson(input);
  // Read the member names back in textual order.
  const names = [...out.matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) => JSON.parse(`"${m[1]}"`));
  assert.deepEqual(names, ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"]);
});

Deno.test("bootc status sample (spec §8.2) is already canonical: re-canonicalizing gives it back", () => {
  const sample =
    `{"apiVersion":"org.containers.bootc/v1","kind":"BootcHost","metadata":{"name":"host"},"spec":{"bootOrder":"default","image":{"image":"quay.io/centos-bootc/centos-bootc:stream9","transport":"registry"}},"status":{"booted":{"cachedUpdate":null,"composefs":null,"downloadOnly":false,"image":{"architecture":"amd64","image":{"image":"quay.io/centos-bootc/centos-bootc:stream9","transport":"registry"},"imageDigest":"sha256:${
      "a".repeat(64)
    }","timestamp":"2024-08-07T12:00:00Z","version":"stream9.20240807.0"},"incompatible":false,"ostree":{"checksum":"${
      "b".repeat(64)
    }","deploySerial":0,"stateroot":"default"},"pinned":false,"softRebootCapable":false,"store":"ostreeContainer"},"readOnly":false,"rollback":null,"rollbackQueued":false,"staged":null,"storage":{"ostreeComposefsBound":true,"unified":"enabled-with-copy"},"type":"bootcHost","usrOverlay":null}}`;
  assert.equal(canonicalJson(JSON.parse(sample)), sample);
  // Built in struct order (as the status command will), it still comes out sorted.
  const built: JsonValue = {
    apiVersion: "org.containers.bootc/v1",
    kind: "BootcHost",
    metadata: { name: "host" },
    spec: { image: null, bootOrder: "default" },
    status: {
      staged: null,
      booted: null,
      rollback: null,
      rollbackQueued: false,
      type: null,
      storage: undefined,
    },
  };
  assert.equal(
    canonicalJson(built),
    '{"apiVersion":"org.containers.bootc/v1","kind":"BootcHost","metadata":{"name":"host"},' +
      '"spec":{"bootOrder":"default","image":null},' +
      '"status":{"booted":null,"rollback":null,"rollbackQueued":false,"staged":null,"type":null}}',
  );
});

Deno.test("integers, -0, nested empties; values outside the JSON model are refused with their place", () => {
  assert.equal(
    canonicalJson([0, -0, 1, -1, 9007199254740991, 1e21, [], {}]),
    "[0,0,1,-1,9007199254740991,1e+21,[],{}]",
  );
  assert.equal(canonicalJson("\u2028\u007f\ud83d\ude00"), '"\u2028\u007f\ud83d\ude00"');
  const bad: [unknown, string][] = [
    [{ a: [1, NaN] }, "$.a[1]"],
    [{ b: Infinity }, "$.b"],
    [{ s: "x\ud800y" }, "$.s"],
    [{ ["\udc00"]: 1 }, "$ key"],
    [{ d: new Date(0) }, "$.d"],
    [{ n: 1n }, "$.n"],
  ];
  for (const [value, at] of bad) {
    assert.throws(
      () => canonicalJson(value as JsonValue),
      (e) => e instanceof CanonicalJsonError && e.at === at,
      at,
    );
  }
});
