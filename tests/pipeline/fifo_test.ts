// Fifo: order, positions and emptiness through the compactions a long import goes through.

import assert from "node:assert/strict";
import { Fifo } from "../../lib/pipeline/fifo.ts";

Deno.test("Fifo keeps order and positions across compactions", () => {
  const q = new Fifo<number>();
  assert.equal(q.shift(), undefined, "empty");
  let next = 0;
  let expected = 0;
  // Push three, shift two, many times: the taken slots pass the compaction threshold often.
  for (let round = 0; round < 5000; round++) {
    for (let i = 0; i < 3; i++) q.push(next++);
    assert.equal(q.at(0), expected, `oldest at round ${round}`);
    assert.equal(q.at(q.length - 1), next - 1, `newest at round ${round}`);
    for (let i = 0; i < 2; i++) assert.equal(q.shift(), expected++);
  }
  assert.equal(q.length, next - expected);
  assert.equal(q.at(q.length), undefined, "past the end");
  assert.equal(q.at(-1), undefined, "before the start");
  const rest = q.takeAll();
  assert.deepEqual(rest, Array.from({ length: next - expected }, (_, i) => expected + i));
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  q.push(7);
  assert.equal(q.shift(), 7, "usable after takeAll");
});
