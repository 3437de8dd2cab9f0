// The fault-point hook itself (lib/fault/fault_point.ts), in child processes since a hit kills the
// process: the trace lists every point reached as NAME#N in order; UNISTORE_FAULT_AT=NAME#N dies
// of SIGKILL exactly there, with no finally block run and the trace line of the hit written; the
// environment is read once; without the variables nothing is written at all.

import assert from "node:assert/strict";
import {
  FAULT_AT_ENV,
  FAULT_TRACE_ENV,
  parseFaultHit,
  parseFaultTrace,
} from "../../lib/fault/fault_point.ts";
import { run } from "../harness/run.ts";

const FAULT_MODULE = new URL("../../lib/fault/fault_point.ts", import.meta.url).href;

/** A program that passes a, b, a, then (after changing the env) c, printing as it goes. */
const PROGRAM = `
import { faultPoint } from ${JSON.stringify(FAULT_MODULE)};
try {
  faultPoint("a"); console.log("after a#1");
  faultPoint("b"); console.log("after b#1");
  faultPoint("a"); console.log("after a#2");
  Deno.env.set(${JSON.stringify(FAULT_AT_ENV)}, "c");
  faultPoint("c"); console.log("after c#1");
} finally {
  console.log("finally ran");
}
`;

async function runProgram(env: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "unistore-fault-" });
  try {
    await Deno.writeTextFile(`${dir}/program.ts`, PROGRAM);
    const trace = `${dir}/trace`;
    const r = await run([Deno.execPath(), "run", "-A", "--quiet", `${dir}/program.ts`], {
      env: { ...env, ...(env[FAULT_TRACE_ENV] === "" ? {} : { [FAULT_TRACE_ENV]: trace }) },
    });
    const traced = await Deno.readTextFile(trace).catch(() => null);
    return { ...r, trace: traced, lines: r.stdout.trim().split("\n").filter((l) => l !== "") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("parseFaultHit reads NAME and NAME#N, and refuses anything else", () => {
  assert.deepEqual(parseFaultHit("ostree.ref-written"), { name: "ostree.ref-written", hit: 1 });
  assert.deepEqual(parseFaultHit("composefs.object-linked#12"), {
    name: "composefs.object-linked",
    hit: 12,
  });
  for (const bad of ["", "#2", "a#0", "a#-1", "a#x", "A.B", "a b", "a#1#2"]) {
    assert.throws(() => parseFaultHit(bad), new RegExp(`${FAULT_AT_ENV}: expected NAME`), bad);
  }
  assert.deepEqual(parseFaultTrace("a#1\nb#1\n\na#2\n"), [
    { name: "a", hit: 1 },
    { name: "b", hit: 1 },
    { name: "a", hit: 2 },
  ]);
});

Deno.test("the trace lists every point reached, in order, and nothing is killed", async () => {
  const r = await runProgram({});
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.trace, "a#1\nb#1\na#2\nc#1\n");
  assert.deepEqual(r.lines, ["after a#1", "after b#1", "after a#2", "after c#1", "finally ran"]);
});

Deno.test("UNISTORE_FAULT_AT=NAME#N kills at that hit: no finally, the hit traced", async () => {
  const r = await runProgram({ [FAULT_AT_ENV]: "a#2" });
  assert.equal(r.signal, "SIGKILL");
  assert.deepEqual(r.lines, ["after a#1", "after b#1"]);
  assert.equal(r.trace, "a#1\nb#1\na#2\n");
  const first = await runProgram({ [FAULT_AT_ENV]: "a" });
  assert.equal(first.signal, "SIGKILL");
  assert.deepEqual(first.lines, []);
});

Deno.test("the environment is read once: a point named later is not killed", async () => {
  // The program sets UNISTORE_FAULT_AT=c before reaching c; it was read at the first point.
  const r = await runProgram({ [FAULT_AT_ENV]: "b#2" });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.lines.at(-2), "after c#1");
});

Deno.test("without the variables nothing is traced or killed", async () => {
  const r = await runProgram({ [FAULT_TRACE_ENV]: "" });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.trace, null);
  assert.equal(r.lines.length, 5);
});

Deno.test("a malformed UNISTORE_FAULT_AT fails at the first point, naming the variable", async () => {
  const r = await runProgram({ [FAULT_AT_ENV]: "a#0" });
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null);
  assert.match(r.stderr, /UNISTORE_FAULT_AT: expected NAME or NAME#N .* found "a#0"/);
});
