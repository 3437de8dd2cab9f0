/**
 * Test vectors copied verbatim from the specs, so a test failure points at a spec row.
 *
 * fs-verity: `specs/composefs-repo.md` §3.3 (block 4096, no salt).
 * CRC-64/GO-ISO: `specs/containers-storage.md` §4.2.
 */

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const filled = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);

/** One row of composefs-repo.md §3.3. `bytes` builds the input on demand (1 MiB rows are big). */
export interface FsVerityVector {
  name: string;
  bytes: () => Uint8Array;
  sha256: string;
  sha512: string;
}

export const FSVERITY_VECTORS: readonly FsVerityVector[] = [
  {
    name: "empty (0 bytes)",
    bytes: () => new Uint8Array(0),
    sha256: "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
    sha512: "ccf9e5aea1c2a64efa2f2354a6024b90dffde6bbc017825045dce374474e13d1" +
      "0adb9dadcc6ca8e17a3c075fbd31336e8f266ae6fa93a6c3bed66f9e784e5abf",
  },
  {
    name: '"hello world" (11 B, upstream composefs-rs vector)',
    bytes: () => text("hello world"),
    sha256: "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
    sha512: "18430270729d162d4e469daca123ae61893db4b0583d8f7081e3bf4f92b88ba5" +
      "14e7982f10733fb6aa895195c5ae8fd2eb2c47a8be05513ce5a0c51a6f570409",
  },
  {
    name: "4096 x 0x00 (one full block)",
    bytes: () => filled(4096, 0),
    sha256: "babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e",
    sha512: "928922686c4caf32175f5236a7f964e9925d10a74dc6d8344a8bd08b23c228ff" +
      "5792573987d7895f628f39c4f4ebe39a7367d7aeb16aaa0cd324ac1d53664e61",
  },
  {
    name: '4096 x "a"',
    bytes: () => filled(4096, 0x61),
    sha256: "a2a808ddaced77f0b6b3068f47b14b5a1fb3fc43674993ab11b8e7e6f2d089e2",
    sha512: "36b837c9d8c1c3f992c5be7feed967217668a847866b42eebcdb1ae81239ff85" +
      "6e93ebfac147adc058f5136202836273fc86771c1bcf598aaf9a4529f9e13cd3",
  },
  {
    name: '4097 x "a" (two blocks, second one byte)',
    bytes: () => filled(4097, 0x61),
    sha256: "18b155c0b6e054f3f7d22488ed15340e74dc161ce2d123e13eb685c3ce565f70",
    sha512: "8fe8cfab59a8c2334ce68d1e85f2aff84dc1e1c4c03a68a2c87055c0535bceb0" +
      "57aadd1ec34d3c57a3ce0cd01383da08301137821a5d9c8ee767ae5888a95545",
  },
  {
    name: "1 MiB x 0x00",
    bytes: () => filled(1024 * 1024, 0),
    sha256: "feb19a23e72cb1b8f935d668a09ecaad0bf7c5b9cdfa6dbba7c88a9998ed2b87",
    sha512: "b735a7f5b25dba3dafced82cfc87775a449b948c1fe323fa5500a6895d3118b9" +
      "9910d8dd2472ba3fcd676b77d6b555f124f6cbfc8615208b455ac056fd568494",
  },
  {
    name: '(128*4096 + 1) x "a" (3 levels for sha256)',
    bytes: () => filled(128 * 4096 + 1, 0x61),
    sha256: "cc4f297494cf9e0b6f159db6d30a62d3fcc219fc9c0cbc2d8792bd264da4d9cb",
    sha512: "8b542b5e5e4c55e3159544897327f1fedd412d1bf47acdb1137d93845434d71d" +
      "e857ac19151510618c752d604a152d3e5235d48dbfbc431395139f096555664d",
  },
];

/** One row of containers-storage.md §4.2. */
export interface Crc64Vector {
  name: string;
  bytes: Uint8Array;
  /** CRC as hex, as the spec prints it. */
  crc: string;
  /** tar-split `payload`: base64 of the 8 big-endian CRC bytes. */
  payload: string;
}

export const CRC64_VECTORS: readonly Crc64Vector[] = [
  {
    name: '"123456789" (catalogue check value)',
    bytes: text("123456789"),
    crc: "b90956c775a41001",
    payload: "uQlWx3WkEAE=",
  },
  {
    name: "etc/hello.txt of a real skopeo-written layer (31 B)",
    bytes: text("hello from layer 2 (overrides)\n"),
    crc: "af4343220f95d2ed",
    payload: "r0NDIg+V0u0=",
  },
  {
    name: '"new in layer 2\\n" (15 B)',
    bytes: text("new in layer 2\n"),
    crc: "b5e58d1809d4511b",
    payload: "teWNGAnUURs=",
  },
];
