/**
 * Hosts to crash: an ostree host built once per test by the real tools (tests/fixtures/host),
 * then copied for every case with `cp -a --reflink=auto`, so that each fault case starts from
 * the same bytes in a second instead of rebuilding the host. The copy keeps hardlinks (the
 * deployments' checkouts share inodes with the repository, as ostree made them) and xattrs;
 * `chattr +i` on deployment dirs is not copied, so a case's copy can be removed again.
 *
 * unistore runs as a process (`deno run -A main.ts --root COPY ...`), like a user runs it, with
 * the fault-point variables of lib/fault/fault_point.ts when a case asks. A killed run can leave
 * what a power cut leaves behind that is not on disk: podman's overlay mounts below the store
 * and its run root in /tmp. {@linkcode CrashHost.cleanupAfterKill} takes those away (a reboot
 * would), never touching anything on the host's filesystem.
 *
 * @module
 */

import { HostRoot } from "../../lib/host/root.ts";
import { runrootFor } from "../../lib/pipeline/podman_pull.ts";
import { FAULT_AT_ENV, FAULT_TRACE_ENV } from "../../lib/fault/fault_point.ts";
import {
  buildBootableImage,
  buildComposefsHost,
  buildOstreeHost,
  type LoopbackRegistry,
  OSTREE_HOST_TOOLS,
} from "../fixtures/host/mod.ts";
import { run, runOk, type RunResult } from "../harness/run.ts";
import type { Tool } from "../harness/tools.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Every program the crash tests run, with its Debian package. */
export const CRASH_TOOLS: readonly Tool[] = [
  ...OSTREE_HOST_TOOLS,
  { bin: "podman", pkg: "podman" },
  { bin: "chattr", pkg: "e2fsprogs" },
  { bin: "fsfreeze", pkg: "util-linux" },
];

/** Runs unistore as a process; `env` is added to the inherited environment. */
export function unistore(
  root: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<RunResult> {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, "--root", root, ...args], { env });
}

/**
 * Starts unistore in a session of its own (`setsid`), so that {@linkcode killGroup} takes down
 * podman and anything else it started, as a power cut would.
 */
export function spawnUnistoreGroup(root: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command("setsid", {
    args: [Deno.execPath(), "run", "-A", "--quiet", MAIN, "--root", root, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * SIGKILL to the whole process group led by `child` (spawned by {@linkcode spawnUnistoreGroup}),
 * then waits until none of its processes runs any more, calling `whileWaiting` now and then. A
 * process inside a system call finishes it first: `ostree admin deploy` killed inside FIFREEZE
 * freezes the filesystem after the kill (a thaw made before would be undone), and a process
 * blocked on a frozen filesystem only dies once it is thawed.
 */
export async function killGroup(
  child: Deno.ChildProcess,
  whileWaiting: () => Promise<void> = async () => {},
): Promise<void> {
  try {
    Deno.kill(-child.pid, "SIGKILL");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e; // already gone
  }
  for (let round = 0; groupRunning(child.pid); round++) {
    if (round >= 1500) throw new Error(`process group ${child.pid} survived SIGKILL for 30 s`);
    if (round % 25 === 24) await whileWaiting();
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** True while a process of group `pgid` is alive (zombies are dead: they only await reaping). */
function groupRunning(pgid: number): boolean {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z") return true;
  }
  return false;
}

async function mountPoints(): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").map((l) => l.split(" ")[4]).filter((m) => m !== undefined);
}

/** Mount points at or below `dir`, deepest last (as /proc/self/mountinfo lists them). */
export async function mountsBelow(dir: string): Promise<string[]> {
  return (await mountPoints()).filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** The mount point of the filesystem holding `path` (the longest one above it). */
async function mountOf(path: string): Promise<string> {
  return (await mountPoints()).filter((m) => m === "/" || path === m || path.startsWith(`${m}/`))
    .sort((a, b) => b.length - a.length)[0];
}

/** One copy of the template: a host root a case may crash. */
export class CrashHost {
  constructor(readonly root: string, readonly bins: Record<string, string>) {}

  get repo(): string {
    return `${this.root}/sysroot/ostree/repo`;
  }

  get composefs(): string {
    return `${this.root}/sysroot/composefs`;
  }

  /** bootc's containers-storage (below composefs on native composefs hosts). */
  get store(): string {
    return new HostRoot(this.root).bootcContainersStorage();
  }

  get bootcJson(): string {
    return `${this.composefs}/bootc.json`;
  }

  /** `unistore --root ROOT args…`, killed at `faultAt` when given, tracing to `trace`. */
  run(args: string[], opts: { faultAt?: string; trace?: string } = {}): Promise<RunResult> {
    const env: Record<string, string> = {};
    if (opts.faultAt) env[FAULT_AT_ENV] = opts.faultAt;
    if (opts.trace) env[FAULT_TRACE_ENV] = opts.trace;
    return unistore(this.root, args, env);
  }

  /**
   * What a reboot clears after a kill: a frozen filesystem (`ostree admin deploy` freezes and
   * thaws it, and the process that would thaw it died with the session), podman's overlay
   * mounts below the host, its run root.
   */
  async cleanupAfterKill(): Promise<void> {
    await this.thaw();
    for (const m of (await mountsBelow(this.root)).reverse()) {
      await runOk(["umount", m]);
    }
    await Deno.remove(await runrootFor(this.store), { recursive: true }).catch(() => {});
  }

  /**
   * podman with the store's own run root (podman records the first one in its database and
   * refuses another); its mount of the store is taken down again after.
   */
  async podman(...args: string[]): Promise<RunResult> {
    const runroot = await runrootFor(this.store);
    try {
      return await runOk([
        this.bins.podman,
        "--root",
        this.store,
        "--runroot",
        runroot,
        "--storage-driver",
        "overlay",
        ...args,
      ], { env: { TMPDIR: runroot } });
    } finally {
      await this.cleanupAfterKill();
    }
  }

  /** Thaws the host's filesystem if it is frozen (`fsfreeze --unfreeze` fails when it is not). */
  async thaw(): Promise<void> {
    await run([this.bins.fsfreeze, "--unfreeze", await mountOf(this.root)]);
  }

  /**
   * Removes the copy, after the unmounts a killed run may need and `chattr -i` on deployments
   * made in it (ostree makes every deployment dir immutable).
   */
  async remove(): Promise<void> {
    await this.cleanupAfterKill();
    const list = (dir: string) => {
      try {
        return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) =>
          `${dir}/${e.name}`
        );
      } catch {
        return []; // no ostree deployments here (a composefs host)
      }
    };
    for (const os of list(`${this.root}/sysroot/ostree/deploy`)) {
      for (const d of list(`${os}/deploy`)) await runOk([this.bins.chattr, "-i", d]);
    }
    await Deno.remove(this.root, { recursive: true });
  }
}

/** Which kind of host a template is. */
export type TemplateKind = "ostree" | "composefs";

/** A host built once, copied per case. Dispose stops its registry. */
export class HostTemplate implements AsyncDisposable {
  #copies = 0;

  private constructor(
    readonly kind: TemplateKind,
    /** The template's host root (a case never writes to it). */
    readonly dir: string,
    /** Image names as the registry serves them (`127.0.0.1:PORT/unistore/os:N`), booted last. */
    readonly imageNames: string[],
    readonly registry: LoopbackRegistry,
    readonly bins: Record<string, string>,
    readonly base: string,
    readonly dispose: () => PromiseLike<void>,
  ) {}

  /**
   * Builds a two-deployment host of `kind` below `base` (v1 rollback, v2 booted) from small
   * bootable images (`bulkMiB` MiB of random bytes each, default 1, plus busybox), pushed to a
   * loopback registry that stays up for `podman pull` and `upgrade`. An ostree host is made by
   * the real ostree; a native composefs host has both images in its composefs repository.
   */
  static async build(
    base: string,
    bins: Record<string, string>,
    opts: { kind?: TemplateKind; bulkMiB?: number } = {},
  ): Promise<HostTemplate> {
    const kind = opts.kind ?? "ostree";
    const layout = `${base}/oci`;
    for (const v of ["1", "2"]) {
      await buildBootableImage(layout, {
        tag: `v${v}`,
        version: v,
        runnable: { bulkMiB: opts.bulkMiB ?? 1 },
      });
    }
    const images = [
      { ref: "unistore/os:1", layout: `${layout}:v1` },
      { ref: "unistore/os:2", layout: `${layout}:v2` },
    ];
    const dir = `${base}/template`;
    const host = kind === "ostree"
      ? await buildOstreeHost(dir, { images, booted: 1, bins })
      : await buildComposefsHost(dir, { images, booted: 1, bins });
    return new HostTemplate(
      kind,
      dir,
      host.images.map((i) => i.imageName),
      host.registry,
      bins,
      base,
      () => host[Symbol.asyncDispose](),
    );
  }

  /**
   * A fresh copy of the template as a host root named after `label`. podman's database in the
   * copied store (it records the graph root and run root it was created with, and refuses
   * others) is left out: podman makes a new one for the copy's paths.
   */
  async copy(label: string): Promise<CrashHost> {
    const root = `${this.base}/case-${++this.#copies}-${label.replace(/[^a-z0-9.-]+/gi, "_")}`;
    await runOk(["cp", "-a", "--reflink=auto", this.dir, root]);
    const host = new CrashHost(root, this.bins);
    await Deno.remove(`${host.store}/libpod`, { recursive: true }).catch(() => {});
    return host;
  }

  /** The template itself as a host, for preparing it (before any copy is made). */
  asHost(): CrashHost {
    return new CrashHost(this.dir, this.bins);
  }

  /**
   * Prepares the template for `upgrade`: unified by `set-unified full` (bootc.json, ostree
   * bound), then a v3 image built in `layoutDir` and pushed over the booted tag.
   */
  async readyForUpgrade(layoutDir: string): Promise<void> {
    const host = this.asHost();
    const unified = await host.run(["set-unified", "full"]);
    if (unified.code !== 0) {
      throw new Error(
        `set-unified full on the template failed: ${unified.stderr}${unified.stdout}`,
      );
    }
    await host.cleanupAfterKill();
    await buildBootableImage(layoutDir, { tag: "v3", version: "3", runnable: { bulkMiB: 1 } });
    await this.registry.push(layoutDir, "v3", "unistore/os:2");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
