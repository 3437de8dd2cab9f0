import assert from "node:assert/strict";
import { CommandError, formatCommand, run, runOk } from "./run.ts";

Deno.test("run captures exit code, stdout and stderr", async () => {
  const r = await run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.deepEqual(r, { code: 3, signal: null, success: false, stdout: "out\n", stderr: "err\n" });
});

Deno.test("run passes cwd and env, and stdin is /dev/null by default", async () => {
  const r = await runOk(["sh", "-c", 'pwd; echo "$UNISTORE_X"; cat'], {
    cwd: "/",
    env: { UNISTORE_X: "a b" },
  });
  assert.equal(r.stdout, "/\na b\n");
});

Deno.test("run feeds stdin, also more than a pipe buffer without deadlock", async () => {
  const big = new Uint8Array(4 * 1024 * 1024).map((_, i) => i % 251);
  const r = await runOk(["sh", "-c", "cat | wc -c"], { stdin: big });
  assert.equal(r.stdout.trim(), String(big.length));
  const echo = await runOk(["cat"], { stdin: new TextEncoder().encode("héllo") });
  assert.equal(echo.stdout, "héllo");
});

Deno.test("run survives a child that ignores its stdin", async () => {
  const r = await run(["true"], { stdin: new Uint8Array(1024 * 1024) });
  assert.equal(r.code, 0);
});

Deno.test("run reports a signal", async () => {
  const r = await run(["sh", "-c", "kill -TERM $$"]);
  assert.equal(r.signal, "SIGTERM");
  assert.equal(r.success, false);
});

Deno.test("run of a missing program names the command", async () => {
  await assert.rejects(
    run(["unistore-no-such-program", "x"]),
    /unistore-no-such-program x: command not found/,
  );
});

Deno.test("runOk throws with command line, exit code and stderr", async () => {
  const err = await runOk(["sh", "-c", "echo bad thing >&2; exit 7", "arg 1"]).then(
    () => assert.fail("no error"),
    (e) => e,
  );
  assert.ok(err instanceof CommandError);
  assert.match(err.message, /exit code 7/);
  assert.match(err.message, /sh -c 'echo bad thing >&2; exit 7' 'arg 1'/);
  assert.match(err.message, /bad thing/);
  assert.equal(err.result.code, 7);
});

Deno.test("formatCommand quotes only where needed", () => {
  assert.equal(
    formatCommand(["mkfs.xfs", "-m", "reflink=1", "/a/b.img"]),
    "mkfs.xfs -m reflink=1 /a/b.img",
  );
  assert.equal(formatCommand(["echo", "it's", ""]), `echo 'it'\\''s' ''`);
});
