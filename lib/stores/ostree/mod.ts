/**
 * The ostree store: bare and bare-user repositories, their objects and checksums, commits written
 * from an entry stream, ostree-ext container images, and sysroot deployments.
 *
 * Spec: ../../../../shared/specs/ostree-repo.md. One file per concept:
 * | file | concept |
 * |---|---|
 * | `gvariant.ts` | GVariant normal-form serializer and parser |
 * | `checksum.ts` | content-object checksums (file header + content); `ostreeChecksumOfPath` |
 * | `objects.ts` | dirmeta, dirtree, commit objects; object paths |
 * | `keyfile.ts`, `config.ts` | GKeyFile text; the repo `config` |
 * | `refs.ts` | ref names, refspecs, ostree-ext ref escaping |
 * | `repo.ts` | `OstreeRepo`: open, lock, read objects and refs, walk commits |
 * | `transaction.ts` | `RepoTransaction`: staged object writes, publish, refs |
 * | `tree_entry.ts` | the entry stream producers hand to writers |
 * | `commit_writer.ts` | a tree (entry stream) → objects → commit → ref |
 * | `image.ts` (canonical JSON from `lib/format/`) | ostree-ext image refs and merge-commit metadata |
 * | `deployments.ts` | deployments, BLS entries, booted / staged / rollback |
 *
 * @module
 */

export * from "./errors.ts";
export {
  canonicalXattrs,
  ContentChecksum,
  contentChecksum,
  type FileObjectMeta,
  ostreeChecksumAt,
  ostreeChecksumOfPath,
  type Xattr,
} from "./checksum.ts";
export { parseRepoConfig, type RepoConfig, type RepoMode } from "./config.ts";
export {
  type Commit,
  CommitMeta,
  type DirMeta,
  type DirTree,
  metadataBool,
  metadataChecksum,
  metadataString,
  objectPath,
  type ObjectType,
} from "./objects.ts";
export { KeyFile } from "./keyfile.ts";
export {
  escapeForRef,
  IMAGE_REF_PREFIX,
  imageRef,
  imageReferenceOfRef,
  layerRef,
  unescapeForRef,
  validateRefName,
} from "./refs.ts";
export { type CommitTreeItem, type FileObjectInfo, OstreeRepo, type RepoLock } from "./repo.ts";
export {
  RepoTransaction,
  type TransactionStats,
  type WriteFileOptions,
  type WriteFileResult,
} from "./transaction.ts";
export { displayEntryPath, type TreeEntry, type TreeEntryType } from "./tree_entry.ts";
export {
  BOOTABLE_IMAGE_TRANSFORM,
  OSTREE_EXT_LAYER_TRANSFORM,
  type TreeTransform,
  writeCommit,
  type WriteCommitOptions,
  type WriteCommitResult,
  writeTree,
  type WriteTreeOptions,
  type WriteTreeResult,
} from "./commit_writer.ts";
export {
  type ImageCommitMetadata,
  listImages,
  parseOstreeImageReference,
  readImage,
  type StoredImage,
  writeImageCommit,
  type WriteImageCommitOptions,
} from "./image.ts";
export { type Deployment, readDeployments, type SysrootDeployments } from "./deployments.ts";
export { Variant, type VariantDictEntry } from "./gvariant.ts";
