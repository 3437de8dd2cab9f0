/**
 * The containers-storage store (overlay driver): reading layers, images, big data and
 * tar-split; rebuilding exact layer tars; writing layers and images by clone with c/storage's
 * locks and tokens; checking images. Format: specs/containers-storage.md.
 *
 * @module
 */

export { CStorage, type CStorageOpenOptions, matchImage, writeLayerTarFromStore } from "./store.ts";
export type { CheckOptions, CheckProblem, ImageCheckReport } from "./check.ts";
export type {
  ClonedPayloads,
  ContentRequest,
  ContentSource,
  DiffWriteStats,
} from "./diff_writer.ts";
export * from "./errors.ts";
export type { ImageFile, ImageFileType } from "./image_files.ts";
export type { ImageRecord } from "./image_record.ts";
export type { ImageInput, ImageLayerInput, ImageWriteResult } from "./image_writer.ts";
export { COMPRESSION, type LayerRecord } from "./layer_record.ts";
export { layerChainIds, layerId } from "./layer_id.ts";
export type { LayerTarPart, LayerTarResult, TarByteSink } from "./layer_tar.ts";
export type {
  BlobCompression,
  LayerInput,
  LayerWriteOptions,
  LayerWriteResult,
} from "./layer_writer.ts";
export { bigDataFileName } from "./big_data.ts";
