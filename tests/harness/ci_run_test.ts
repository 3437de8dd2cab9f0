// Tests of the parts of .ci/run that can run anywhere: the summary parser (`--summary LOG`) and
// the README test-command extraction (`--test-command`). The full script needs root and apt.

import assert from "node:assert/strict";
import { run } from "./run.ts";

const CI_RUN = new URL("../../.ci/run", import.meta.url).pathname;
const ESC = "\x1b";

async function summarize(log: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-ci-run-test-" });
  try {
    await Deno.writeTextFile(`${dir}/test.log`, log);
    return await run(["bash", CI_RUN, "--summary", `${dir}/test.log`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SAMPLES: [string, string, string][] = [
  [
    "passing run with steps and ignored tests",
    "running 14 tests from ./tests/x_test.ts\na ... ok (3ms)\n\n" +
    "ok | 12 passed (3 steps) | 0 failed | 2 ignored (4s)\n\n",
    "12 passed, 0 failed, 2 skipped",
  ],
  [
    "failing run",
    "b ... FAILED (2ms)\n\n ERRORS \n\nFAILED | 10 passed | 2 failed (5s)\n\nerror: Test failed\n",
    "10 passed, 2 failed",
  ],
  [
    "colours and CRLF",
    `${ESC}[0m${ESC}[32mok${ESC}[0m | 3 passed | 0 failed ${ESC}[0m${ESC}[38;5;245m(1ms)${ESC}[0m\r\n`,
    "3 passed, 0 failed",
  ],
  [
    "steps on failed and ignored, filtered out",
    "FAILED | 4 passed (1 step) | 1 failed (2 steps) | 1 ignored (3 steps) | 5 filtered out (7ms)\n",
    "4 passed, 1 failed, 1 skipped",
  ],
  [
    "the last summary wins (a nested deno test printed its own first)",
    "FAILED | 0 passed | 9 failed (1ms)\nmore output\nok | 20 passed | 0 failed (9s)\n" +
    "hint: not a summary: ok | 5 passed\n",
    "20 passed, 0 failed",
  ],
];

for (const [name, log, expected] of SAMPLES) {
  Deno.test(`.ci/run --summary: ${name}`, async () => {
    const r = await summarize(log);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${expected}\n`);
  });
}

Deno.test(".ci/run --summary: no summary line is an error", async () => {
  for (const log of ["", "error: Module not found\n", "compiling...\nok | nothing\n"]) {
    const r = await summarize(log);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /no Deno test summary line/);
  }
});

Deno.test(".ci/run --summary: a real deno test log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-ci-run-test-" });
  try {
    await Deno.writeTextFile(
      `${dir}/fixture_test.ts`,
      `Deno.test("a", () => {});
Deno.test("b", async (t) => { await t.step("s1", () => {}); await t.step("s2", () => {}); });
Deno.test({ name: "c", ignore: true, fn() {} });
Deno.test("d", () => { throw new Error("no"); });
`,
    );
    // Colours on (no NO_COLOR), to exercise the ANSI stripping on genuine output.
    const t = await run(
      [Deno.execPath(), "test", "--no-config", "--no-lock", `${dir}/fixture_test.ts`],
      { env: { NO_COLOR: "", FORCE_COLOR: "1" } },
    );
    assert.notEqual(t.code, 0);
    const r = await summarize(t.stdout + t.stderr);
    assert.equal(r.stdout, "2 passed, 1 failed, 1 skipped\n", t.stdout + t.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `.ci/run --test-command` from a copy of the script in a fake repo with this README. */
async function testCommandFor(readme: string | null): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-ci-run-test-" });
  try {
    await Deno.mkdir(`${dir}/.ci`);
    await Deno.copyFile(CI_RUN, `${dir}/.ci/run`);
    if (readme !== null) await Deno.writeTextFile(`${dir}/README.md`, readme);
    const r = await run(["bash", `${dir}/.ci/run`, "--test-command"]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(".ci/run --test-command: read from README.md, else the default", async () => {
  const fallback = "npx --yes deno@2.9.6 task test";
  assert.equal(await testCommandFor(null), fallback);
  assert.equal(await testCommandFor("# x\n\nNo commands here.\n"), fallback);
  // Outside a sh block it does not count.
  assert.equal(await testCommandFor("npx --yes deno@9.9.9 task test\n"), fallback);
  assert.equal(
    await testCommandFor(
      "# unistore\n\n```sh\nnpx --yes deno@2.9.7 task check\n" +
        "$ npx --yes deno@2.9.7 task test   # all tests\n```\n",
    ),
    "npx --yes deno@2.9.7 task test",
  );
  assert.equal(
    await testCommandFor("```bash\nnpx --yes deno@2.9.6 task test --filter reflink\n```\n"),
    "npx --yes deno@2.9.6 task test --filter reflink",
  );
});
