/**
 * `unistore internals ...`: low-level tools for checking unistore against
 * the kernel and the other stores' own tools.
 *
 * @module
 */

import { AT, close, fstat, isType, O, openAt, read, S } from "../../ffi/fs.ts";
import { FsVerityHasher } from "../digest/fsverity.ts";
import { isHashAlgorithm, toHex } from "../digest/hash.ts";
import { probeReflink } from "../reflink/probe.ts";
import { HostRoot } from "../host/root.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { writeLayerTar } from "../stores/composefs/tar_layer.ts";
import { ostreeChecksumOfPath } from "../stores/ostree/checksum.ts";
import { CStorage, writeLayerTarFromStore } from "../stores/cstorage/mod.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const SUBCOMMANDS = `subcommands:
  probe-reflink PATH [--json]          exit 0 when reflinks work in PATH's filesystem, 1 when not
  fsverity FILE [--alg sha256|sha512]  print FILE's fs-verity digest (4096-byte blocks, no salt;
                                       default sha512, as bootc's composefs repository uses)
  ostree-checksum FILE                 print the ostree bare-mode checksum of FILE, computed from
                                       its own owner, mode, xattrs and content (ostree ls -C)
  cat-layer sha256:DIFFID [--from composefs|containers-storage]
                                       write the layer's exact uncompressed tar to stdout,
                                       reassembled from ROOT/sysroot/composefs (default) or
                                       from bootc's containers-storage (tar-split + diff/)`;

const HELP = {
  usage: "unistore internals SUBCOMMAND [ARGS]",
  summary: "Low-level checks of the filesystem and of unistore's digests.",
  details: SUBCOMMANDS,
};

function probeReflinkCommand(args: string[], ctx: CommandContext): number {
  const { values, positionals } = parseCommandArgs(args, {
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(
      "usage: unistore internals probe-reflink PATH [--json]\n\n" +
        "Clones a byte between two unnamed files in PATH's filesystem (PATH itself when it is a\n" +
        "directory, else its parent). Exit 0 when reflinks work, 1 when they do not.",
    );
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("probe-reflink takes exactly one PATH");
  const path = positionals[0];
  const fd = openAt(AT.FDCWD, path, O.RDONLY);
  let dirfd = fd;
  try {
    if (!isType(fstat(fd).mode, S.IFDIR)) {
      dirfd = openAt(AT.FDCWD, parentOf(path), O.RDONLY | O.DIRECTORY);
    }
    const p = probeReflink(dirfd);
    if (values.json) {
      ctx.out(JSON.stringify({
        path,
        supported: p.supported,
        filesystem: p.filesystem,
        code: p.code ?? null,
        reason: p.reason,
      }));
    } else if (p.supported) {
      ctx.out(`${path}: reflinks work (${p.filesystem})`);
    } else {
      ctx.out(`${path}: no reflinks (${p.filesystem}): ${p.reason} (${p.code})`);
    }
    return p.supported ? 0 : 1;
  } finally {
    if (dirfd !== fd) close(dirfd);
    close(fd);
  }
}

function parentOf(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function fsverityCommand(args: string[], ctx: CommandContext): number {
  const { values, positionals } = parseCommandArgs(args, {
    alg: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(
      "usage: unistore internals fsverity FILE [--alg sha256|sha512]\n\n" +
        "Prints FILE's fs-verity digest in hex, computed in userspace (4096-byte blocks, no\n" +
        "salt): the object name composefs gives the same bytes. Default algorithm: sha512.",
    );
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("fsverity takes exactly one FILE");
  const alg = values.alg ?? "sha512";
  if (!isHashAlgorithm(alg)) {
    throw new UsageError(`--alg: expected sha256 or sha512, found ${JSON.stringify(alg)}`);
  }
  const fd = openAt(AT.FDCWD, positionals[0], O.RDONLY);
  try {
    if (!isType(fstat(fd).mode, S.IFREG)) {
      throw new UsageError(`${positionals[0]}: not a regular file`);
    }
    const hasher = new FsVerityHasher(alg);
    const buf = new Uint8Array(1 << 20);
    for (;;) {
      const n = read(fd, buf);
      if (n === 0) break;
      hasher.update(buf.subarray(0, n));
    }
    ctx.out(toHex(hasher.digest()));
    return 0;
  } finally {
    close(fd);
  }
}

function ostreeChecksumCommand(args: string[], ctx: CommandContext): number {
  const { values, positionals } = parseCommandArgs(args, {
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(
      "usage: unistore internals ostree-checksum FILE\n\n" +
        "Prints the sha256 ostree gives FILE as a content object in a bare repository: the\n" +
        "file header (owner, mode, symlink target, sorted xattrs) and the content. FILE may be\n" +
        "a regular file or a symlink (not followed). Agrees with `ostree ls -C`.",
    );
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("ostree-checksum takes exactly one FILE");
  ctx.out(ostreeChecksumOfPath(positionals[0]));
  return 0;
}

async function catLayerCommand(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    from: { type: "string", default: "composefs" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    ctx.out(
      "usage: unistore internals cat-layer sha256:DIFFID [--from composefs|containers-storage]\n\n" +
        "Writes the layer's exact uncompressed tar to stdout; its sha256 is DIFFID (checked\n" +
        "after the last byte: a mismatch is an error, exit 1). From containers-storage every\n" +
        "file's CRC-64 is checked against the layer's tar-split too.",
    );
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("cat-layer takes exactly one DIFFID");
  const diffId = positionals[0];
  if (!/^sha256:[0-9a-f]{64}$/.test(diffId)) {
    throw new UsageError(`expected a diff_id sha256:<64 hex>, found ${JSON.stringify(diffId)}`);
  }
  const host = new HostRoot(ctx.root);
  if (values.from === "containers-storage") {
    using store = await CStorage.open(host.bootcContainersStorage(), { readOnly: true });
    const writer = Deno.stdout.writable.getWriter();
    try {
      await writeLayerTarFromStore(store, diffId, writer);
      await writer.close();
    } finally {
      writer.releaseLock();
    }
    return 0;
  }
  if (values.from !== "composefs") {
    throw new UsageError(
      `--from: expected composefs or containers-storage, found ${JSON.stringify(values.from)}`,
    );
  }
  using repo = await ComposefsRepo.open(host.composefsRepo, { readOnly: true });
  await writeLayerTar(repo, diffId, Deno.stdout.writable);
  return 0;
}

/** The `internals` command. */
export const internalsCommand: Command = {
  name: "internals",
  help: HELP,
  run(args, ctx) {
    const [sub, ...rest] = args;
    switch (sub) {
      case "probe-reflink":
        return Promise.resolve(probeReflinkCommand(rest, ctx));
      case "fsverity":
        return Promise.resolve(fsverityCommand(rest, ctx));
      case "ostree-checksum":
        return Promise.resolve(ostreeChecksumCommand(rest, ctx));
      case "cat-layer":
        return catLayerCommand(rest, ctx);
      case undefined:
      case "--help":
      case "-h":
        ctx.out(formatHelp(HELP));
        return Promise.resolve(sub === undefined ? 2 : 0);
      default:
        throw new UsageError(`unknown internals subcommand ${JSON.stringify(sub)}\n${SUBCOMMANDS}`);
    }
  },
};
