/**
 * `ostreeChecksumOfPath` (`unistore internals ostree-checksum FILE`) on single files: a file's
 * own owner, mode and xattrs count, a symlink is not followed, and what ostree has no checksum
 * for is refused by name. The comparison with `ostree ls -C` over a whole tree is in
 * commit_writer_test.ts.
 */

import assert from "node:assert/strict";
import { contentChecksum, ostreeChecksumOfPath } from "../../../lib/stores/ostree/checksum.ts";
import { UnsupportedEntryError } from "../../../lib/stores/ostree/errors.ts";
import { toolTest } from "../../harness/tools.ts";
import { addFifo } from "../../fixtures/ostree/trees.ts";

toolTest(
  "ostreeChecksumOfPath: metadata of the file itself, symlinks unfollowed, special files refused",
  [],
  async () => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-ostree-sum-" });
    const cwd = Deno.cwd();
    try {
      await Deno.writeTextFile(`${dir}/hello.txt`, "hello\n");
      await Deno.chmod(`${dir}/hello.txt`, 0o644);
      await Deno.chown(`${dir}/hello.txt`, 0, 0);
      await Deno.symlink("hello.txt", `${dir}/link`);
      assert.equal(
        ostreeChecksumOfPath(`${dir}/hello.txt`),
        "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b",
      );
      assert.equal(
        ostreeChecksumOfPath(`${dir}/link`),
        "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35",
      );
      Deno.chdir(dir);
      assert.equal(ostreeChecksumOfPath("hello.txt"), ostreeChecksumOfPath(`${dir}/hello.txt`));

      // Owner and mode are part of it.
      await Deno.chown(`${dir}/hello.txt`, 1000, 1001);
      await Deno.chmod(`${dir}/hello.txt`, 0o4755);
      assert.equal(
        ostreeChecksumOfPath(`${dir}/hello.txt`),
        contentChecksum(
          { uid: 1000, gid: 1001, mode: 0o104755 },
          new TextEncoder().encode("hello\n"),
        ),
      );

      await Deno.mkdir(`${dir}/d`);
      assert.throws(() => ostreeChecksumOfPath(`${dir}/d`), UnsupportedEntryError);
      assert.throws(
        () => ostreeChecksumOfPath(`${dir}/d/`),
        /d\/: not a regular file or symlink \(mode 040755\)/,
      );
      assert.throws(() => ostreeChecksumOfPath("/"), /is a directory/);
      addFifo(dir, "fifo");
      assert.throws(
        () => ostreeChecksumOfPath(`${dir}/fifo`),
        (e) => e instanceof UnsupportedEntryError && e.path === `${dir}/fifo`,
      );
    } finally {
      Deno.chdir(cwd);
      await Deno.remove(dir, { recursive: true });
    }
  },
  { root: true },
);
