/**
 * A tar byte stream in which some file payloads are stood in for by placeholder bytes: what a
 * pipeline hands to the tar reader of lib/oci/tar.ts (or a store's layer writer) when it knows a payload's
 * length but must not read it yet (a composefs object that will be cloned, a `diff/` file whose
 * fate is decided later). The reader sees a well-formed archive; the caller learns, from the
 * archive offset at which each stood-in piece starts, which payload it is.
 *
 * @module
 */

// Stands in for payload bytes: never written to, so one buffer serves every placeholder.
const PLACEHOLDER = new Uint8Array(1 << 20);

/** Options of {@linkcode placeholderTar}. */
export interface PlaceholderTarOptions {
  /**
   * Look at the next piece before handing out the bytes of the current one, so that when the
   * consumer has parsed a header, `bytesOf` has already seen the piece right after it (its
   * payload). Default false: each piece is looked at when its first byte is wanted.
   */
  readAhead?: boolean;
}

/**
 * The tar bytes of `pieces`: `bytesOf(piece, offset)` says what each piece is, given the archive
 * offset at which it starts: its bytes (yielded as they are), or a length (yielded as that many
 * placeholder bytes, in chunks of at most 1 MiB that share one buffer, so a consumer must not
 * keep or change them). A length of 0 yields nothing.
 *
 * @example
 * ```ts ignore
 * const payloads: { id: ObjectId; offset: number }[] = [];
 * const tar = new TarReader(placeholderTar(stream.chunks(), (c, offset) => {
 *   if (c.kind === "inline") return c.bytes;
 *   payloads.push({ id: c.id, offset });
 *   return objectSize(c.id);
 * }), where);
 * ```
 */
export async function* placeholderTar<T>(
  pieces: AsyncIterable<T>,
  bytesOf: (piece: T, offset: number) => Uint8Array | number,
  opts: PlaceholderTarOptions = {},
): AsyncGenerator<Uint8Array> {
  let offset = 0;
  const look = (piece: T): Uint8Array | number => {
    const b = bytesOf(piece, offset);
    offset += typeof b === "number" ? b : b.length;
    return b;
  };
  if (!opts.readAhead) {
    for await (const piece of pieces) yield* placeholderBytes(look(piece));
    return;
  }
  const it = pieces[Symbol.asyncIterator]();
  let done = false;
  try {
    const pull = async (): Promise<Uint8Array | number | null> => {
      const r = await it.next();
      done = r.done === true;
      return done ? null : look(r.value);
    };
    for (let cur = await pull(); cur !== null;) {
      const next = await pull();
      yield* placeholderBytes(cur);
      cur = next;
    }
  } finally {
    // As `for await` does when its consumer stops early.
    if (!done) await it.return?.();
  }
}

/**
 * {@linkcode placeholderTar} for pieces that come in batches: one array of chunks per batch
 * (lib/oci/byte_reader.ts takes them as they are), so that a batch costs one step of the
 * async iteration, not one per piece. `bytesOf` sees every piece of a batch when the batch is
 * pulled, before any of its chunks is read.
 *
 * @example
 * ```ts ignore
 * const tar = new TarReader(placeholderTarBatches(store.layerTarPartBatches(id), (p) =>
 *   p.type === "segment" ? p.bytes : p.size), where);
 * ```
 */
export async function* placeholderTarBatches<T>(
  batches: AsyncIterable<readonly T[]>,
  bytesOf: (piece: T, offset: number) => Uint8Array | number,
): AsyncGenerator<Uint8Array[]> {
  let offset = 0;
  for await (const batch of batches) {
    const chunks: Uint8Array[] = [];
    for (const piece of batch) {
      const b = bytesOf(piece, offset);
      offset += typeof b === "number" ? b : b.length;
      for (const chunk of placeholderBytes(b)) chunks.push(chunk);
    }
    if (chunks.length > 0) yield chunks;
  }
}

/** `b` itself, or `b` placeholder bytes in chunks of at most {@linkcode PLACEHOLDER}'s size. */
function* placeholderBytes(b: Uint8Array | number): Generator<Uint8Array> {
  if (typeof b !== "number") {
    yield b;
    return;
  }
  for (let left = b; left > 0;) {
    const n = Math.min(left, PLACEHOLDER.length);
    left -= n;
    yield PLACEHOLDER.subarray(0, n);
  }
}
