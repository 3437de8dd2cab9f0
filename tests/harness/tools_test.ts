import assert from "node:assert/strict";
import { findTool, requireTool, requireTools } from "./tools.ts";
import { run } from "./run.ts";

Deno.test("findTool returns an absolute path, also for sbin tools", () => {
  const sh = findTool("sh");
  assert.ok(sh !== null && sh.startsWith("/") && sh.endsWith("/sh"), String(sh));
  assert.equal(findTool("unistore-no-such-tool"), null);
  assert.equal(findTool("/bin/sh"), "/bin/sh");
});

Deno.test("requireTool / requireTools name the program and the package", () => {
  assert.equal(requireTool("sh", "dash"), null);
  assert.equal(
    requireTool("unistore-no-such-tool", "no-such-pkg"),
    "unistore-no-such-tool not found (apt-get install no-such-pkg)",
  );
  assert.equal(
    requireTools([{ bin: "sh", pkg: "dash" }, { bin: "unistore-a", pkg: "pa" }, {
      bin: "unistore-b",
      pkg: "pb",
    }]),
    "unistore-a not found (apt-get install pa); unistore-b not found (apt-get install pb)",
  );
});

// The skip/fail policy is about how tests get registered, so it is observed from outside: a
// fixture test file is run by a child `deno test`, once with CI=true and once without.
const FIXTURE = `
import { toolTest } from ${JSON.stringify(new URL("./tools.ts", import.meta.url).href)};
const missing = [{ bin: "unistore-no-such-tool", pkg: "no-such-pkg" }];
toolTest("needs a missing tool", missing, () => {});
toolTest("needs it too", missing, () => {});
toolTest("needs sh", [{ bin: "sh", pkg: "dash" }], (bins) => {
  if (!bins.sh.startsWith("/")) throw new Error("not absolute: " + bins.sh);
});
`;

async function runFixture(ci: string): Promise<{ code: number; out: string; err: string }> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-tools-test-" });
  try {
    await Deno.writeTextFile(`${dir}/fixture_test.ts`, FIXTURE);
    const r = await run(
      [Deno.execPath(), "test", "--no-config", "--no-lock", "-A", `${dir}/fixture_test.ts`],
      { env: { CI: ci, NO_COLOR: "1" } },
    );
    return { code: r.code, out: r.stdout, err: r.stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("toolTest outside CI: missing tools are ignored, the reason printed once", async () => {
  const r = await runFixture("false");
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /^ok \| 1 passed \| 0 failed \| 2 ignored /m);
  // Printed at registration (Deno shows it as "pre-test output"), once for both tests.
  const skips = (r.out + r.err).match(/skip: unistore-no-such-tool not found/g) ?? [];
  assert.equal(skips.length, 1, r.out + r.err);
  assert.match(
    r.out + r.err,
    /skip: unistore-no-such-tool not found \(apt-get install no-such-pkg\)/,
  );
});

Deno.test("toolTest with CI=true: missing tools fail the tests with the reason", async () => {
  const r = await runFixture("true");
  assert.notEqual(r.code, 0);
  assert.match(r.out, /^FAILED \| 1 passed \| 2 failed /m);
  assert.match(
    r.out + r.err,
    /unistore-no-such-tool not found \(apt-get install no-such-pkg\) \(CI=true: a missing prerequisite is a failure/,
  );
});
