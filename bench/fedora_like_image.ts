/**
 * A bootc image shaped like Fedora's, generated deterministically: the same `scale` gives the
 * same paths, sizes and bytes on every machine, so benchmark runs compare.
 *
 * Shape (scale 1), modelled on a Fedora bootc base image:
 * - about 30,000 files (40,000 tar entries with directories and links) in four layers, ~1.1 GiB
 *   of file content;
 * - file sizes drawn per kind of file from a log-normal distribution by deterministic quantiles
 *   (no sampling noise): mostly small files (median ~4 KiB: man pages, locales, zoneinfo, python
 *   sources, units, configs), a long tail of libraries, firmware and kernel modules, and a few
 *   named big files (kernel, initramfs, an LLVM-sized library) of tens of MiB;
 * - ~8% symlinks (`libX.so.N` → `libX.so.N.M.P`, `/bin` → `usr/bin`, `usr/sbin` → `bin`), ~2%
 *   hardlinks (versioned binary aliases, python's identical `.opt-1.pyc` files, as Fedora ships),
 *   empty files (`__init__.py`), setuid binaries, a few files owned by other users, license
 *   texts repeated across packages (equal content, as in real images), one whiteout;
 * - bootable the way ostree and bootc want it: `/usr/lib/modules/<kver>/{vmlinuz,initramfs.img}`,
 *   `/usr/lib/os-release`, config labels `containers.bootc=1` and `ostree.bootable=true`.
 *
 * Larger scales multiply the number of packages (files and bytes grow together, as a bigger
 * image does); the named big files stay single.
 *
 * Content: slices of an 8 MiB pool (half pseudo-random, half text-like, so layers compress
 * roughly as real ones do), each 4 KiB block stamped with its file's content id and block
 * number so that no two distinct files are equal by accident.
 *
 * @module
 */

/** Kernel version directory of the generated image. */
export const BENCH_KVER = "6.14.9-300.fc42.x86_64";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Bytes of file content at scale 1 (~1.1 GiB), named big files included. */
export const SCALE1_CONTENT_BYTES = 1126 * MiB;

/** One entry of a layer tar, in the order it is written. */
export interface ImageEntry {
  /** Path inside the layer, relative, no trailing slash. */
  path: string;
  type: "dir" | "file" | "symlink" | "hardlink";
  mode: number;
  uid: number;
  gid: number;
  /** Files: byte count. */
  size: number;
  /** Files: which bytes ({@linkcode fillContent}); equal ids have equal bytes. */
  contentId: number;
  /** Symlinks: the target as written; hardlinks: the earlier path in the same layer. */
  target: string;
}

/** One layer: a name for people and its entries (parents before children). */
export interface ImageLayerPlan {
  name: string;
  entries: ImageEntry[];
}

/** The whole image: layers and the numbers RESULTS.md reports about it. */
export interface ImagePlan {
  scale: number;
  layers: ImageLayerPlan[];
  stats: ImageStats;
}

/** What the generated image holds (regular files counted once per path, hardlinks apart). */
export interface ImageStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Sum of regular file sizes (hardlinks not counted twice). */
  contentBytes: number;
  medianFileBytes: number;
  p90FileBytes: number;
  p99FileBytes: number;
  maxFileBytes: number;
  /** Files of at most 64 bytes (composefs keeps them inline). */
  inlineFiles: number;
}

/** xorshift32: small, fast, the same everywhere. */
class Rng {
  #x: number;
  constructor(seed: number) {
    this.#x = (seed >>> 0) || 0x9e3779b9;
  }
  next(): number {
    let x = this.#x;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.#x = x;
    return x;
  }
  /** Integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)];
  }
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
function normalQuantile(p: number): number {
  // deno-fmt-ignore
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687,
    138.357751867269, -30.66479806614716, 2.506628277459239,
  ];
  // deno-fmt-ignore
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866,
    66.80131188771972, -13.28068155288572,
  ];
  // deno-fmt-ignore
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838,
    -2.549732539343734, 4.374664141464968, 2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** `n` sizes at the quantiles (i + ½)/n of a log-normal with this median and σ, shuffled. */
function logNormalSizes(n: number, median: number, sigma: number, rng: Rng): number[] {
  const sizes = Array.from(
    { length: n },
    (_, i) => median * Math.exp(sigma * normalQuantile((i + 0.5) / n)),
  );
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [sizes[i], sizes[j]] = [sizes[j], sizes[i]];
  }
  return sizes;
}

// deno-fmt-ignore
const SYLLABLES = [
  "ac", "al", "am", "an", "ar", "as", "at", "be", "bi", "bo", "ca", "ce", "ci", "co", "cu", "da",
  "de", "di", "do", "el", "em", "en", "er", "es", "et", "ex", "fa", "fi", "fo", "ga", "ge", "gi",
  "go", "ha", "he", "hi", "ho", "id", "il", "im", "in", "io", "ir", "is", "it", "ka", "ke", "ki",
  "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na", "ne", "ni", "no", "nu", "ob",
  "od", "ol", "om", "on", "op", "or", "os", "ot", "pa", "pe", "pi", "po", "pu", "qu", "ra", "re",
  "ri", "ro", "ru", "sa", "se", "si", "so", "su", "ta", "te", "ti", "to", "tu", "un", "ur", "us",
  "va", "ve", "vi", "vo", "xa", "xe", "ya", "yo", "za", "ze", "zo", "gtk", "lib", "qt", "x",
];

function word(rng: Rng, syllables = 2 + rng.below(3)): string {
  let w = "";
  for (let i = 0; i < syllables; i++) w += rng.pick(SYLLABLES);
  return w;
}

/** How one kind of file is laid out; sizes are log-normal (median, σ) before scaling. */
interface FileKind {
  name: string;
  layer: number;
  /** Files at scale 1. */
  count: number;
  median: number;
  sigma: number;
  /** Path of the i-th file of this kind, for package `pkg`. */
  path: (pkg: string, i: number, rng: Rng) => string;
  mode?: number;
}

// deno-fmt-ignore
const LANGS = [
  "ar", "bg", "ca", "cs", "da", "de", "el", "en_GB", "es", "et", "eu", "fi", "fr", "gl", "he",
  "hr", "hu", "id", "it", "ja", "ko", "lt", "nb", "nl", "pl", "pt", "pt_BR", "ro", "ru", "sk",
  "sl", "sr", "sv", "tr", "uk", "vi", "zh_CN", "zh_TW",
];
// deno-fmt-ignore
const SUBSYSTEMS = [
  "net/ethernet", "net/wireless", "gpu/drm", "usb/host", "usb/storage", "scsi",
  "md", "block", "input", "hid", "media/usb", "sound/pci",
  "i2c", "iio", "infiniband", "nvme/host", "crypto", "fs",
  "net/netfilter", "bluetooth",
];
const REGIONS = ["Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe"];

const KINDS: FileKind[] = [
  {
    name: "executables",
    layer: 0,
    count: 1400,
    median: 40 * KiB,
    sigma: 1.2,
    path: (p, i) => `usr/bin/${p}${i % 3 === 0 ? "" : `-${word(new Rng(i + 7), 1)}`}`,
    mode: 0o755,
  },
  {
    name: "libraries",
    layer: 0,
    count: 2200,
    median: 70 * KiB,
    sigma: 1.45,
    path: (p, i) => `usr/lib64/lib${p}.so.${i % 7}.${i % 13}.${i % 5}`,
    mode: 0o755,
  },
  {
    name: "man pages",
    layer: 0,
    count: 3500,
    median: 2.5 * KiB,
    sigma: 0.8,
    path: (p, i) => {
      const sec = [1, 1, 1, 3, 5, 7, 8][i % 7];
      return `usr/share/man/man${sec}/${p}.${sec}.gz`;
    },
  },
  {
    name: "translations",
    layer: 0,
    count: 4000,
    median: 5 * KiB,
    sigma: 1.0,
    path: (p, i) => `usr/share/locale/${LANGS[i % LANGS.length]}/LC_MESSAGES/${p}.mo`,
  },
  {
    name: "zoneinfo",
    layer: 0,
    count: 1800,
    median: 1.2 * KiB,
    sigma: 0.6,
    path: (p, i) => `usr/share/zoneinfo/${REGIONS[i % REGIONS.length]}/${p[0].toUpperCase()}${p}`,
  },
  {
    name: "docs",
    layer: 0,
    count: 2500,
    median: 3 * KiB,
    sigma: 1.1,
    path: (p, i) =>
      `usr/share/doc/${p}/${["README", "NEWS", "AUTHORS", "ChangeLog", "README.md"][i % 5]}`,
  },
  {
    name: "configs",
    layer: 0,
    count: 900,
    median: 1 * KiB,
    sigma: 1.2,
    path: (p, i) => `etc/${p}/${i % 4 === 0 ? `${p}.conf` : `${word(new Rng(i + 3), 2)}.conf`}`,
  },
  {
    name: "systemd units",
    layer: 0,
    count: 900,
    median: 600,
    sigma: 0.6,
    path: (p, i) => `usr/lib/systemd/system/${p}${["", "-setup", "-daemon"][i % 3]}.service`,
  },
  {
    name: "icons and data",
    layer: 0,
    count: 2000,
    median: 3 * KiB,
    sigma: 1.5,
    path: (p, i) =>
      `usr/share/${p}/${["icons", "data", "schemas"][i % 3]}/${word(new Rng(i + 11), 2)}.${
        ["png", "xml", "json", "svg"][i % 4]
      }`,
  },
  {
    name: "kernel modules",
    layer: 1,
    count: 3000,
    median: 14 * KiB,
    sigma: 1.1,
    path: (p, i) =>
      `usr/lib/modules/${BENCH_KVER}/kernel/drivers/${
        SUBSYSTEMS[i % SUBSYSTEMS.length]
      }/${p}.ko.xz`,
  },
  {
    name: "firmware",
    layer: 1,
    count: 900,
    median: 50 * KiB,
    sigma: 1.8,
    path: (p, i) => `usr/lib/firmware/${p.slice(0, 4)}/${p}-${i % 9}.bin`,
  },
  {
    name: "python modules",
    layer: 2,
    count: 3800,
    median: 5 * KiB,
    sigma: 1.3,
    path: (p, i) =>
      `usr/lib/python3.13/site-packages/${p.slice(0, 6)}/${word(new Rng(i + 5), 2)}${
        i % 2 === 0 ? ".py" : ".cpython-313.so"
      }`,
  },
];

/** Named big files: the long tail of a real image (scale-independent). */
const BIG_FILES: { path: string; size: number; layer: number; mode: number }[] = [
  { path: `usr/lib/modules/${BENCH_KVER}/vmlinuz`, size: 15 * MiB, layer: 1, mode: 0o755 },
  { path: `usr/lib/modules/${BENCH_KVER}/initramfs.img`, size: 42 * MiB, layer: 1, mode: 0o600 },
  { path: "usr/lib64/libLLVM.so.19.1", size: 58 * MiB, layer: 0, mode: 0o755 },
  { path: "usr/bin/podman", size: 44 * MiB, layer: 0, mode: 0o755 },
  { path: "usr/lib64/libicudata.so.76.1", size: 31 * MiB, layer: 0, mode: 0o755 },
];

/** License texts repeated across packages: equal content, as real images have. */
const LICENSES = [
  { name: "COPYING", size: 18_092 }, // GPL-2.0
  { name: "COPYING", size: 35_149 }, // GPL-3.0
  { name: "COPYING.LIB", size: 26_530 }, // LGPL-2.1
  { name: "LICENSE", size: 1_077 }, // MIT
  { name: "LICENSE", size: 11_357 }, // Apache-2.0
  { name: "LICENSE", size: 1_518 }, // BSD-3-Clause
];
/** Content ids below this are license texts; files get ids from here up. */
const FIRST_FILE_CONTENT_ID = 1000;

/** Generates the plan of the image at `scale` (1 = ~1.1 GiB in ~30,000 files). */
export function planImage(scale: number): ImagePlan {
  if (!(scale > 0)) throw new RangeError(`scale must be > 0, got ${scale}`);
  const rng = new Rng(0x5eed + Math.round(scale * 1000));
  const layers: Map<string, ImageEntry>[] = [new Map(), new Map(), new Map(), new Map()];
  const layerNames = ["base os", "kernel and firmware", "python", "bootc config"];
  let contentId = FIRST_FILE_CONTENT_ID;

  const entry = (layer: number, e: Partial<ImageEntry> & Pick<ImageEntry, "path" | "type">) => {
    const parts = e.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      const existing = layers[layer].get(dir);
      if (existing && existing.type !== "dir") {
        throw new Error(`image plan: ${dir} is a ${existing.type} and a parent of ${e.path}`);
      }
      if (!existing) {
        layers[layer].set(dir, {
          path: dir,
          type: "dir",
          mode: 0o755,
          uid: 0,
          gid: 0,
          size: 0,
          contentId: 0,
          target: "",
        });
      }
    }
    const full: ImageEntry = {
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      contentId: 0,
      target: "",
      ...e,
    };
    // Symlinks are 0777 in real tars; ostree commit --tree=tar= checksums another mode, but
    // writes a 0777 link, which ostree fsck then calls corrupted.
    if (full.type === "symlink") full.mode = 0o777;
    if (layers[layer].has(e.path)) throw new Error(`image plan: ${e.path} planned twice`);
    layers[layer].set(e.path, full);
    return full;
  };
  const taken = (layer: number, path: string) => layers[layer].has(path);

  // Sizes first, so that the total can be scaled to the target before paths are made.
  const kindSizes = KINDS.map((k) =>
    logNormalSizes(Math.round(k.count * scale), k.median, k.sigma, rng)
  );
  const bigBytes = BIG_FILES.reduce((n, f) => n + f.size, 0);
  const licenseCount = Math.round(1200 * scale);
  const licenseBytes = Array.from({ length: licenseCount }, (_, i) => LICENSES[i % 6].size)
    .reduce((a, b) => a + b, 0);
  // A python source also gets its .pyc (0.8 × its size): count it in the drawn total.
  const drawn = kindSizes.reduce(
    (sum, sizes, k) =>
      sum +
      sizes.reduce(
        (a, s, i) => a + (KINDS[k].name === "python modules" && i % 2 === 0 ? 1.8 * s : s),
        0,
      ),
    0,
  );
  const factor = (SCALE1_CONTENT_BYTES * scale - bigBytes - licenseBytes) / drawn;

  const packages = Array.from({ length: Math.round(900 * scale) }, () => word(rng));
  for (const [k, kind] of KINDS.entries()) {
    for (const [i, raw] of kindSizes[k].entries()) {
      const pkg = packages[(i * 7 + k * 131) % packages.length];
      let path = kind.path(pkg, i, rng);
      for (let n = 2; taken(kind.layer, path); n++) path = `${kind.path(pkg, i, rng)}-${n}`;
      const size = Math.max(0, Math.round(raw * factor));
      entry(kind.layer, {
        path,
        type: "file",
        size,
        contentId: contentId++,
        mode: kind.mode ?? 0o644,
        // A few configs belong to service accounts, as real /etc does.
        gid: kind.name === "configs" && i % 61 === 0 ? 990 + (i % 7) : 0,
      });
      if (kind.name === "libraries") {
        // libX.so.N -> libX.so.N.M.P, as every shared library package ships.
        const link = path.replace(/(\.so\.\d+)\.\d+\.\d+$/, "$1");
        if (!taken(0, link)) {
          entry(0, { path: link, type: "symlink", target: path.split("/").pop()!, mode: 0o777 });
        }
      }
      if (kind.name === "executables" && i % 10 === 0) {
        // Versioned alias of the same inode (perl5.40.1, python3.13 style).
        entry(0, { path: `${path}-${1 + (i % 4)}.${i % 10}`, type: "hardlink", target: path });
      } else if (kind.name === "executables" && i % 10 === 5) {
        entry(0, { path: `${path}-alt`, type: "symlink", target: path.split("/").pop()! });
      }
      if (kind.name === "python modules" && path.endsWith(".py")) {
        // Fedora hardlinks byte-identical optimisation levels of one .pyc.
        const dir = path.slice(0, path.lastIndexOf("/"));
        const base = path.slice(dir.length + 1, -3);
        const pyc = `${dir}/__pycache__/${base}.cpython-313.pyc`;
        if (!taken(2, pyc)) {
          entry(2, {
            path: pyc,
            type: "file",
            size: Math.round(size * 0.8),
            contentId: contentId++,
          });
          if (i % 3 === 0) {
            entry(2, {
              path: `${dir}/__pycache__/${base}.cpython-313.opt-1.pyc`,
              type: "hardlink",
              target: pyc,
            });
          }
        }
        const init = `${dir}/__init__.py`;
        if (!taken(2, init)) entry(2, { path: init, type: "file", size: 0, contentId: 0 });
      }
    }
  }
  for (let i = 0; i < licenseCount; i++) {
    const lic = LICENSES[i % LICENSES.length];
    const pkg = packages[(i * 13) % packages.length];
    let path = `usr/share/licenses/${pkg}/${lic.name}`;
    for (let n = 2; taken(0, path); n++) path = `usr/share/licenses/${pkg}-${n}/${lic.name}`;
    entry(0, { path, type: "file", size: lic.size, contentId: 1 + (i % LICENSES.length) });
  }
  for (const f of BIG_FILES) {
    entry(f.layer, {
      path: f.path,
      type: "file",
      size: f.size,
      contentId: contentId++,
      mode: f.mode,
    });
  }
  for (const name of ["sudo", "passwd", "su", "mount", "umount", "chage"]) {
    entry(0, {
      path: `usr/bin/${name}`,
      type: "file",
      size: 48 * KiB + name.length * 1000,
      contentId: contentId++,
      mode: 0o4755,
    });
  }
  // The merged-/usr symlinks of a Fedora root.
  for (
    const [path, target] of [["bin", "usr/bin"], ["sbin", "usr/sbin"], ["lib", "usr/lib"], [
      "lib64",
      "usr/lib64",
    ], ["usr/sbin", "bin"]]
  ) {
    entry(0, { path, type: "symlink", target, mode: 0o777 });
  }
  entry(0, { path: "etc/obsolete.conf", type: "file", size: 120, contentId: contentId++ });
  // The top layer, as a Containerfile's RUN/COPY leaves it.
  entry(3, {
    path: "usr/lib/os-release",
    type: "file",
    size: 0,
    contentId: -1, // text, see osRelease()
  });
  entry(3, {
    path: "usr/lib/bootc/install/00-bench.toml",
    type: "file",
    size: 64,
    contentId: contentId++,
  });
  entry(3, { path: "etc/.wh.obsolete.conf", type: "file", size: 0, contentId: 0 });
  entry(3, { path: "etc/motd", type: "file", size: 40, contentId: contentId++ });
  const osr = osRelease(scale);
  layers[3].get("usr/lib/os-release")!.size = osr.length;

  const planned = layers.map((m, i) => ({
    name: layerNames[i],
    entries: tarOrder([...m.values()]),
  }));
  return { scale, layers: planned, stats: statsOf(planned) };
}

/**
 * Sorted by path, as `tar` of a directory writes them, except that a hardlink follows its
 * target (a tar hardlink names an earlier entry: `x.opt-1.pyc` sorts before `x.pyc`).
 */
function tarOrder(entries: ImageEntry[]): ImageEntry[] {
  const byPath = (a: ImageEntry, b: ImageEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  const links = new Map<string, ImageEntry[]>();
  for (const e of entries.filter((e) => e.type === "hardlink")) {
    links.set(e.target, [...links.get(e.target) ?? [], e]);
  }
  const out: ImageEntry[] = [];
  for (const e of entries.filter((e) => e.type !== "hardlink").sort(byPath)) {
    out.push(e, ...(links.get(e.path) ?? []).sort(byPath));
  }
  if (out.length !== entries.length) throw new Error("image plan: a hardlink without its target");
  return out;
}

/** `/usr/lib/os-release` of the generated image. */
export function osRelease(scale: number): Uint8Array {
  return new TextEncoder().encode(
    `NAME="Fedora Linux"\nVERSION="42 (unistore bench ${scale}x)"\nID=fedora\n` +
      `VERSION_ID=42\nPRETTY_NAME="Fedora Linux 42 (unistore bench)"\nVARIANT_ID=bootc\n`,
  );
}

function statsOf(layers: ImageLayerPlan[]): ImageStats {
  const sizes: number[] = [];
  let dirs = 0, symlinks = 0, hardlinks = 0;
  for (const l of layers) {
    for (const e of l.entries) {
      if (e.type === "file" && !e.path.split("/").pop()!.startsWith(".wh.")) sizes.push(e.size);
      else if (e.type === "dir") dirs++;
      else if (e.type === "symlink") symlinks++;
      else if (e.type === "hardlink") hardlinks++;
    }
  }
  sizes.sort((a, b) => a - b);
  const q = (p: number) => sizes[Math.min(sizes.length - 1, Math.floor(p * sizes.length))];
  return {
    files: sizes.length,
    dirs,
    symlinks,
    hardlinks,
    contentBytes: sizes.reduce((a, b) => a + b, 0),
    medianFileBytes: q(0.5),
    p90FileBytes: q(0.9),
    p99FileBytes: q(0.99),
    maxFileBytes: sizes[sizes.length - 1],
    inlineFiles: sizes.filter((s) => s <= 64).length,
  };
}

// ---- content ----

const POOL_BYTES = 8 * MiB;
/** Granularity of the pool's random / text halves, and of the slices files are made of. */
const POOL_CHUNK = 64 * KiB;

let pool: Uint8Array | undefined;

/** The content pool: alternating 64 KiB chunks of pseudo-random bytes and text-like words. */
function contentPool(): Uint8Array {
  if (pool) return pool;
  const p = new Uint8Array(POOL_BYTES);
  const rng = new Rng(0xc0ffee);
  const words = Array.from({ length: 512 }, () => new TextEncoder().encode(word(rng) + " "));
  for (let off = 0; off < POOL_BYTES; off += POOL_CHUNK) {
    const end = off + POOL_CHUNK;
    if ((off / POOL_CHUNK) % 2 === 0) {
      for (let i = off; i < end; i += 4) {
        const x = rng.next();
        p[i] = x;
        p[i + 1] = x >>> 8;
        p[i + 2] = x >>> 16;
        p[i + 3] = x >>> 24;
      }
    } else {
      let i = off;
      while (i < end) {
        const w = words[rng.below(words.length)];
        const n = Math.min(w.length, end - i);
        p.set(w.subarray(0, n), i);
        i += n;
        if (rng.below(12) === 0 && i < end) p[i++] = 0x0a;
      }
    }
  }
  return (pool = p);
}

/**
 * Writes the bytes of content `id` (`size` bytes) into `out` (at least `size` long): equal ids
 * give equal bytes, different ids different bytes (each 4 KiB block starts with the id and the
 * block number).
 */
export function fillContent(out: Uint8Array, id: number, size: number, scale: number): void {
  if (id === -1) {
    out.set(osRelease(scale));
    return;
  }
  const p = contentPool();
  const rng = new Rng(Math.imul(id, 0x9e3779b1) ^ 0x85ebca6b);
  for (let off = 0; off < size; off += POOL_CHUNK) {
    const n = Math.min(POOL_CHUNK, size - off);
    const src = rng.below(POOL_BYTES - POOL_CHUNK);
    out.set(p.subarray(src, src + n), off);
  }
  const stamp = new DataView(out.buffer, out.byteOffset, size);
  for (let block = 0; block * 4096 + 8 <= size; block++) {
    stamp.setUint32(block * 4096, id, true);
    stamp.setUint32(block * 4096 + 4, block, true);
  }
  if (size > 0 && size < 8) {
    const text = new TextEncoder().encode(id.toString(36).padStart(8, "0"));
    out.set(text.subarray(text.length - size));
  }
}
