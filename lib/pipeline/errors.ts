/**
 * Errors of the pipeline (moving images between stores). Each names the image, layer or path
 * involved and says what was expected and what was found. Errors of the stores themselves
 * (`ComposefsError`, `OstreeError`, `ReflinkUnsupportedError`) pass through unchanged, so a
 * caller can still tell a missing object from a refused reflink.
 *
 * @module
 */

/** Base class of every error thrown on purpose by `lib/pipeline/`. */
export class PipelineError extends Error {
  override name = "PipelineError";
  /** The image, layer stream or path the error is about. */
  readonly where: string;

  constructor(where: string, message: string, options?: ErrorOptions) {
    super(`${where}: ${message}`, options);
    this.where = where;
  }
}

/**
 * A layer splitstream does not describe a tar the way a composefs layer must: an external chunk
 * where no file payload is, a payload over 64 bytes stored inline, an object of the wrong size.
 */
export class LayerStreamError extends PipelineError {
  override name = "LayerStreamError";
}

/**
 * A layer entry cannot be applied to the merged tree: a `..` component, a hardlink to a path that
 * does not exist or is a directory, a root that is not a directory, an unknown entry type.
 */
export class MergedTreeError extends PipelineError {
  override name = "MergedTreeError";
}

/** The image reference or source named on the command line does not identify an image. */
export class ImageReferenceError extends PipelineError {
  override name = "ImageReferenceError";
}
