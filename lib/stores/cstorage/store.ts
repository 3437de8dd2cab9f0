/**
 * A containers-storage store (overlay driver) as one object: what podman, skopeo and bootc see
 * under a graph root, read and written with c/storage's locks and formats.
 *
 * Reads take read locks (`storage.lock` → `layers.lock` → `images.lock`) only while they load
 * the JSON; rebuilding a layer tar and checking an image hold them throughout, as c/storage's
 * `Diff` and `Check` do. Writes follow specs/containers-storage.md §3.5 (see layer_writer.ts
 * and image_writer.ts).
 *
 * @example
 * ```ts ignore
 * using store = await CStorage.open("/sysroot/ostree/bootc/storage");
 * for (const img of await store.listImages()) console.log(img.id, img.names);
 * const img = await store.image("localhost/app:v1");
 * for (const l of await store.layerChain(img.topLayer!)) console.log(l.id, l.diffDigest);
 * const out = Deno.stdout.writable.getWriter();
 * await store.writeLayerTar((await store.layerChain(img.topLayer!))[0].id, out);
 * ```
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import { close, openDir } from "../../../ffi/fs.ts";
import { readImageBigData } from "./big_data.ts";
import { checkImageRecord, type CheckOptions, type ImageCheckReport } from "./check.ts";
import { AmbiguousImageError, ImageNotFoundError, LayerNotFoundError } from "./errors.ts";
import { type ImageFile, mergedFiles } from "./image_files.ts";
import { imageDigests, type ImageRecord, parseImageRecord } from "./image_record.ts";
import { type ImageInput, type ImageWriteResult, writeImage } from "./image_writer.ts";
import { type LayerRecord, parseLayerRecord } from "./layer_record.ts";
import {
  checkLayerFiles,
  type LayerTarPart,
  layerTarPartBatches,
  type LayerTarResult,
  type TarByteSink,
  writeLayerTar,
} from "./layer_tar.ts";
import {
  type LayerInput,
  type LayerWriteOptions,
  type LayerWriteResult,
  writeLayer,
} from "./layer_writer.ts";
import { PATHS } from "./layout.ts";
import { type LockRequest, StoreLocks } from "./lockfile.ts";
import { readRecordFile } from "./json_records.ts";
import { StoreRoot } from "./store_root.ts";

/** Options of {@linkcode CStorage.open}. */
export interface CStorageOpenOptions {
  /** The run root (`--runroot`): read for transient volatile layers. */
  runroot?: string;
  /** Create a missing graph root (for a new store). */
  create?: boolean;
  /** Never write, not even lock files (additional image stores, read-only mounts). */
  readOnly?: boolean;
}

const BIG_DATA_MANIFEST = "manifest";

/** A containers-storage graph root with the overlay driver. */
export class CStorage implements Disposable {
  private constructor(readonly root: StoreRoot) {}

  /**
   * Opens the store at `root` (the graph root, e.g. `/var/lib/containers/storage`).
   *
   * @example
   * ```ts ignore
   * using store = await CStorage.open(dir, { runroot: `${dir}-run` });
   * ```
   */
  static open(root: string, opts: CStorageOpenOptions = {}): Promise<CStorage> {
    return Promise.resolve(new CStorage(StoreRoot.open(root, opts)));
  }

  /** The graph root path. */
  get path(): string {
    return this.root.path;
  }

  close(): void {
    this.root.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #locked<T>(request: LockRequest, fn: () => Promise<T> | T): Promise<T> {
    await using _locks = await StoreLocks.acquire(this.root.fd, this.root.path, request, {
      readOnly: this.root.readOnly,
    });
    return await fn();
  }

  #loadLayers(): LayerRecord[] {
    const file = `${this.path}/${PATHS.layersDir}/${PATHS.layersJson}`;
    const out = readRecordFile(this.root.fd, this.path, PATHS.layersDir, PATHS.layersJson)
      .map((r) => parseLayerRecord(r, file));
    const volatile = `${this.path}/${PATHS.layersDir}/${PATHS.volatileLayersJson}`;
    out.push(
      ...readRecordFile(this.root.fd, this.path, PATHS.layersDir, PATHS.volatileLayersJson)
        .map((r) => parseLayerRecord(r, volatile, true)),
    );
    if (this.root.runroot) {
      // transient_store = true keeps volatile layers in the run root instead.
      const runroot = this.root.runroot;
      const runFile = `${runroot}/${PATHS.layersDir}/${PATHS.volatileLayersJson}`;
      let fd = -1;
      try {
        fd = openDir(runroot);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) throw e;
      }
      if (fd >= 0) {
        try {
          out.push(
            ...readRecordFile(fd, runroot, PATHS.layersDir, PATHS.volatileLayersJson)
              .map((r) => parseLayerRecord(r, runFile, true)),
          );
        } finally {
          close(fd);
        }
      }
    }
    return out;
  }

  #loadImages(): ImageRecord[] {
    const file = `${this.path}/${PATHS.imagesDir}/${PATHS.imagesJson}`;
    return readRecordFile(this.root.fd, this.path, PATHS.imagesDir, PATHS.imagesJson)
      .map((r) => parseImageRecord(r, file));
  }

  /** Every layer: `layers.json`, then `volatile-layers.json` (graph root, then run root). */
  layers(): Promise<LayerRecord[]> {
    return this.#locked({ graph: "read", layers: "read" }, () => this.#loadLayers());
  }

  /** The layer with id `id`; throws {@linkcode LayerNotFoundError}. */
  async layer(id: string): Promise<LayerRecord> {
    const l = (await this.layers()).find((x) => x.id === id);
    if (!l) throw new LayerNotFoundError(`${this.path}: layer ${id}`, "no such layer");
    return l;
  }

  /** Complete layers whose uncompressed tar has DiffID `diffId`. */
  async layersByDiffId(diffId: string): Promise<LayerRecord[]> {
    return (await this.layers()).filter((l) => l.diffDigest === diffId && !l.incomplete);
  }

  /** The chain ending in `topLayerId`, base layer first. */
  async layerChain(topLayerId: string): Promise<LayerRecord[]> {
    return chainOf(this.path, await this.layers(), topLayerId);
  }

  /** Every image record of `images.json`. */
  listImages(): Promise<ImageRecord[]> {
    return this.#locked({ graph: "read", images: "read" }, () => this.#loadImages());
  }

  /**
   * Finds an image by id, `sha256:<id>`, unique id prefix, exact name (`localhost/app:v1`),
   * short name (`app:v1`, `app` → `…:latest`), manifest digest, or `name@digest`. Null when
   * nothing matches; throws {@linkcode AmbiguousImageError} when a prefix matches several.
   */
  async findImage(ref: string): Promise<ImageRecord | null> {
    return matchImage(this.path, await this.listImages(), ref);
  }

  /** {@linkcode findImage}, throwing {@linkcode ImageNotFoundError} when nothing matches. */
  async image(ref: string): Promise<ImageRecord> {
    const img = await this.findImage(ref);
    if (!img) {
      throw new ImageNotFoundError(`${this.path}: image ${JSON.stringify(ref)}`, "no such image");
    }
    return img;
  }

  /** An image's layers, base first. */
  async imageLayers(image: ImageRecord | string): Promise<LayerRecord[]> {
    const img = typeof image === "string" ? await this.image(image) : image;
    return img.topLayer === null ? [] : await this.layerChain(img.topLayer);
  }

  /** One big-data item of an image (config, manifest, signatures). */
  async imageBigData(image: ImageRecord | string, key: string): Promise<Uint8Array> {
    const img = typeof image === "string" ? await this.image(image) : image;
    return await this.#locked(
      { graph: "read", images: "read" },
      () => readImageBigData(this.root.fd, this.path, img.id, key),
    );
  }

  /** The image config (big-data key `sha256:<image id>`). */
  imageConfig(image: ImageRecord | string): Promise<Uint8Array> {
    return (async () => {
      const img = typeof image === "string" ? await this.image(image) : image;
      return await this.imageBigData(img, `sha256:${img.id}`);
    })();
  }

  /** The image manifest it was stored with (`manifest-<digest>`, else `manifest`). */
  async imageManifest(image: ImageRecord | string): Promise<Uint8Array> {
    const img = typeof image === "string" ? await this.image(image) : image;
    const key = img.digest && img.bigDataNames.includes(`manifest-${img.digest}`)
      ? `manifest-${img.digest}`
      : BIG_DATA_MANIFEST;
    return await this.imageBigData(img, key);
  }

  /**
   * Writes the exact tar of layer `layerId` to `sink`, verified against its `diff-digest`,
   * holding the layer store's read lock throughout (writers wait).
   */
  writeLayerTar(layerId: string, sink: TarByteSink): Promise<LayerTarResult> {
    return this.#locked({ graph: "read", layers: "read" }, async () => {
      const layer = this.#loadLayers().find((l) => l.id === layerId);
      if (!layer) throw new LayerNotFoundError(`${this.path}: layer ${layerId}`, "no such layer");
      return await writeLayerTar(this.root, layer, sink);
    });
  }

  /**
   * Reads every `diff/` file of layer `layerId` against its tar-split entry (size, CRC-64), as
   * c/storage does when it rebuilds a tar, under the layer store's read lock. Throws
   * {@linkcode LayerIntegrityError} naming the first file that differs or is missing; returns
   * when all match (the layer's digest is not checked: see {@linkcode writeLayerTar}).
   */
  checkLayerFiles(layerId: string): Promise<void> {
    return this.#locked({ graph: "read", layers: "read" }, async () => {
      const layer = this.#loadLayers().find((l) => l.id === layerId);
      if (!layer) throw new LayerNotFoundError(`${this.path}: layer ${layerId}`, "no such layer");
      await checkLayerFiles(this.root, layer);
    });
  }

  /**
   * Layer `layerId`'s tar as tar-split parts with openable `diff/` files, in batches (see
   * {@linkcode layerTarPartBatches}), holding the layer store's read lock until the iteration
   * ends. Do not write to this store while iterating: the write would wait for the lock forever.
   *
   * @example
   * ```ts ignore
   * for await (const batch of store.layerTarPartBatches(id)) {
   *   for (const p of batch) {
   *     if (p.type === "segment") out.push(p.bytes);
   *     else if (p.size > 0) { const fd = p.open()!; try { cloneInto(fd) } finally { close(fd) } }
   *   }
   * }
   * ```
   */
  async *layerTarPartBatches(layerId: string): AsyncGenerator<LayerTarPart[]> {
    await using _locks = await StoreLocks.acquire(this.root.fd, this.root.path, {
      graph: "read",
      layers: "read",
    }, { readOnly: this.root.readOnly });
    const layer = this.#loadLayers().find((l) => l.id === layerId);
    if (!layer) throw new LayerNotFoundError(`${this.path}: layer ${layerId}`, "no such layer");
    yield* layerTarPartBatches(this.root, layer);
  }

  /**
   * The merged files of an image (top layer wins, whiteouts and opaque directories applied),
   * each with metadata and a way to open it in the right `diff/`. Locks are not held while
   * iterating (as after a c/storage mount); a layer deleted meanwhile makes reads fail.
   */
  async *imageFiles(image: ImageRecord | string): AsyncGenerator<ImageFile> {
    const chain = await this.imageLayers(image);
    yield* mergedFiles(this.root, chain.map((l) => l.id).reverse());
  }

  /** Creates a layer from its exact tar (or finds it present): see layer_writer.ts. */
  writeLayer(input: LayerInput, opts: LayerWriteOptions = {}): Promise<LayerWriteResult> {
    return writeLayer(this.root, input, opts);
  }

  /** Stores an image: layers, big data, record (see image_writer.ts). */
  writeImage(input: ImageInput, opts: LayerWriteOptions = {}): Promise<ImageWriteResult> {
    return writeImage(this.root, input, opts);
  }

  /** Checks one image (see check.ts), under read locks on layers and images. */
  checkImage(ref: ImageRecord | string, opts: CheckOptions = {}): Promise<ImageCheckReport> {
    return this.#locked({ graph: "read", layers: "read", images: "read" }, async () => {
      const images = this.#loadImages();
      const img = typeof ref === "string"
        ? matchImage(this.path, images, ref)
        : images.find((i) => i.id === ref.id);
      if (!img) {
        throw new ImageNotFoundError(
          `${this.path}: image ${typeof ref === "string" ? JSON.stringify(ref) : ref.id}`,
          "no such image",
        );
      }
      const layers = new Map(this.#loadLayers().map((l) => [l.id, l]));
      return await checkImageRecord(this.root, img, layers, opts);
    });
  }
}

/** The chain of `topLayerId` in `layers`, base first; throws on a missing layer or a loop. */
export function chainOf(
  storePath: string,
  layers: readonly LayerRecord[],
  topLayerId: string,
): LayerRecord[] {
  const byId = new Map(layers.map((l) => [l.id, l]));
  const out: LayerRecord[] = [];
  for (let id: string | null = topLayerId; id !== null;) {
    const l = byId.get(id);
    if (!l) {
      throw new LayerNotFoundError(
        `${storePath}: layer ${id}`,
        out.length === 0 ? "no such layer" : `parent of layer ${out[out.length - 1].id} is missing`,
      );
    }
    if (out.includes(l)) {
      throw new LayerNotFoundError(`${storePath}: layer ${id}`, "layer chain loops");
    }
    out.push(l);
    id = l.parent;
  }
  return out.reverse();
}

const HEX_PREFIX = /^[0-9a-f]{1,64}$/;

/** The repository part of a name (`localhost/app:v1` → `localhost/app`). */
function repoOf(name: string): string {
  const at = name.indexOf("@");
  const base = at >= 0 ? name.slice(0, at) : name;
  const slash = base.lastIndexOf("/");
  const colon = base.lastIndexOf(":");
  return colon > slash ? base.slice(0, colon) : base;
}

/** Names a short reference could stand for, most specific first (`app` → `localhost/app:latest`). */
function nameCandidates(ref: string): string[] {
  const out = [ref];
  const slash = ref.lastIndexOf("/");
  const tagged = ref.includes("@") || ref.lastIndexOf(":") > slash;
  const withTag = tagged ? ref : `${ref}:latest`;
  if (!tagged) out.push(withTag);
  const first = ref.split("/")[0];
  const hasDomain = ref.includes("/") &&
    (first.includes(".") || first.includes(":") || first === "localhost");
  if (!hasDomain) {
    out.push(`localhost/${ref}`, `localhost/${withTag}`);
    if (!ref.includes("/")) out.push(`docker.io/library/${withTag}`);
    else out.push(`docker.io/${withTag}`);
  }
  return [...new Set(out)];
}

/** Resolves `ref` among `images` (see {@linkcode CStorage.findImage}). */
export function matchImage(
  storePath: string,
  images: readonly ImageRecord[],
  ref: string,
): ImageRecord | null {
  const id = ref.startsWith("sha256:") ? ref.slice(7) : ref;
  const byId = images.find((i) => i.id === id);
  if (byId) return byId;
  for (const name of nameCandidates(ref)) {
    const hit = images.find((i) => i.names.includes(name));
    if (hit) return hit;
  }
  if (/^sha256:[0-9a-f]{64}$/.test(ref)) {
    const hit = images.find((i) => imageDigests(i).includes(ref));
    if (hit) return hit;
  }
  const at = ref.indexOf("@");
  if (at > 0) {
    const digest = ref.slice(at + 1);
    const repos = nameCandidates(ref.slice(0, at)).map(repoOf);
    const hit = images.find((i) =>
      imageDigests(i).includes(digest) && i.names.some((n) => repos.includes(repoOf(n)))
    );
    if (hit) return hit;
  }
  if (HEX_PREFIX.test(id)) {
    const hits = images.filter((i) => i.id.startsWith(id));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1) {
      throw new AmbiguousImageError(
        `${storePath}: image ${JSON.stringify(ref)}`,
        `prefix matches ${hits.length} images: ${hits.map((h) => h.id.slice(0, 12)).join(", ")}`,
      );
    }
  }
  return null;
}

/**
 * Writes the exact tar of the layer with DiffID `diffId` to `writer`, verified against the
 * DiffID: what `unistore internals cat-layer sha256:… --from containers-storage` prints.
 *
 * @example
 * ```ts ignore
 * using store = await CStorage.open(`${root}/sysroot/ostree/bootc/storage`, { readOnly: true });
 * const out = Deno.stdout.writable.getWriter(); // writes whole chunks, unlike Deno.stdout.write
 * await writeLayerTarFromStore(store, "sha256:ab…", out);
 * await out.close();
 * ```
 */
export async function writeLayerTarFromStore(
  store: CStorage,
  diffId: string,
  writer: TarByteSink,
): Promise<LayerTarResult> {
  const layers = await store.layersByDiffId(diffId);
  if (layers.length === 0) {
    throw new LayerNotFoundError(
      `${store.path}: layer ${diffId}`,
      "no complete layer has this DiffID",
    );
  }
  return await store.writeLayerTar(layers[0].id, writer);
}
