/**
 * The composefs repository: meta.json as cfsctl writes it, insecure-mode detection on a kernel
 * without fs-verity, legacy repositories, the shared flock, objects named by every fs-verity
 * vector of the spec, staging outside objects/XX/, and composefs-rs' relative symlinks.
 */

import assert from "node:assert/strict";
import { close } from "../../../ffi/fs.ts";
import { FsVerityHasher } from "../../../lib/digest/fsverity.ts";
import { toHex } from "../../../lib/digest/hash.ts";
import {
  RepoMetadataError,
  RepoNotFoundError,
  RepoReadOnlyError,
  VerityUnsupportedError,
} from "../../../lib/stores/composefs/errors.ts";
import {
  checkRepoMetadata,
  newRepoMetadata,
  parseRepoMetadata,
  serializeRepoMetadata,
} from "../../../lib/stores/composefs/meta.ts";
import { objectIdFromTarget } from "../../../lib/stores/composefs/object_id.ts";
import { ComposefsRepo } from "../../../lib/stores/composefs/repository.ts";
import { FSVERITY_VECTORS } from "../../digest/spec_vectors.ts";
import { run } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { withRepo, withTempDir } from "./helpers.ts";
import { listTree } from "../../harness/tree_listing.ts";

// composefs-repo.md §4: a fresh `cfsctl init` at HEAD, byte for byte.
const SPEC_META_JSON = `{
  "version": 1,
  "algorithm": "fsverity-sha512-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`;

Deno.test("meta.json: written exactly as cfsctl init writes it; parse rules of §4", () => {
  assert.equal(
    new TextDecoder().decode(serializeRepoMetadata(newRepoMetadata("sha512"))),
    SPEC_META_JSON,
  );
  const parsed = parseRepoMetadata(new TextEncoder().encode(SPEC_META_JSON), "meta.json");
  assert.deepEqual(checkRepoMetadata(parsed, "meta.json"), {
    algorithm: "sha512",
    access: "read-write",
    unknownFeatures: [],
    erofsFormat: 1,
  });
  const meta = (o: object) =>
    parseRepoMetadata(new TextEncoder().encode(JSON.stringify(o)), "m.json");
  // Old files: no erofs_formats → V2 unless v1_erofs; unknown ro-compat → read-only.
  const old = checkRepoMetadata(meta({ version: 1, algorithm: "fsverity-sha256-12" }), "m.json");
  assert.equal(old.erofsFormat, 2);
  assert.equal(old.algorithm, "sha256");
  const ro = checkRepoMetadata(
    meta({
      version: 1,
      algorithm: "fsverity-sha256-12",
      features: { "read-only-compatible": ["future"] },
    }),
    "m.json",
  );
  assert.deepEqual([ro.access, ro.unknownFeatures], ["read-only", ["future"]]);
  assert.throws(
    () => checkRepoMetadata(meta({ version: 2, algorithm: "fsverity-sha256-12" }), "m.json"),
    /m\.json: unsupported repository format version 2/,
  );
  assert.throws(
    () => checkRepoMetadata(meta({ version: 1, algorithm: "fsverity-sha512-16" }), "m.json"),
    /unsupported fs-verity block size 2\^16/,
  );
  assert.throws(
    () =>
      checkRepoMetadata(
        meta({ version: 1, algorithm: "fsverity-sha512-12", features: { incompatible: ["x"] } }),
        "m.json",
      ),
    (e: unknown) =>
      e instanceof RepoMetadataError && /unknown incompatible features: x/.test(e.message),
  );
  assert.throws(
    () => parseRepoMetadata(new TextEncoder().encode("{"), "m.json"),
    /m\.json: expected JSON/,
  );
});

Deno.test("create: repo dir 0700, meta.json, insecure mode detected on a kernel without fs-verity", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/composefs`;
    const repo = await ComposefsRepo.create(path);
    try {
      assert.equal(repo.algorithm, "sha512");
      // This kernel has no CONFIG_FS_VERITY: "auto" falls back to insecure, as composefs-rs
      // open() would detect from meta.json.
      assert.equal(repo.verity, "insecure");
      assert.equal((await Deno.stat(path)).mode! & 0o7777, 0o700);
      assert.equal(await Deno.readTextFile(`${path}/meta.json`), SPEC_META_JSON);
      assert.equal((await Deno.stat(`${path}/meta.json`)).mode! & 0o777, 0o644);
    } finally {
      repo.close();
    }
    const again = await ComposefsRepo.open(path);
    assert.equal(again.verity, "insecure");
    assert.equal(again.legacy, false);
    again.close();
    // create() on an existing repository of the same algorithm opens it; another one is refused.
    (await ComposefsRepo.create(path, { algorithm: "sha512" })).close();
    await assert.rejects(
      ComposefsRepo.create(path, { algorithm: "sha256" }),
      /exists with algorithm sha512/,
    );
    await assert.rejects(
      ComposefsRepo.create(`${dir}/strict`, { verity: "secure" }),
      (e: unknown) =>
        e instanceof VerityUnsupportedError && /secure mode requested/.test(e.message),
    );
    assert.equal(
      (await listTree(`${dir}/strict`)).length,
      0,
      "a refused secure create leaves no meta.json",
    );
    await assert.rejects(ComposefsRepo.open(`${dir}/nothing`), RepoNotFoundError);
  });
});

Deno.test("objects: named by every fs-verity vector of the spec (sha256 and sha512), whatever the chunking", async () => {
  for (const alg of ["sha256", "sha512"] as const) {
    await withRepo(alg, async (repo, dir) => {
      for (const v of FSVERITY_VECTORS) {
        const bytes = v.bytes();
        const id = repo.ensureObject(bytes);
        assert.equal(id, v[alg], `${alg} ${v.name}`);
        const onDisk = await Deno.readFile(`${dir}/repo/objects/${id.slice(0, 2)}/${id.slice(2)}`);
        assert.equal(onDisk.length, bytes.length);
        // Streaming writer in odd pieces gives the same name and finds it present.
        const w = repo.createObjectWriter();
        for (let i = 0; i < bytes.length; i += 4095) w.write(bytes.subarray(i, i + 4095));
        const r = w.finish();
        assert.deepEqual([r.id, r.outcome], [v[alg], "already-present"]);
      }
      const names = await listTree(`${dir}/repo/objects`);
      const pattern = alg === "sha256"
        ? /^[0-9a-f]{2}(\/[0-9a-f]{62})?$/
        : /^[0-9a-f]{2}(\/[0-9a-f]{126})?$/;
      for (const n of names) assert.match(n, pattern, "nothing but objects under objects/");
      assert.equal(names.filter((n) => n.includes("/")).length, FSVERITY_VECTORS.length);
      const st = await Deno.stat(`${dir}/repo/objects/${names[1]}`);
      assert.equal(st.mode! & 0o777, 0o644);
    });
  }
});

Deno.test("probeDirfd: the repository's own directory until objects/ exists, which it never creates", async () => {
  await withRepo("sha512", async (repo, dir) => {
    assert.equal(repo.probeDirfd(), repo.dirfd);
    await assert.rejects(Deno.stat(`${dir}/repo/objects`), Deno.errors.NotFound);
    repo.ensureObject(new TextEncoder().encode("an object, so that objects/ exists now"));
    assert.equal(repo.probeDirfd(), repo.objectsDirfd());
    assert.notEqual(repo.probeDirfd(), repo.dirfd);
  });
});

Deno.test("objects: an id and content that disagree are caught by the writer's own hashing", async () => {
  await withRepo("sha512", (repo) => {
    const a = repo.ensureObject(new TextEncoder().encode("hello world"));
    assert.equal(a, FSVERITY_VECTORS[1].sha512);
    assert.equal(repo.hasObject(a), true);
    const fd = repo.openObject(a);
    try {
      assert.equal(repo.computeDigest(fd), a);
    } finally {
      close(fd);
    }
    const h = new FsVerityHasher("sha512").update(new TextEncoder().encode("hello world!"))
      .digest();
    assert.equal(repo.hasObject(toHex(h)), false);
    return Promise.resolve();
  });
});

Deno.test("legacy repository (no meta.json): algorithm inferred from object names; upgrade writes meta.json", async () => {
  await withTempDir(async (dir) => {
    for (const alg of ["sha256", "sha512"] as const) {
      const path = `${dir}/${alg}`;
      const repo = await ComposefsRepo.create(path, { algorithm: alg });
      const id = repo.ensureObject(new TextEncoder().encode("legacy content"));
      repo.close();
      await Deno.remove(`${path}/meta.json`);
      await assert.rejects(ComposefsRepo.create(path, { algorithm: alg }), /legacy repository/);
      const legacy = await ComposefsRepo.open(path);
      assert.equal(legacy.legacy, true);
      assert.equal(legacy.algorithm, alg);
      assert.equal(legacy.verity, "insecure");
      assert.equal(legacy.hasObject(id), true);
      legacy.close();
      assert.equal(
        await Deno.stat(`${path}/meta.json`).catch(() => null),
        null,
        "open without upgrade writes nothing",
      );
      const upgraded = await ComposefsRepo.open(path, { upgrade: true });
      assert.equal(upgraded.legacy, false);
      upgraded.close();
      const meta = parseRepoMetadata(await Deno.readFile(`${path}/meta.json`), "meta.json");
      assert.equal(meta.algorithm, `fsverity-${alg}-12`);
      assert.deepEqual(meta.erofs_formats, { default: 2 }, "legacy repos hold V2 images");
    }
    await Deno.mkdir(`${dir}/empty/objects`, { recursive: true });
    await assert.rejects(
      ComposefsRepo.open(`${dir}/empty`),
      /no object to infer the algorithm from/,
    );
    const hinted = await ComposefsRepo.open(`${dir}/empty`, { legacyAlgorithm: "sha256" });
    assert.equal(hinted.algorithm, "sha256");
    hinted.close();
  });
});

Deno.test("read-only: opened read-only or with unknown read-only-compatible features, writes are refused", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/r`;
    (await ComposefsRepo.create(path)).close();
    const ro = await ComposefsRepo.open(path, { readOnly: true });
    assert.throws(() => ro.ensureObject(new Uint8Array(3)), RepoReadOnlyError);
    ro.close();
    const meta = JSON.parse(await Deno.readTextFile(`${path}/meta.json`));
    meta.features["read-only-compatible"].push("from-the-future");
    await Deno.writeTextFile(`${path}/meta.json`, JSON.stringify(meta));
    const repo = await ComposefsRepo.open(path);
    assert.equal(repo.access, "read-only");
    assert.throws(
      () => repo.ensureObject(new Uint8Array(3)),
      /unknown read-only-compatible features/,
    );
    repo.close();
  });
});

toolTest("lock: the open repository holds a shared flock that excludes GC's exclusive lock", [
  { bin: "flock", pkg: "util-linux" },
], async (bins) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/locked`;
    const repo = await ComposefsRepo.create(path);
    try {
      const ino = (await Deno.stat(path)).ino!;
      const locks = await Deno.readTextFile("/proc/locks");
      assert.match(locks, new RegExp(`FLOCK\\s+ADVISORY\\s+READ\\s+${Deno.pid}\\s+\\S+:${ino} `));
      // composefs-rs gc() takes LOCK_EX on the directory: it must not get it now…
      const ex = await run([bins.flock, "--exclusive", "--nonblock", path, "true"]);
      assert.equal(ex.code, 1, "an exclusive flock must fail while the repository is open");
      // …while other readers/writers (LOCK_SH) may share it.
      const sh = await run([bins.flock, "--shared", "--nonblock", path, "true"]);
      assert.equal(sh.code, 0, sh.stderr);
    } finally {
      repo.close();
    }
    const after = await run([bins.flock, "--exclusive", "--nonblock", path, "true"]);
    assert.equal(after.code, 0, "close() releases the lock");
  });
});

Deno.test("symlinks: relative targets exactly as composefs-rs writes them, atomic replace", async () => {
  await withRepo("sha256", async (repo, dir) => {
    const id = repo.ensureObject(new TextEncoder().encode("stream body"));
    repo.registerStream("oci-layer-sha256:" + "ab".repeat(32), id, "foo");
    repo.nameStream("oci-layer-sha256:" + "ab".repeat(32), "a/b/c");
    const base = `${dir}/repo`;
    const layer = `oci-layer-sha256:${"ab".repeat(32)}`;
    assert.equal(
      await Deno.readLink(`${base}/streams/${layer}`),
      `../objects/${id.slice(0, 2)}/${id.slice(2)}`,
    );
    assert.equal(await Deno.readLink(`${base}/streams/refs/foo`), `../${layer}`);
    assert.equal(await Deno.readLink(`${base}/streams/refs/a/b/c`), `../../../${layer}`);
    assert.equal(repo.streamObjectId(layer), id);
    assert.equal(objectIdFromTarget(`../objects/${id.slice(0, 2)}/${id.slice(2)}`, "sha256"), id);
    assert.equal(objectIdFromTarget(`../objects/${id.slice(0, 2)}${id.slice(2)}x`, "sha256"), null);
    // Re-pointing a ref replaces it atomically; no .symlink-* temporary is left behind.
    const id2 = repo.ensureObject(new TextEncoder().encode("another stream"));
    repo.registerStream("other", id2);
    repo.nameStream("other", "foo");
    assert.equal(await Deno.readLink(`${base}/streams/refs/foo`), "../other");
    const top = [...Deno.readDirSync(base)].map((e) => e.name).sort();
    assert.deepEqual(top, ["meta.json", "objects", "streams"]);
    assert.deepEqual(repo.listRefs("streams").sort(), [["a/b/c", `../../../${layer}`], [
      "foo",
      "../other",
    ]]);
    assert.throws(() => repo.nameStream("other", "../escape"), /invalid name component/);
    assert.throws(() => repo.registerStream("x/y", id), /invalid name component/);
  });
});

Deno.test("a stream registered in the background is linked once its syncfs returns", async () => {
  await withRepo("sha256", async (repo, dir) => {
    const id = repo.ensureObject(new TextEncoder().encode("layer stream"));
    const registered = repo.registerStreamInBackground("bg", id, "bg-ref");
    await registered;
    assert.equal(repo.streamObjectId("bg"), id);
    assert.equal(await Deno.readLink(`${dir}/repo/streams/refs/bg-ref`), "../bg");
    // The checks of registerStream reject the promise; nothing is linked.
    const missing = "cd".repeat(32);
    await assert.rejects(
      () => repo.registerStreamInBackground("gone", missing),
      /cannot register stream gone: object is missing/,
    );
    await assert.rejects(
      () => repo.registerStreamInBackground("x/y", id),
      /invalid name component/,
    );
    assert.equal(repo.streamObjectId("gone"), null);
  });
});

Deno.test("an object emptied by a power cut is replaced when its bytes are written again", async () => {
  await withRepo("sha256", async (repo, dir) => {
    const bytes = new TextEncoder().encode("object bytes that a crash lost\n".repeat(8));
    const id = repo.ensureObject(bytes);
    const path = `${dir}/repo/${repo.objectPath(id)}`;
    // What a link that reached the disk before its data leaves (ext4 delayed allocation).
    await Deno.truncate(path, 0);
    assert.equal(repo.ensureObject(bytes), id);
    assert.deepEqual(await Deno.readFile(path), bytes);
    // An object of the right size is trusted (left as it is): re-reading every existing object
    // costs too much.
    const inode = (await Deno.stat(path)).ino;
    assert.equal(repo.ensureObject(bytes), id);
    assert.equal((await Deno.stat(path)).ino, inode, "an object of the right size is not replaced");
    const names = [...Deno.readDirSync(`${dir}/repo/objects/${id.slice(0, 2)}`)].map((e) => e.name);
    assert.deepEqual(names, [id.slice(2)], "no temporary name left behind");
  });
});
