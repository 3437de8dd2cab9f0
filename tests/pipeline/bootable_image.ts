/**
 * A minimal bootable OCI image in two layers, for the deploy test: kernel and initramfs in
 * `/usr/lib/modules/<kver>/` (large enough to be composefs objects, so they are reflinked),
 * `os-release`, an `/etc` that ostree moves to `/usr/etc`, content the bootable-image transform
 * drops (`/run`, an empty `/etc/hostname`), and a second layer that deletes and replaces files.
 *
 * @module
 */

import { buildOciImage, type BuiltImage, TarBuilder } from "../fixtures/oci/mod.ts";
import { pseudoRandomBytes } from "../harness/data.ts";

/** Kernel version of the image. */
export const KVER = "6.1.0-pipeline";
/** Kernel and initramfs bytes (over 64 bytes: stored as composefs objects). */
export const KERNEL = pseudoRandomBytes(96 * 1024, 101);
export const INITRAMFS = pseudoRandomBytes(40 * 1024, 102);
/** Content of `/tmp/firmware.bin` and its hardlink `/usr/lib/firmware.bin`. */
export const FIRMWARE = pseudoRandomBytes(8000, 106);

/** Writes the image into the layout at `dir`, tagged `tag`. */
export function buildBootableImage(dir: string, tag: string): Promise<BuiltImage> {
  const l0 = new TarBuilder("pax")
    .dir("usr")
    .dir("usr/bin")
    .dir("usr/lib")
    .dir(`usr/lib/modules/${KVER}`) // its parents are implicit
    .file(`usr/lib/modules/${KVER}/vmlinuz`, KERNEL, { mode: 0o755 })
    .file(`usr/lib/modules/${KVER}/initramfs.img`, INITRAMFS, { mode: 0o600 })
    .file(
      "usr/lib/os-release",
      'ID=exampleos\nNAME="Example OS"\nPRETTY_NAME="Example OS 1"\nVERSION_ID=1\n',
    )
    .symlink("bin", "usr/bin")
    .file("usr/bin/tool", pseudoRandomBytes(5000, 103), { mode: 0o755 })
    .file("usr/bin/old-tool", pseudoRandomBytes(3000, 104), { mode: 0o755 })
    .dir("etc")
    .symlink("etc/os-release", "../usr/lib/os-release")
    .file("etc/motd", "welcome to layer 0\n")
    .file("etc/hostname", "") // injected by container builds: dropped
    .dir("tmp", { mode: 0o1777 })
    // A hardlink whose first path the transform drops: the kept path must carry the content.
    .file("tmp/firmware.bin", FIRMWARE)
    .hardlink("usr/lib/firmware.bin", "tmp/firmware.bin")
    .dir("run")
    .file("run/leftover", "runtime state\n") // API filesystem content: dropped
    .dir("var")
    .dir("var/lib")
    .file("var/lib/data", "var content\n")
    .build();
  const l1 = new TarBuilder("pax")
    .whiteout("usr/bin", "old-tool")
    .file("usr/bin/new-tool", pseudoRandomBytes(3000, 105), { mode: 0o755 })
    .file("etc/motd", "welcome to layer 1\n")
    .build();
  return buildOciImage(dir, {
    tag,
    layers: [{ tar: l0, compression: "gzip" }, { tar: l1, compression: "zstd" }],
    labels: { "containers.bootc": "1" },
    annotations: { "org.opencontainers.image.created": "2024-03-01T12:00:00Z" },
  });
}
