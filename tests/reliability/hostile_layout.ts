/**
 * Hostile OCI layouts for `unistore image import oci:…`: one image per case, a harmless base
 * layer plus what the case is about, written with the fixtures' byte-exact TarBuilder and
 * buildOciImage (tests/fixtures/oci), or a correct layout damaged afterwards.
 *
 * Paths that try to leave the host aim at `outside`, a directory next to the host root: climbing
 * `..` far enough from any store directory, or naming it absolutely. Whatever joined such a
 * name blindly would write there; the test checks it stays as it was.
 *
 * @module
 */

import { buildOciImage, sha256, TarBuilder } from "../fixtures/oci/mod.ts";

/** Which outcome a target must have: refuse (exit 1), or either as long as nothing escapes. */
export type Expect = "refuse" | "any";

/** One hostile image. */
export interface HostileCase {
  name: string;
  /** Writes the layout into `dir` (tag `hostile`); `outside` is the directory to protect. */
  build(dir: string, outside: string): Promise<void>;
  /** composefs is the hub: a refusal there is a refusal of every target. */
  composefs: Expect;
  cstorage: Expect;
  ostree: Expect;
  /** What a refusal must name (the entry, the file, the digest). */
  names: RegExp;
}

const TAG = "hostile";

/** The tag every case's image carries in its layout. */
export const HOSTILE_TAG = TAG;

function baseLayer(): Uint8Array {
  return new TarBuilder("pax")
    .dir("usr")
    .dir("usr/bin")
    .file("usr/bin/hello", "#!/bin/sh\necho hello\n".repeat(8), { mode: 0o755 })
    .build();
}

/** `../` enough times to climb out of any store directory, then `outside` without its `/`. */
function climb(outside: string): string {
  return "../".repeat(32) + outside.replace(/^\/+/, "");
}

async function image(dir: string, hostile: Uint8Array, compression: "gzip" | "none" = "gzip") {
  await buildOciImage(dir, {
    tag: TAG,
    layers: [{ tar: baseLayer(), compression: "gzip" }, { tar: hostile, compression }],
  });
}

async function readJson(path: string) {
  return JSON.parse(await Deno.readTextFile(path));
}

function blobPath(dir: string, digest: string): string {
  return `${dir}/blobs/${digest.replace(":", "/")}`;
}

/** The manifest of the layout's only image. */
async function manifestOf(dir: string) {
  const index = await readJson(`${dir}/index.json`);
  const digest = index.manifests[0].digest as string;
  return { index, digest, manifest: await readJson(blobPath(dir, digest)) };
}

/** Stores `bytes` as a blob and points index.json at it as the image's manifest. */
async function replaceManifest(dir: string, bytes: Uint8Array) {
  const { index } = await manifestOf(dir);
  const digest = sha256(bytes);
  await Deno.writeFile(blobPath(dir, digest), bytes);
  index.manifests[0].digest = digest;
  index.manifests[0].size = bytes.length;
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
}

function flipByte(bytes: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[at] ^= 0xff;
  return out;
}

/** A tar of one file whose header field `field` (offset, width) holds `value`, checksum fixed. */
function tarWithHeaderField(offset: number, width: number, value: string): Uint8Array {
  const tar = new TarBuilder("ustar").file("usr/victim", "x".repeat(100)).build();
  tar.fill(0, offset, offset + width);
  tar.set(new TextEncoder().encode(value).subarray(0, width), offset);
  tar.fill(0x20, 148, 156);
  const sum = tar.subarray(0, 512).reduce((s, x) => s + x, 0);
  tar.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0")), 148);
  tar[154] = 0;
  tar[155] = 0x20;
  return tar;
}

/** Every target refuses the image. */
const REFUSED_BY_ALL = { composefs: "refuse", cstorage: "refuse", ostree: "refuse" } as const;
/** Every target may take the image or refuse it, as long as nothing escapes. */
const SAFE_FOR_ALL = { composefs: "any", cstorage: "any", ostree: "any" } as const;

/**
 * The stores that extract a tree (containers-storage, ostree) refuse the image; composefs, which
 * keeps names as data and extracts nothing, may take it.
 */
const EXTRACTORS_REFUSE = { composefs: "any", cstorage: "refuse", ostree: "refuse" } as const;

/** Every case, in the order the test runs them. */
export const HOSTILE_CASES: HostileCase[] = [
  // --- names that try to leave the layer -------------------------------------------------------
  {
    name: "'..' climbing out of the layer",
    build: (dir, out) =>
      image(dir, new TarBuilder().file(`${climb(out)}/pwned-dotdot`, "pwned\n".repeat(20)).build()),
    ...EXTRACTORS_REFUSE,
    names: /pwned-dotdot|\.\./,
  },
  {
    name: "'..' after a real directory",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").file(`usr/${climb(out)}/pwned-inner`, "pwned\n".repeat(20))
          .build(),
      ),
    ...EXTRACTORS_REFUSE,
    names: /pwned-inner|\.\./,
  },
  {
    name: "absolute path",
    build: (dir, out) =>
      image(dir, new TarBuilder().file(`${out}/pwned-abs`, "pwned\n".repeat(20)).build()),
    ...SAFE_FOR_ALL,
    names: /pwned-abs/,
  },
  {
    name: "file written through a symlink that climbs out",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").symlink("usr/evil", climb(out))
          .file("usr/evil/pwned-via-symlink", "pwned\n".repeat(20)).build(),
      ),
    ...EXTRACTORS_REFUSE,
    names: /usr\/evil/,
  },
  {
    name: "file written through an absolute symlink",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").symlink("usr/abs", out)
          .file("usr/abs/pwned-via-abs-symlink", "pwned\n".repeat(20)).build(),
      ),
    ...EXTRACTORS_REFUSE,
    names: /usr\/abs/,
  },
  {
    name: "symlinks pointing outside (valid content, never followed)",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").symlink("usr/link-abs", `${out}/secret`)
          .symlink("usr/link-rel", `${climb(out)}/secret`).build(),
      ),
    ...SAFE_FOR_ALL,
    names: /usr\/link/,
  },
  {
    name: "hardlink to a file outside, by '..'",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").hardlink("usr/hl-dotdot", `${climb(out)}/secret`).build(),
      ),
    ...EXTRACTORS_REFUSE,
    names: /hl-dotdot|secret/,
  },
  {
    name: "hardlink to a file outside, absolute",
    build: (dir, out) =>
      image(dir, new TarBuilder().dir("usr").hardlink("usr/hl-abs", `${out}/secret`).build()),
    ...EXTRACTORS_REFUSE,
    names: /hl-abs|secret/,
  },
  {
    name: "hardlink through a symlink that points outside",
    build: (dir, out) =>
      image(
        dir,
        new TarBuilder().dir("usr").symlink("usr/evil2", out)
          .hardlink("usr/hl-via-symlink", "usr/evil2/secret").build(),
      ),
    ...EXTRACTORS_REFUSE,
    names: /hl-via-symlink|evil2/,
  },
  // --- entries a layer may carry, but that must stay inside the store -------------------------
  {
    name: "device nodes and a fifo",
    build: (dir) =>
      image(
        dir,
        new TarBuilder().dir("usr").add({
          path: "usr/null",
          type: "char",
          devMajor: 1,
          devMinor: 3,
        })
          .add({ path: "usr/loop0", type: "block", devMajor: 7, devMinor: 0 })
          .add({ path: "usr/fifo", type: "fifo" }).build(),
      ),
    ...SAFE_FOR_ALL,
    names: /usr\/(null|loop0|fifo)/,
  },
  {
    name: "a 300-byte name component (over NAME_MAX)",
    build: (dir) =>
      image(dir, new TarBuilder().dir("usr").file(`usr/${"n".repeat(300)}`, "long\n").build()),
    ...REFUSED_BY_ALL,
    names: /300 bytes.*NAME_MAX/,
  },
  {
    name: "a 6000-byte path (over PATH_MAX)",
    build: (dir) => {
      const t = new TarBuilder().dir("usr");
      let p = "usr";
      for (let i = 0; i < 60; i++) t.dir(p = `${p}/${"d".repeat(99)}`);
      return image(dir, t.file(`${p}/deep`, "deep\n").build());
    },
    ...SAFE_FOR_ALL,
    names: /dddddddd|deep/,
  },
  // --- broken tar headers ----------------------------------------------------------------------
  {
    name: "GNU long name of 70000 bytes",
    build: (dir) =>
      image(
        dir,
        new TarBuilder("gnu").file(`usr/${"l".repeat(70000)}`, "long\n", { longNames: "gnu" })
          .build(),
      ),
    ...REFUSED_BY_ALL,
    names: /70000 bytes.*NAME_MAX/,
  },
  {
    name: "pax record whose length runs past its header",
    build: (dir) =>
      image(
        dir,
        new TarBuilder().add({ path: "PaxHeaders/x", typeflag: "x", content: "999999 path=x\n" })
          .file("usr/x", "x").build(),
      ),
    ...REFUSED_BY_ALL,
    names: /pax/,
  },
  {
    name: "header checksum wrong",
    build: (dir) => {
      const tar = new TarBuilder().dir("usr").file("usr/victim", "x".repeat(100)).build();
      return image(dir, flipByte(tar, 600), "none"); // a byte of the second header's name
    },
    ...REFUSED_BY_ALL,
    names: /checksum/,
  },
  {
    name: "size field not octal",
    build: (dir) => image(dir, tarWithHeaderField(124, 12, "99zz99zz99z"), "none"),
    ...REFUSED_BY_ALL,
    names: /size/,
  },
  {
    name: "uncompressed tar cut in the middle of a file",
    build: (dir) => {
      const tar = new TarBuilder().dir("usr").file("usr/big", "b".repeat(5000)).build();
      return image(dir, tar.subarray(0, 1024 + 2000), "none");
    },
    ...REFUSED_BY_ALL,
    names: /end|truncated|short|unexpected/i,
  },
  // --- digests ---------------------------------------------------------------------------------
  {
    name: "layer blob altered, digest kept",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").file("usr/a", "a".repeat(500)).build(), "none");
      const { manifest } = await manifestOf(dir);
      const path = blobPath(dir, manifest.layers[1].digest);
      await Deno.writeFile(path, flipByte(await Deno.readFile(path), 1100));
    },
    ...REFUSED_BY_ALL,
    names: /sha256[:/][0-9a-f]{12}/,
  },
  {
    name: "config rootfs.diff_ids wrong",
    build: (dir) =>
      buildOciImage(dir, {
        tag: TAG,
        layers: [{ tar: baseLayer(), compression: "gzip" }],
        mutateConfig: (c) => {
          (c.rootfs as { diff_ids: string[] }).diff_ids = [`sha256:${"0".repeat(64)}`];
        },
      }).then(() => {}),
    ...REFUSED_BY_ALL,
    names: /diff_id|0000000000/,
  },
  {
    name: "config blob altered, digest kept",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      const { manifest } = await manifestOf(dir);
      const path = blobPath(dir, manifest.config.digest);
      const text = await Deno.readTextFile(path);
      await Deno.writeTextFile(path, text.replace('"os":"linux"', '"os":"Linux"'));
    },
    ...REFUSED_BY_ALL,
    names: /sha256[:/][0-9a-f]{12}/,
  },
  {
    name: "index.json names a manifest by the wrong digest",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      const { index, digest } = await manifestOf(dir);
      const wrong = `sha256:${"1".repeat(64)}`;
      await Deno.copyFile(blobPath(dir, digest), blobPath(dir, wrong));
      index.manifests[0].digest = wrong;
      await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
    },
    ...REFUSED_BY_ALL,
    names: /1111111111/,
  },
  {
    name: "a layer blob missing",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      const { manifest } = await manifestOf(dir);
      await Deno.remove(blobPath(dir, manifest.layers[1].digest));
    },
    ...REFUSED_BY_ALL,
    names: /missing|sha256[:/][0-9a-f]{12}/,
  },
  // --- truncated and broken files --------------------------------------------------------------
  {
    name: "gzip layer blob truncated (digest recomputed)",
    build: async (dir) => {
      const tar = new TarBuilder().dir("usr").file(
        "usr/r",
        crypto.getRandomValues(
          new Uint8Array(20000),
        ),
      ).build();
      await image(dir, tar);
      const { manifest } = await manifestOf(dir);
      const old = blobPath(dir, manifest.layers[1].digest);
      const cut = (await Deno.readFile(old)).subarray(0, 5000);
      manifest.layers[1].digest = sha256(cut);
      manifest.layers[1].size = cut.length;
      await Deno.writeFile(blobPath(dir, manifest.layers[1].digest), cut);
      await replaceManifest(dir, new TextEncoder().encode(JSON.stringify(manifest)));
    },
    ...REFUSED_BY_ALL,
    names: /gzip|end|truncated|unexpected/i,
  },
  {
    name: "index.json truncated",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      const text = await Deno.readTextFile(`${dir}/index.json`);
      await Deno.writeTextFile(`${dir}/index.json`, text.slice(0, text.length / 2));
    },
    ...REFUSED_BY_ALL,
    names: /index\.json/,
  },
  {
    name: "manifest not JSON (digest recomputed)",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      await replaceManifest(dir, new TextEncoder().encode('{"schemaVersion": 2, "layers": ['));
    },
    ...REFUSED_BY_ALL,
    names: /manifest|sha256[:/][0-9a-f]{12}/,
  },
  {
    name: "manifest layers of the wrong type (digest recomputed)",
    build: async (dir) => {
      await image(dir, new TarBuilder().dir("usr").build());
      const { manifest } = await manifestOf(dir);
      manifest.layers = [42, { digest: 7 }];
      await replaceManifest(dir, new TextEncoder().encode(JSON.stringify(manifest)));
    },
    ...REFUSED_BY_ALL,
    names: /manifest|descriptor|sha256[:/][0-9a-f]{12}/,
  },
];
