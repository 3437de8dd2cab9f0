/**
 * `unistore upgrade`: the pull pipeline of an ostree host bound to composefs (DESIGN §2; spec
 * ../../../shared/specs/bootc-unified-storage.md §2–§4, §9.2; ostree-repo.md §9–§10):
 *
 * 1. **which image**: `--image REF` (`docker://NAME`, `oci:DIR[:TAG]`, or a bare registry name
 *    taken as `docker://NAME`), else the booted deployment's origin
 *    `container-image-reference` with its ostree-ext prefix taken off
 *    (`ostree-unverified-registry:`, `ostree-unverified-image:`, `ostree-image-signed:`,
 *    `ostree-remote-image:REMOTE:`);
 * 2. **is there an update**: the manifest the source serves now (`skopeo inspect --raw`, a
 *    manifest list resolved to this machine's platform; or the layout's `index.json`) against
 *    the image of the queued deployment (staged, else pending, else booted). Identity is the
 *    config digest (DESIGN §4), so a manifest that only changed by recompression or by skopeo's
 *    Docker → OCI conversion is no update. The same image is still re-staged when the queued
 *    commit was not synthesized from composefs (spec §4: a host bound after its last pull);
 * 3. **pull**: the real `skopeo copy docker://NAME@<digest> oci:TMP:unistore` into
 *    `ROOT/sysroot/ostree/repo/tmp/unistore-pull-*` (the sysroot's filesystem, so a large image
 *    never fills another one), removed whatever happens; pinned to the digest inspected in
 *    step 2, so a tag moved in between cannot slip in another image. `oci:DIR` is read in place;
 *    an image composefs already holds is not pulled again;
 * 4. **composefs import** into `ROOT/sysroot/composefs` (created, sha512, when missing), tagged
 *    with the image name and bootc's `localhost/bootc-<manifest digest>` GC root;
 * 5. **ostree synthesis** by reflink ({@linkcode synthesizeOstreeCommit}): policy
 *    `reflink-or-copy` when `bootc.json` says `enabled-with-copy`, else `reflink-required`
 *    (`enabled`, and bound-only hosts, which `set-unified composefs` only binds after probing
 *    reflinks). Under `reflink-required` reflinks are probed before anything is fetched;
 * 6. **deploy** with the real `ostree admin deploy --os <stateroot> --origin-file F <commit>`,
 *    origin `[origin] container-image-reference=ostree-unverified-registry:NAME` (or
 *    `ostree-unverified-image:oci:DIR[:TAG]`), as bootc writes it.
 *
 * Staging. bootc stages (`ostree admin deploy --stage`; the deployment is finalized at
 * shutdown), and so does this module when ROOT is `/` on a booted ostree system
 * (`/run/ostree-booted`). ostree refuses to stage on a system that is not booted, which is what
 * any other ROOT is (an installed disk, a test tree), so there the deployment is written at once
 * as the new default. bootc's retention is kept in both cases: the booted deployment stays as the
 * rollback, the new one becomes the default, an older rollback and a pending (not yet booted)
 * deployment are dropped; pinned deployments and other stateroots are kept. On an unbooted ROOT
 * ostree only knows the default deployment (its merge deployment), so deployments queued ahead
 * of the booted one are undeployed first and the booted one is then ostree's merge deployment
 * (its `/etc` and kernel arguments carry over, as when bootc stages).
 *
 * Registries on loopback (`localhost`, 127.0.0.0/8, `[::1]`) are reached with
 * `--src-tls-verify=false` (`--tls-verify=false` for inspect): a local test or mirror registry
 * serves plain HTTP, and loopback traffic does not leave the machine. Every other registry is
 * verified as skopeo's configuration says.
 *
 * Signatures are not verified: an origin of `ostree-image-signed:` or `ostree-remote-image:`
 * is followed as its unverified image, the new origin is `ostree-unverified-*`, and the result
 * carries a warning saying so.
 *
 * Failure order: nothing is written before the source answered and reflinks were probed; a pull,
 * import, containers-storage or synthesis failure leaves no new deployment and no new ostree ref
 * (the store writes its ref last); a failed `ostree admin deploy` leaves the synthesized image
 * (its ref) but no deployment; the pull directory is removed in every case.
 *
 * On unified hosts (bootc.json unified ≠ disabled) the image is also rebuilt from composefs in
 * bootc's containers-storage (`ROOT/sysroot/ostree/bootc/storage`) by
 * {@linkcode exportComposefsImageToCStorage}, under the same copy policy, before the synthesis;
 * it is named as the registry names it. Native composefs hosts are refused (not in this
 * version).
 *
 * @module
 */

import {
  close,
  closeQuietly,
  ensureDirAt,
  O,
  openAt,
  openDir,
  openDirAt,
  writeAll,
} from "../../ffi/fs.ts";
import { readUnifiedFlags, type UnifiedFlags } from "../host/flags.ts";
import { detectHostKind } from "../host/kind.ts";
import { HOST_PATHS, HostRoot } from "../host/root.ts";
import { sha256Digest } from "../oci/digest.ts";
import { OciError } from "../oci/errors.ts";
import { hostPlatform, OciLayout, type ResolvedImage } from "../oci/layout.ts";
import { isIndexMediaType, parseIndex, parseManifest } from "../oci/manifest.ts";
import { ReflinkUnsupportedError } from "../reflink/errors.ts";
import type { CopyPolicy } from "../reflink/place.ts";
import { probeReflinkPath } from "../reflink/probe.ts";
import {
  bootcTagFor,
  type ImportedImage,
  importResolvedImage,
  manifestStreamName,
  parseOciLayoutRef,
  tagImage,
} from "../stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CStorage } from "../stores/cstorage/mod.ts";
import { makePullDir } from "./pull_dir.ts";
import {
  type Deployment,
  readDeployments,
  type SysrootDeployments,
} from "../stores/ostree/deployments.ts";
import { OstreeError, SysrootError } from "../stores/ostree/errors.ts";
import { parseImageCommitMetadata, parseOstreeImageReference } from "../stores/ostree/image.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import {
  type CStorageExportResult,
  exportComposefsImageToCStorage,
} from "./composefs_to_cstorage.ts";
import { type SynthesisResult, synthesizeOstreeCommit } from "./composefs_to_ostree.ts";
import { ImageReferenceError, PipelineError } from "./errors.ts";
import { NO_PROGRESS, type Progress } from "./progress.ts";

/** The host cannot be upgraded by unistore (not bound, native composefs, not a bootc host). */
export class UpgradeRefusedError extends PipelineError {
  override name = "UpgradeRefusedError";
}

/** skopeo or ostree failed: the message holds the command line, its exit code and its stderr. */
export class ExternalCommandError extends PipelineError {
  override name = "ExternalCommandError";
  /** The program's exit code. */
  readonly code: number;
  /** Its standard error, trimmed. */
  readonly stderr: string;

  constructor(commandLine: string, code: number, stderr: string) {
    super(commandLine, `exited with code ${code}: ${stderr.trim() || "(no output on stderr)"}`);
    this.code = code;
    this.stderr = stderr.trim();
  }
}

/**
 * The layout tag a pull writes into its temporary OCI layout. Only this module reads it back;
 * changing it is harmless as long as pull and read agree.
 */
const PULL_TAG = "unistore";

/** Where the new image comes from. */
export type UpgradeSource =
  | {
    kind: "registry";
    /** `quay.io/example/os:42` (or `…@sha256:…`). */
    name: string;
    /** `docker://NAME`: what the ostree image ref is named after. */
    imageReference: string;
    /** `ostree-unverified-registry:NAME`: the new origin's `container-image-reference`. */
    originReference: string;
    /** The registry is on loopback: reached without TLS verification. */
    loopback: boolean;
  }
  | {
    kind: "oci";
    /** Absolute path of the layout. */
    dir: string;
    tag?: string;
    /** `oci:DIR[:TAG]`. */
    imageReference: string;
    /** `ostree-unverified-image:oci:DIR[:TAG]`. */
    originReference: string;
  };

/** The image as the source serves it now. */
export interface SourceImage {
  manifestDigest: string;
  configDigest: string;
}

/** The deployment an upgrade compares with (the one the host boots next, short of a new one). */
export interface QueuedDeployment {
  /** `staged`, `pending` (a non-staged deployment ahead of the booted one), or `booted`. */
  slot: "staged" | "pending" | "booted";
  stateroot: string;
  checksum: string;
  serial: number;
  /** Its origin's `container-image-reference`, when it has one. */
  originReference: string | null;
  /** From the commit's image metadata; null when the commit is not an image commit. */
  manifestDigest: string | null;
  configDigest: string | null;
  /** The commit carries `ostree-ext.composefs-synthesized = true`. */
  synthesized: boolean;
}

/** What {@linkcode checkForUpgrade} found. */
export interface UpgradeCheck {
  source: UpgradeSource;
  /** The source image now. */
  image: SourceImage;
  /** The deployment compared with. */
  queued: QueuedDeployment;
  /** The booted deployment (`<checksum>.<serial>`), or null on a root booted into none. */
  booted: string | null;
  /** The source serves another image than the queued deployment has (or another origin). */
  updateAvailable: boolean;
  /** Same image, but the queued commit was not synthesized from composefs: upgrade re-stages. */
  restageNeeded: boolean;
  /** One line each: signatures not verified, no booted deployment, ... */
  warnings: string[];
}

/** How the new deployment was written. */
export type DeployMode = "staged" | "deployed";

/** What {@linkcode upgradeHost} did. */
export interface UpgradeResult {
  check: UpgradeCheck;
  /** `up-to-date`: nothing was changed; `deployed`: a new deployment was written or staged. */
  status: "up-to-date" | "deployed";
  /** `skopeo copy` ran (false for `oci:` sources and images composefs already held). */
  pulled: boolean;
  /** The composefs import (null when composefs already held the image). */
  composefs: ImportedImage | null;
  /** The ostree synthesis. */
  synthesis: SynthesisResult | null;
  /** The new deployment. */
  deployment: {
    mode: DeployMode;
    stateroot: string;
    checksum: string;
    serial: number;
    /** Deployments undeployed before the deploy (pending ones, replaced as bootc replaces them). */
    replaced: string[];
  } | null;
  /** The export into bootc's containers-storage (null on bound-only hosts: not participating). */
  containersStorage: CStorageExportResult | null;
  /** The copy policy the synthesis ran under. */
  policy: CopyPolicy;
}

/** Options of {@linkcode checkForUpgrade} and {@linkcode upgradeHost}. */
export interface UpgradeOptions {
  /** The host root (`--root`; `/` on a real host). */
  root: string;
  /** `--image REF`; default the booted deployment's origin. */
  image?: string;
  /** Stages of the work (pull, composefs import, ostree synthesis, deploy). */
  progress?: Progress;
  /** Program paths; default `skopeo` and `ostree` on PATH. */
  tools?: { skopeo?: string; ostree?: string };
  /** Override the staging decision (default: stage only on `/` of a booted ostree system). */
  stage?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Image references

const OTHER_TRANSPORTS = [
  "containers-storage:",
  "oci-archive:",
  "docker-archive:",
  "docker-daemon:",
  "dir:",
  "ostree:",
  "sif:",
  "tarball:",
];

/**
 * True when the registry of `name` (a docker reference without transport) is on loopback:
 * `localhost`, an IPv4 address in 127.0.0.0/8, or `[::1]`, with or without a port.
 *
 * @example
 * ```ts
 * isLoopbackRegistry("127.0.0.1:5000/os:1"); // true
 * isLoopbackRegistry("quay.io/example/os:1"); // false
 * isLoopbackRegistry("localhost/os"); // true
 * ```
 */
export function isLoopbackRegistry(name: string): boolean {
  const slash = name.indexOf("/");
  if (slash < 0) return false; // docker.io/library/NAME
  const host = name.slice(0, slash);
  const bare = host.startsWith("[")
    ? host.slice(0, host.indexOf("]") + 1)
    : host.replace(/:\d+$/, "");
  if (bare === "localhost" || bare === "[::1]") return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(bare);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

function registrySource(name: string, given: string): UpgradeSource {
  if (name === "" || /\s/.test(name) || name.includes("://")) {
    throw new ImageReferenceError(given, "expected a registry image name like quay.io/x/os:42");
  }
  return {
    kind: "registry",
    name,
    imageReference: `docker://${name}`,
    originReference: `ostree-unverified-registry:${name}`,
    loopback: isLoopbackRegistry(name),
  };
}

function ociSource(ref: string, given: string): UpgradeSource {
  const { dir, tag } = parseOciLayoutRef(ref);
  if (dir === "") throw new ImageReferenceError(given, "expected oci:DIR[:TAG]");
  // The origin must name the layout wherever unistore was started from.
  const abs = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`.replace(/\/\.\//g, "/");
  const imageReference = `oci:${abs}${tag !== undefined ? `:${tag}` : ""}`;
  return {
    kind: "oci",
    dir: abs,
    tag,
    imageReference,
    originReference: `ostree-unverified-image:${imageReference}`,
  };
}

/**
 * The source named by `--image REF`: `docker://NAME`, `registry:NAME`, `oci:DIR[:TAG]`, an
 * ostree-ext reference (`ostree-unverified-registry:NAME`, …), or a bare registry name.
 *
 * @throws {ImageReferenceError} for other transports (containers-storage:, dir:, …) and
 *   malformed references.
 * @example
 * ```ts
 * parseUpgradeImage("quay.io/example/os:42").originReference;
 * // "ostree-unverified-registry:quay.io/example/os:42"
 * parseUpgradeImage("oci:/srv/os:v2").imageReference; // "oci:/srv/os:v2"
 * ```
 */
export function parseUpgradeImage(ref: string): UpgradeSource {
  if (ref.startsWith("docker://")) return registrySource(ref.slice("docker://".length), ref);
  if (ref.startsWith("registry:")) return registrySource(ref.slice("registry:".length), ref);
  if (ref.startsWith("oci:")) return ociSource(ref, ref);
  if (ref.startsWith("ostree-")) return sourceFromOrigin(ref).source;
  const other = OTHER_TRANSPORTS.find((t) => ref.startsWith(t));
  if (other) {
    throw new ImageReferenceError(
      ref,
      `expected a docker://, oci: or bare registry reference, found the ${
        other.slice(0, -1)
      } transport, which upgrade does not pull from`,
    );
  }
  return registrySource(ref, ref);
}

/**
 * The source of an origin's `container-image-reference`, its ostree-ext prefix taken off as
 * ostree-ext parses it; `signed` names the signature check that is not done (null when the
 * origin was unverified already).
 *
 * @throws {ImageReferenceError} when the reference does not parse or names a transport upgrade
 *   does not pull from.
 */
export function sourceFromOrigin(
  containerImageReference: string,
): { source: UpgradeSource; signed: string | null } {
  let parsed;
  try {
    parsed = parseOstreeImageReference(containerImageReference);
  } catch (e) {
    if (!(e instanceof OstreeError)) throw e;
    throw new ImageReferenceError(containerImageReference, e.message, { cause: e });
  }
  const signed = parsed.sigverify === "ostree-unverified-image"
    ? null
    : parsed.sigverify === "ostree-remote-image"
    ? `ostree remote ${parsed.remote}`
    : "containers policy";
  if (parsed.transport === "registry") {
    return { source: registrySource(parsed.name, containerImageReference), signed };
  }
  if (parsed.transport === "oci") {
    return { source: ociSource(`oci:${parsed.name}`, containerImageReference), signed };
  }
  throw new ImageReferenceError(
    containerImageReference,
    `expected a registry or oci: image, found the ${parsed.transport} transport; ` +
      `give --image docker://… or --image oci:…`,
  );
}

// ---------------------------------------------------------------------------------------------
// External programs

async function runTool(
  argv: string[],
): Promise<{ stdout: Uint8Array; stderr: string }> {
  const commandLine = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a)))
    .join(" ");
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ExternalCommandError(commandLine, 127, `${argv[0]}: command not found`);
    }
    throw e;
  }
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new ExternalCommandError(commandLine, out.code, stderr);
  return { stdout: out.stdout, stderr };
}

/** `docker://NAME` with the tag or digest replaced by `@digest`. */
function pinnedName(name: string, digest: string): string {
  const at = name.indexOf("@");
  if (at >= 0) return `${name.slice(0, at)}@${digest}`;
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return `${colon > slash ? name.slice(0, colon) : name}@${digest}`;
}

/** The tag a registry image is given in composefs: its name, unless it is pinned by digest. */
function composefsTagOf(source: UpgradeSource): string | null {
  return source.kind === "registry" && !source.name.includes("@") ? source.name : null;
}

const JSON_DECODER = new TextDecoder("utf-8", { fatal: true });

/**
 * The manifest a registry serves for `source` now: `skopeo inspect --raw`, and for a manifest
 * list or OCI index a second inspect of this machine's platform entry.
 */
async function inspectRegistry(
  skopeo: string,
  source: Extract<UpgradeSource, { kind: "registry" }>,
): Promise<SourceImage> {
  const tls = source.loopback ? ["--tls-verify=false"] : [];
  const raw = async (name: string) =>
    (await runTool([skopeo, "inspect", "--raw", ...tls, `docker://${name}`])).stdout;
  let bytes = await raw(source.name);
  let where = `docker://${source.name}`;
  const doc = parseJsonObject(bytes, where);
  // An OCI index may leave out its mediaType; its manifests array tells it from a manifest.
  if (isIndexMediaType(doc.mediaType as string | undefined) || Array.isArray(doc.manifests)) {
    const index = parseIndex(bytes, where);
    const want = hostPlatform();
    const entry = index.manifests.length === 1
      ? index.manifests[0]
      : index.manifests.find((m) =>
        m.platform?.os === want.os && m.platform?.architecture === want.architecture
      );
    if (!entry) {
      throw new ImageReferenceError(
        where,
        `expected a manifest for ${want.os}/${want.architecture} in the manifest list, found ${
          index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`).join(", ")
        }`,
      );
    }
    where = `docker://${pinnedName(source.name, entry.digest)}`;
    bytes = await raw(pinnedName(source.name, entry.digest));
  }
  const manifest = parseManifest(bytes, where);
  return { manifestDigest: sha256Digest(bytes), configDigest: manifest.config.digest };
}

function parseJsonObject(bytes: Uint8Array, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(JSON_DECODER.decode(bytes));
  } catch (e) {
    throw new ImageReferenceError(where, `expected a JSON manifest: ${(e as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ImageReferenceError(where, "expected a JSON object as manifest");
  }
  return v as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// The host

interface HostState {
  root: HostRoot;
  flags: UnifiedFlags;
  policy: CopyPolicy;
  /** The booted deployment, or the default one when the root is booted into none. */
  current: Deployment;
  booted: Deployment | null;
  /** Deployments of the stateroot ahead of `current` (not staged): a reboot would pick one. */
  pending: Deployment[];
  staged: Deployment | null;
  queued: Deployment;
  warnings: string[];
}

/**
 * The deployments as ostree lists them, without asking which one is booted (`cmdline` is
 * pointed at an empty file): what ostree's own list looks like after it wrote a deployment.
 */
function listDeployments(root: HostRoot): Deployment[] {
  return readDeployments({ root: root.dir, cmdline: "/dev/null" }).deployments;
}

/**
 * The host's deployments with the booted one. Writing deployments makes ostree switch
 * `ostree/boot.B` to the other boot version and remove the old one, so after a deployment was
 * written (not staged) the booted `ostree=` karg names a path that is gone until the next boot;
 * libostree knows the booted deployment by the inode of `/` then, a host root does not. Rather
 * than guess (the deploy drops deployments that are neither booted nor new), upgrade refuses.
 */
function readHostDeployments(root: HostRoot): SysrootDeployments {
  try {
    return readDeployments({ root: root.dir });
  } catch (e) {
    if (!(e instanceof SysrootError)) throw e;
    try {
      listDeployments(root);
    } catch {
      throw e; // the sysroot itself is broken, not only the karg
    }
    throw new UpgradeRefusedError(
      root.procCmdline,
      `cannot tell which deployment is booted: ${e.message}. Deployments were written since ` +
        "this boot (an upgrade that is not booted yet); boot the default deployment first",
      { cause: e },
    );
  }
}

/** Checks the host can be upgraded by unistore and finds its deployments. */
function readHost(rootDir: string): HostState {
  const root = new HostRoot(rootDir);
  const kind = detectHostKind(root);
  if (kind.kind === "composefs") {
    throw new UpgradeRefusedError(
      root.dir,
      `native composefs host (${kind.reason}): unistore upgrade handles ostree hosts bound to ` +
        "composefs in this version; use bootc upgrade",
    );
  }
  if (kind.kind === "none") {
    throw new UpgradeRefusedError(root.dir, `not a bootc host: ${kind.reason}`);
  }
  const flags = readUnifiedFlags(root);
  if (flags.binding === "disabled") {
    throw new UpgradeRefusedError(
      root.ostreeRepo,
      "the ostree repository is not bound to composefs, so unistore has no pipeline for this " +
        "host: run `unistore set-unified composefs` first (plain ostree hosts upgrade with " +
        "`bootc upgrade`)",
    );
  }
  const s = readHostDeployments(root);
  const warnings: string[] = [];
  let current = s.booted;
  if (current === null) {
    current = s.deployments.find((d) => !d.staged) ?? null;
    if (current === null) {
      throw new UpgradeRefusedError(root.sysroot, "expected a deployment to upgrade, found none");
    }
    warnings.push(
      `no booted deployment (${root.procCmdline} names none): upgrading the default ` +
        `deployment ${current.checksum}.${current.serial}`,
    );
  }
  const same = s.deployments.filter((d) => d.stateroot === current.stateroot);
  const staged = same.find((d) => d.staged) ?? null;
  const pending = same.filter((d) => !d.staged && d.index < current.index && !d.pinned);
  return {
    root,
    flags,
    policy: flags.unified === "enabled-with-copy" ? "reflink-or-copy" : "reflink-required",
    current,
    booted: s.booted,
    pending,
    staged,
    queued: staged ?? pending[0] ?? current,
    warnings,
  };
}

function describeQueued(root: HostRoot, d: Deployment, slot: QueuedDeployment["slot"]) {
  let manifestDigest: string | null = null;
  let configDigest: string | null = null;
  let synthesized = false;
  using repo = OstreeRepo.open(root.ostreeRepo);
  const commit = repo.readCommit(d.checksum);
  try {
    const meta = parseImageCommitMetadata(
      commit.metadata,
      `${root.ostreeRepo}: commit ${d.checksum}`,
    );
    manifestDigest = meta.manifestDigest;
    synthesized = meta.composefsSynthesized;
    configDigest = parseManifest(new TextEncoder().encode(meta.manifest), `commit ${d.checksum}`)
      .config.digest;
  } catch (e) {
    // A deployment of a plain ostree commit has no image: any image is an update.
    if (!(e instanceof OstreeError) && !(e instanceof OciError)) throw e;
  }
  return {
    slot,
    stateroot: d.stateroot,
    checksum: d.checksum,
    serial: d.serial,
    originReference: d.containerImageReference ?? null,
    manifestDigest,
    configDigest,
    synthesized,
  } satisfies QueuedDeployment;
}

function resolveSource(host: HostState, opts: UpgradeOptions): UpgradeSource {
  if (opts.image !== undefined) return parseUpgradeImage(opts.image);
  const origin = host.current.containerImageReference;
  if (origin === undefined) {
    throw new ImageReferenceError(
      `${host.current.checksum}.${host.current.serial}`,
      "the booted deployment's origin has no container-image-reference; give --image",
    );
  }
  const { source, signed } = sourceFromOrigin(origin);
  if (signed !== null) {
    host.warnings.push(
      `the origin asks for signature verification (${signed}), which unistore does not do: ` +
        `the image is pulled unverified and the new origin is ${source.originReference}`,
    );
  }
  return source;
}

async function sourceImage(source: UpgradeSource, skopeo: string): Promise<SourceImage> {
  if (source.kind === "registry") return await inspectRegistry(skopeo, source);
  const layout = await OciLayout.open(source.dir);
  const image = await layout.resolveImage(source.tag);
  return { manifestDigest: image.manifestDigest, configDigest: image.configDigest };
}

async function check(host: HostState, opts: UpgradeOptions): Promise<UpgradeCheck> {
  const source = resolveSource(host, opts);
  const image = await sourceImage(source, opts.tools?.skopeo ?? "skopeo");
  const slot = host.queued === host.staged
    ? "staged"
    : host.queued === host.current
    ? "booted"
    : "pending";
  const queued = describeQueued(host.root, host.queued, slot);
  const sameImage = queued.manifestDigest === image.manifestDigest ||
    (queued.configDigest !== null && queued.configDigest === image.configDigest);
  const sameOrigin = queued.originReference === source.originReference;
  const updateAvailable = !sameImage || !sameOrigin;
  return {
    source,
    image,
    queued,
    booted: host.booted ? `${host.booted.checksum}.${host.booted.serial}` : null,
    updateAvailable,
    restageNeeded: !updateAvailable && !queued.synthesized,
    warnings: host.warnings,
  };
}

/**
 * `unistore upgrade --check`: what the source serves now against the queued deployment.
 * Changes nothing (reads the host, runs `skopeo inspect --raw` or reads the layout).
 *
 * @throws {UpgradeRefusedError} on a host that is not bound to composefs, a native composefs
 *   host, or a root that is not a bootc host.
 * @throws {ExternalCommandError} with skopeo's message when the registry cannot be read.
 * @example
 * ```ts ignore
 * const c = await checkForUpgrade({ root: "/" });
 * if (c.updateAvailable) console.log(`update: ${c.image.manifestDigest}`);
 * ```
 */
export async function checkForUpgrade(opts: UpgradeOptions): Promise<UpgradeCheck> {
  return await check(readHost(opts.root), opts);
}

// ---------------------------------------------------------------------------------------------
// The upgrade

/**
 * bootc's containers-storage of an ostree host, `sysroot/ostree/bootc/storage`, its missing
 * directories created (0700, as bootc creates them) below the sysroot through fds.
 */
function ensureBootcStorage(root: HostRoot): string {
  const parts = HOST_PATHS.ostreeContainersStorage.split("/").slice(1); // below sysroot/
  let fd = openDir(root.sysroot);
  try {
    for (const part of parts) {
      ensureDirAt(fd, part, 0o700);
      const next = openDirAt(fd, part);
      close(fd);
      fd = next;
    }
  } finally {
    close(fd);
  }
  return root.containersStorage("ostree");
}

/** Writes `text` as the new file `name` in `dir` (O_EXCL, O_NOFOLLOW). */
function writeNewFile(dir: string, name: string, text: string): void {
  const dirfd = openDir(dir);
  try {
    const fd = openAt(
      dirfd,
      name,
      O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | O.CLOEXEC,
      0o644,
    );
    try {
      writeAll(fd, new TextEncoder().encode(text));
    } finally {
      close(fd);
    }
  } finally {
    closeQuietly(dirfd);
  }
}

/** On `/` of a booted ostree system ostree can stage; anywhere else it refuses to. */
function canStage(root: HostRoot): boolean {
  if (root.dir !== "/") return false;
  try {
    Deno.statSync("/run/ostree-booted");
    return true;
  } catch {
    return false;
  }
}

/** The origin file bootc writes for an image (`crates/ostree-ext/src/container/deploy.rs`). */
export function originFileText(source: UpgradeSource): string {
  return `[origin]\ncontainer-image-reference=${source.originReference}\n`;
}

/**
 * `unistore upgrade [--image REF]`: pulls the image into composefs, synthesizes its ostree
 * commit by reflink and deploys it with `ostree admin deploy` (see the module doc for every
 * step, the staging rule and the failure order). Returns `status: "up-to-date"` without
 * changing anything when the queued deployment already is a synthesized commit of the image.
 *
 * @throws {UpgradeRefusedError} as {@linkcode checkForUpgrade}.
 * @throws {ReflinkUnsupportedError} under `reflink-required` on a filesystem without reflinks,
 *   before anything is fetched or written.
 * @throws {ExternalCommandError} when skopeo or ostree fail (skopeo's message for a bad
 *   reference); no deployment is added then.
 * @example
 * ```ts ignore
 * const r = await upgradeHost({ root: "/", progress });
 * if (r.status === "deployed") console.log(r.deployment!.checksum);
 * ```
 */
export async function upgradeHost(opts: UpgradeOptions): Promise<UpgradeResult> {
  const progress = opts.progress ?? NO_PROGRESS;
  const skopeo = opts.tools?.skopeo ?? "skopeo";
  const ostree = opts.tools?.ostree ?? "ostree";
  const host = readHost(opts.root);
  const { root, policy } = host;
  const c = await check(host, opts);
  if (!c.updateAvailable && !c.restageNeeded) {
    return {
      check: c,
      status: "up-to-date",
      pulled: false,
      composefs: null,
      synthesis: null,
      deployment: null,
      containersStorage: null,
      policy,
    };
  }

  if (policy === "reflink-required") {
    // Fail before fetching: composefs lives on the sysroot's filesystem (spec §9.1).
    const probe = probeReflinkPath(root.ostreeRepo, root.sysroot);
    if (!probe.supported) {
      throw new ReflinkUnsupportedError(
        probe.code ?? "EOPNOTSUPP",
        `${root.ostreeRepo} (${probe.filesystem}) from ${root.sysroot} (${probe.sourceFilesystem})`,
        probe.reason,
      );
    }
  }

  using pullDir = makePullDir(root.ostreeRepo);
  using cfs = await ComposefsRepo.ensure(root.composefsRepo);
  const source = c.source;
  const id = source.imageReference;

  // Pull (unless composefs has the image already) and import into composefs.
  let pulled = false;
  let imported: ImportedImage | null = null;
  let manifestDigest = c.image.manifestDigest;
  const tag = composefsTagOf(source);
  if (
    source.kind === "registry" && cfs.streamObjectId(manifestStreamName(manifestDigest)) !== null
  ) {
    for (const t of [tag, bootcTagFor(manifestDigest)]) if (t) tagImage(cfs, manifestDigest, t);
  } else {
    let layout: OciLayout;
    let image: ResolvedImage;
    if (source.kind === "registry") {
      progress.begin("pull", "Pulling image", id, { steps: 1 });
      const tls = source.loopback ? ["--src-tls-verify=false"] : [];
      await runTool([
        skopeo,
        "copy",
        "--quiet",
        ...tls,
        `docker://${pinnedName(source.name, manifestDigest)}`,
        `oci:${pullDir.path}/layout:${PULL_TAG}`,
      ]);
      pulled = true;
      progress.advance({ steps: 1 });
      progress.end();
      layout = await OciLayout.open(`${pullDir.path}/layout`);
      image = await layout.resolveImage(PULL_TAG);
    } else {
      layout = await OciLayout.open(source.dir);
      image = await layout.resolveImage(source.tag);
    }
    // skopeo converts Docker manifests to OCI: the pulled digest is the one composefs keys by.
    manifestDigest = image.manifestDigest;
    const sizes = image.manifest.layers.map((l) => l.size);
    progress.begin("composefs-import", "Importing into composefs", id, {
      bytes: sizes.reduce((a, b) => a + b, 0),
      steps: sizes.length,
    });
    imported = await importResolvedImage(cfs, layout, image, {
      tagAs: tag,
      onEvent: (e) => {
        if (e.kind === "layer-start") return;
        progress.advance({ bytes: sizes[e.index], steps: 1 }, {
          id: e.diffId,
          description: `layer ${e.index + 1}/${sizes.length}`,
        });
      },
    });
    progress.end();
  }

  let containersStorage: CStorageExportResult | null = null;
  if (host.flags.binding === "unified") {
    progress.begin("containers-storage", "Exporting to containers-storage", id, { steps: 1 });
    using store = await CStorage.open(ensureBootcStorage(root), { create: true });
    containersStorage = await exportComposefsImageToCStorage(cfs, store, manifestDigest, {
      policy,
      names: tag ? [tag] : undefined,
    });
    progress.advance({ bytes: containersStorage.stats.clonedBytes, steps: 1 });
    progress.end();
  }

  progress.begin("ostree-synthesis", "Synthesizing the ostree commit", id, { steps: 1 });
  let synthesis: SynthesisResult;
  {
    using repo = OstreeRepo.open(root.ostreeRepo);
    synthesis = await synthesizeOstreeCommit(cfs, repo, manifestDigest, {
      policy,
      imageReference: source.imageReference,
    });
  }
  progress.advance({ bytes: synthesis.stats.bytes, steps: 1 });
  progress.end();

  progress.begin("deploy", "Deploying", synthesis.commit, { steps: 1 });
  const stage = opts.stage ?? canStage(root);
  writeNewFile(pullDir.path, "origin", originFileText(source));
  const stateroot = host.current.stateroot;
  const sysrootArg = root.dir === "/" && stage ? [] : [`--sysroot=${root.sysroot}`];
  const replaced: string[] = [];
  if (!stage) {
    // ostree's own list (BLS order) knows no staged deployment on an unbooted root.
    const listed = listDeployments(root).filter((d) => !d.staged);
    const indices = host.pending
      .map((p) => listed.findIndex((d) => d.checksum === p.checksum && d.serial === p.serial))
      .filter((i) => i >= 0)
      .sort((a, b) => b - a);
    for (const i of indices) {
      await runTool([ostree, "admin", "undeploy", ...sysrootArg, String(i)]);
      replaced.push(`${listed[i].checksum}.${listed[i].serial}`);
    }
  }
  await runTool([
    ostree,
    "admin",
    "deploy",
    ...sysrootArg,
    `--os=${stateroot}`,
    `--origin-file=${pullDir.path}/origin`,
    ...(stage ? ["--stage"] : []),
    synthesis.commit,
  ]);
  const after = listDeployments(root)
    .filter((d) => d.stateroot === stateroot && d.checksum === synthesis.commit)
    .sort((a, b) => a.index - b.index)[0];
  if (!after) {
    throw new PipelineError(
      root.sysroot,
      `ostree admin deploy succeeded but lists no deployment of ${synthesis.commit}`,
    );
  }
  progress.advance({ steps: 1 });
  progress.end();

  return {
    check: c,
    status: "deployed",
    pulled,
    composefs: imported,
    synthesis,
    deployment: {
      mode: stage ? "staged" : "deployed",
      stateroot,
      checksum: after.checksum,
      serial: after.serial,
      replaced,
    },
    containersStorage,
    policy,
  };
}
