// The YAML emitter: serde_yaml-style layout, and a round trip through a real YAML parser
// (PyYAML's safe_load, a YAML 1.1 reader: the strictest about plain scalars like `yes`).

import assert from "node:assert/strict";
import type { JsonValue } from "../../lib/format/canonical_json.ts";
import { toYaml, YamlError } from "../../lib/format/yaml.ts";
import { run } from "../harness/run.ts";
import { findTool, skippableTest } from "../harness/tools.ts";

Deno.test("layout: struct order, 2-space maps, dashes at the key's indent, empty containers inline", () => {
  const status: JsonValue = {
    apiVersion: "org.containers.bootc/v1",
    kind: "BootcHost",
    metadata: { name: "host" },
    spec: {
      image: { image: "quay.io/centos-bootc/centos-bootc:stream9", transport: "registry" },
      bootOrder: "default",
    },
    status: {
      staged: null,
      booted: {
        image: { imageDigest: `sha256:${"a".repeat(64)}`, timestamp: "2024-08-07T12:00:00Z" },
        pinned: false,
      },
      otherDeployments: [],
      kargs: ["console=ttyS0", "quiet"],
      images: [{ name: "a", issues: [] }, { name: "b", issues: ["x y"] }],
      nested: [["a", "b"], []],
      deploySerial: 0,
      extra: {},
      omitted: undefined,
    },
  };
  assert.equal(
    toYaml(status),
    [
      "apiVersion: org.containers.bootc/v1",
      "kind: BootcHost",
      "metadata:",
      "  name: host",
      "spec:",
      "  image:",
      "    image: quay.io/centos-bootc/centos-bootc:stream9",
      "    transport: registry",
      "  bootOrder: default",
      "status:",
      "  staged: null",
      "  booted:",
      "    image:",
      `      imageDigest: sha256:${"a".repeat(64)}`,
      '      timestamp: "2024-08-07T12:00:00Z"',
      "    pinned: false",
      "  otherDeployments: []",
      "  kargs:",
      "  - console=ttyS0",
      "  - quiet",
      "  images:",
      "  - name: a",
      "    issues: []",
      "  - name: b",
      "    issues:",
      '    - "x y"',
      "  nested:",
      "  - - a",
      "    - b",
      "  - []",
      "  deploySerial: 0",
      "  extra: {}",
      "",
    ].join("\n"),
  );
  assert.equal(toYaml("plain"), "plain\n");
  assert.equal(toYaml([]), "[]\n");
  assert.equal(toYaml(null), "null\n");
});

Deno.test("strings that would read as something else are quoted; unrepresentable values refused", () => {
  for (
    const s of [
      "yes",
      "No",
      "ON",
      "off",
      "y",
      "null",
      "~",
      "true",
      "1.0",
      "0x10",
      "2024-01-01",
      "",
      " a",
      "a: b",
      "#c",
      "-",
      "x:",
      "=",
    ]
  ) {
    assert.ok(toYaml(s).startsWith('"'), s);
  }
  for (
    const s of [
      "default",
      "quay.io/x/y:tag",
      "sha256:abc",
      "/usr/lib",
      "_x",
      "a-b_c.d@e+f",
      "console=ttyS0",
    ]
  ) {
    assert.equal(toYaml(s), `${s}\n`, s);
  }
  assert.equal(
    toYaml("tab\there\u0085\u2028\ufeff\u0007"),
    '"tab\\there\\x85\\u2028\\ufeff\\x07"\n',
  );
  assert.equal(toYaml(1e21), "1.0e+21\n");
  assert.equal(toYaml(1.5e-7), "1.5e-7\n");
  assert.equal(toYaml(-0), "0\n");
  assert.throws(() => toYaml({ a: [NaN] }), (e) => e instanceof YamlError && e.at === "$.a[0]");
  assert.throws(() => toYaml({ s: "\ud800" }), (e) => e instanceof YamlError && e.at === "$.s");
  assert.throws(() => toYaml({ d: new Date(0) } as unknown as JsonValue), YamlError);
});

// Awkward data: every string class the emitter must quote or escape, keys included.
const AWKWARD_STRINGS = [
  "plain",
  "yes",
  "No",
  "ON",
  "off",
  "y",
  "n",
  "null",
  "Null",
  "~",
  "true",
  "False",
  "1",
  "-1",
  "+1",
  "1.0",
  "1e3",
  "0x1F",
  "0o17",
  "017",
  "1_000",
  "1:20",
  "190:20:30",
  "2024-01-01",
  "2001-12-14t21:59:43.10-05:00",
  ".inf",
  "-.Inf",
  ".nan",
  "",
  " leading",
  "trailing ",
  "a: b",
  "a #b",
  "#x",
  "- x",
  "-",
  "?",
  "? x",
  ":x",
  "x:",
  "[x]",
  "{x: y}",
  "*alias",
  "&anchor",
  "!tag",
  "!!str",
  "|",
  ">",
  "'single'",
  '"double"',
  "%TAG",
  "@at",
  "`tick",
  "=",
  "<<",
  ",",
  "line\nbreak",
  "crlf\r\n",
  "tab\tx",
  "back\\slash",
  "nul\u0000byte",
  "bell\u0007",
  "del\u007f",
  "nel\u0085",
  "nbsp\u00a0",
  "ls\u2028ps\u2029",
  "bom\ufeff",
  "nonchar\ufffe\uffff",
  "é ü ß",
  "emoji 😀",
  "quay.io/centos-bootc/centos-bootc:stream9",
  `sha256:${"c".repeat(64)}`,
  "ostree-unverified-registry:quay.io/x/y:tag",
];

function awkwardDocument(): JsonValue {
  const keyed: Record<string, JsonValue> = {};
  AWKWARD_STRINGS.forEach((s, i) => (keyed[s] = i));
  return {
    strings: AWKWARD_STRINGS,
    keyed,
    numbers: [0, -0, 1, -17, 9007199254740991, 1e21, 0.5, -2.25, 1.5e-7, 123456789.125],
    literals: [true, false, null],
    nested: [[[]], [{}], [{ a: [{ b: null }] }], { "": "" }],
    deep: { a: { b: { c: { d: ["e", { f: "g" }] } } } },
  };
}

const PYTHON = findTool("python3");
function pyyamlMissing(): string | null {
  if (PYTHON === null) return "python3 not found (apt-get install python3)";
  const r = new Deno.Command(PYTHON, {
    args: ["-c", "import yaml"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return r.success ? null : "python3 cannot import yaml (apt-get install python3-yaml)";
}

skippableTest(
  "round trip through PyYAML safe_load: same values, keys in insertion order",
  pyyamlMissing(),
  async () => {
    const doc = awkwardDocument();
    const yaml = toYaml(doc);
    // Python prints JSON with ASCII escapes (so nothing is lost on the way back) and the keys
    // of each mapping in the order the YAML file had them.
    const script = [
      "import json, sys, yaml",
      "doc = yaml.safe_load(sys.stdin.read())",
      "sys.stdout.write(json.dumps({'doc': doc, 'keyOrder': list(doc['keyed'].keys())}, ensure_ascii=True))",
    ].join("\n");
    const r = await run([PYTHON!, "-c", script], { stdin: new TextEncoder().encode(yaml) });
    assert.equal(r.code, 0, `${r.stderr}\n--- yaml ---\n${yaml}`);
    const back = JSON.parse(r.stdout);
    // -0 is written as 0 (JSON has no negative zero either).
    const expected = JSON.parse(JSON.stringify(doc));
    assert.deepEqual(back.doc, expected);
    // Insertion order as JavaScript keeps it (integer-like keys such as "1" first).
    assert.deepEqual(back.keyOrder, Object.keys((doc as { keyed: object }).keyed));
    // Every number came back as a number, of the same kind (PyYAML makes "1e+21" a string).
    assert.deepEqual(
      back.doc.numbers.map((n: unknown) => typeof n),
      expected.numbers.map(() => "number"),
    );
  },
);
