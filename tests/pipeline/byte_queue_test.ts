import assert from "node:assert/strict";
import { ByteQueue } from "../../lib/pipeline/byte_queue.ts";

Deno.test("ByteQueue gives runs back in order across compaction and growth", () => {
  const q = new ByteQueue();
  const expected: Uint8Array[] = [];
  let seed = 1;
  const run = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff;
    return b;
  };
  // Sizes cross the 64 KiB start capacity both by compaction (taken bytes at the front) and by
  // growth (more queued at once than fits).
  for (let round = 0; round < 200; round++) {
    for (const n of [512, 1, 30_000, 0, 7]) {
      const b = run(n);
      q.push(b);
      expected.push(b.slice());
      b.fill(0); // the queue copied it: the caller may reuse its buffer
    }
    while (expected.length > (round % 7) * 3) {
      const want = expected.shift()!;
      assert.deepEqual(q.take(want.length), want);
    }
  }
  while (expected.length > 0) q.take(expected.shift()!.length);
  assert.equal(q.length, 0);
});

Deno.test("ByteQueue refuses to take more than is queued", () => {
  const q = new ByteQueue();
  q.push(new Uint8Array(3));
  assert.throws(() => q.take(4), /take\(4\) with only 3 bytes queued/);
});
