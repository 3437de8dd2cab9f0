/**
 * How the benchmark measures: whole processes timed from spawn to exit (Deno start-up
 * included, as a user running the command sees it), optionally under GNU `/usr/bin/time -v` for
 * the peak resident set size, with unistore's `--progress-fd` JSON Lines timestamped as they
 * arrive so that a run can be split into its stages; `df` for physical bytes; `sync` and a
 * settle pause between timed runs, because XFS finishes inode work in the background after big
 * writes and removals (specs/deno-platform.md §6).
 *
 * @module
 */

import { runOk } from "../tests/harness/run.ts";

/** GNU time (Debian package `time`): the only source of a child's peak RSS here. */
export const GNU_TIME = "/usr/bin/time";

/** One progress event and when it arrived, in ms after the process was spawned. */
export interface TimedEvent {
  atMs: number;
  event: Record<string, unknown>;
}

/** A finished, timed process. */
export interface TimedRun {
  cmd: string[];
  code: number;
  /** Wall time from spawn to exit. */
  ms: number;
  stdout: string;
  /** stderr without the progress JSON lines. */
  stderr: string;
  /** Progress events (when the command wrote them to stderr with `--progress-fd 2`). */
  events: TimedEvent[];
  /** Peak RSS in KiB of the process and its waited-for children (`maxRssOf`), when asked. */
  maxRssKiB: number | null;
  /**
   * CPU time (user + system) of the process and its waited-for children (`cpuMsOf`), when
   * asked: what the run cost the machine's cores, which the wall time hides when threads wait.
   */
  cpuMs: number | null;
  /**
   * With `peakRss`: the command's own RSS (VmRSS of the process GNU time runs) every
   * {@linkcode RSS_SAMPLE_MS}, to see which stage the memory grows in.
   */
  rssSamples: { atMs: number; kib: number }[];
}

/** How often {@linkcode timeProcess} samples the RSS of a `peakRss` run. */
export const RSS_SAMPLE_MS = 100;

/** VmRSS (KiB) of `pid`, or null when it is gone. */
async function vmRssOf(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The first child of `pid` (`/proc/PID/task/PID/children`), waiting for it to appear. */
async function firstChildOf(pid: number, done: () => boolean): Promise<number | null> {
  while (!done()) {
    try {
      const text = (await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`)).trim();
      if (text !== "") return Number(text.split(" ")[0]);
    } catch {
      return null;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return null;
}

/** Options of {@linkcode timeProcess}. */
export interface TimeProcessOptions {
  /** Run under `/usr/bin/time -v`, report the peak RSS and CPU time, sample the RSS. */
  peakRss?: boolean;
  /** Run under `/usr/bin/time -v` and report the CPU time (no RSS sampling). */
  cpuTime?: boolean;
  env?: Record<string, string>;
  /** Throw unless the exit code is 0 (default true). */
  check?: boolean;
}

const decoder = new TextDecoder();

async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

/**
 * Runs `cmd` to completion and times it. stderr is read line by line as it arrives: lines that
 * are JSON objects with a `type` (bootc's progress protocol) become timestamped events.
 *
 * @example
 * ```ts ignore
 * const r = await timeProcess([deno, "run", "-A", "main.ts", "--progress-fd", "2", ...],
 *   { peakRss: true });
 * r.ms; r.maxRssKiB; r.events.map((e) => e.atMs);
 * ```
 */
export async function timeProcess(
  cmd: string[],
  opts: TimeProcessOptions = {},
): Promise<TimedRun> {
  const timeFile = opts.peakRss || opts.cpuTime
    ? await Deno.makeTempFile({ prefix: "unistore-bench-time-" })
    : null;
  const argv = timeFile ? [GNU_TIME, "-v", "-o", timeFile, ...cmd] : cmd;
  try {
    const start = performance.now();
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
    }).spawn();
    const events: TimedEvent[] = [];
    const otherLines: string[] = [];
    const stderrDone = (async () => {
      let pending = "";
      for await (const chunk of child.stderr) {
        const at = performance.now() - start;
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          let parsed: unknown = null;
          if (line.startsWith("{")) {
            try {
              parsed = JSON.parse(line);
            } catch { /* not an event */ }
          }
          if (parsed && typeof parsed === "object" && "type" in parsed) {
            events.push({ atMs: at, event: parsed as Record<string, unknown> });
          } else otherLines.push(line);
        }
      }
      if (pending !== "") otherLines.push(pending);
    })();
    let exited = false;
    const rssSamples: { atMs: number; kib: number }[] = [];
    const sampled = opts.peakRss
      ? (async () => {
        const pid = await firstChildOf(child.pid, () => exited);
        while (pid !== null && !exited) {
          const kib = await vmRssOf(pid);
          if (kib === null) break;
          rssSamples.push({ atMs: performance.now() - start, kib });
          await new Promise((r) => setTimeout(r, RSS_SAMPLE_MS));
        }
      })()
      : Promise.resolve();
    const [stdout, status] = await Promise.all([
      collect(child.stdout),
      child.status.finally(() => (exited = true)),
      stderrDone,
    ]);
    await sampled;
    const ms = performance.now() - start;
    const result: TimedRun = {
      cmd,
      code: status.code,
      ms,
      stdout,
      stderr: otherLines.join("\n"),
      events,
      maxRssKiB: null,
      cpuMs: null,
      rssSamples,
    };
    if (timeFile) {
      const report = await Deno.readTextFile(timeFile);
      result.maxRssKiB = maxRssOf(report);
      result.cpuMs = cpuMsOf(report);
    }
    if ((opts.check ?? true) && status.code !== 0) {
      throw new Error(
        `benchmark step failed (exit ${status.code}): ${cmd.join(" ")}\n${result.stderr}\n` +
          result.stdout.slice(-2000),
      );
    }
    return result;
  } finally {
    if (timeFile) await Deno.remove(timeFile).catch(() => {});
  }
}

/**
 * "Maximum resident set size (kbytes): N" of a `/usr/bin/time -v` report. For a process that
 * waits for children (podman under unistore) it is the largest of them and the process itself,
 * not their sum (getrusage(2), `ru_maxrss`).
 */
export function maxRssOf(report: string): number {
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(report);
  if (!m) {
    throw new Error(`/usr/bin/time -v report without "Maximum resident set size":\n${report}`);
  }
  return Number(m[1]);
}

/**
 * User plus system time, in ms, of a `/usr/bin/time -v` report ("User time (seconds): 0.05",
 * "System time (seconds): 1.53"): like the peak RSS, the process's and its waited-for
 * children's (getrusage(2) `RUSAGE_CHILDREN`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpuMsOf } from "./measure.ts";
 *
 * assert.equal(cpuMsOf("\tUser time (seconds): 0.05\n\tSystem time (seconds): 1.53\n"), 1580);
 * ```
 */
export function cpuMsOf(report: string): number {
  const user = /User time \(seconds\): ([\d.]+)/.exec(report);
  const system = /System time \(seconds\): ([\d.]+)/.exec(report);
  if (!user || !system) {
    throw new Error(`/usr/bin/time -v report without "User time" and "System time":\n${report}`);
  }
  return Math.round(1000 * (Number(user[1]) + Number(system[1])));
}

/** Bytes used on the filesystem of `mountpoint` (`df`), after a `sync -f` so delayed allocation counts. */
export async function usedBytes(mountpoint: string): Promise<number> {
  await runOk(["sync", "-f", mountpoint]);
  const out = await runOk(["df", "-B1", "--output=used", mountpoint]);
  return Number(out.stdout.trim().split("\n")[1]);
}

/** Inodes in use on the filesystem of `mountpoint` (`df -i`). */
export async function usedInodes(mountpoint: string): Promise<number> {
  const out = await runOk(["df", "--output=iused", mountpoint]);
  return Number(out.stdout.trim().split("\n")[1]);
}

/** Pause after `sync` between timed runs: XFS background inode GC otherwise lands on the next. */
export const SETTLE_MS = 2000;

/** `sync -f` on the filesystem, then a pause, so the next timed run starts from a quiet disk. */
export async function settle(mountpoint: string): Promise<void> {
  await runOk(["sync", "-f", mountpoint]);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

/**
 * Reads every regular file under `dirs` once (`find … -exec cat {} +`), so that timed runs that
 * compare two programs over the same files both start with them in the page cache.
 */
export async function warmPageCache(dirs: string[]): Promise<void> {
  await runOk([
    "bash",
    "-c",
    'find "$@" -type f -exec cat {} + > /dev/null',
    "warm",
    ...dirs,
  ]);
}

/**
 * Clock ticks per second of `/proc/stat` (USER_HZ). Fixed at 100 by the kernel ABI on every
 * architecture Linux reports in it; another value would scale every machine CPU time.
 */
const USER_HZ = 100;

/**
 * CPU time the whole machine has spent busy since boot, in ms: every core's user, nice,
 * system, irq and softirq ticks from `/proc/stat` (idle, iowait and the hypervisor's steal left
 * out: no work of this machine's). The difference over a step counts what no process's own
 * CPU time shows: the kernel's threads, such as those writing dirty pages back to a loop
 * device's file during a `sync`.
 *
 * @example
 * ```ts ignore
 * const before = await machineBusyMs();
 * await runOk(["sync", "-f", mountpoint]);
 * const writebackCpuMs = (await machineBusyMs()) - before;
 * ```
 */
export async function machineBusyMs(): Promise<number> {
  const line = (await Deno.readTextFile("/proc/stat")).split("\n", 1)[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …
  const busy = f[0] + f[1] + f[2] + f[5] + f[6];
  return (busy * 1000) / USER_HZ;
}

/** The middle value (mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Milliseconds since an arbitrary origin, for timing steps of the bench itself. */
export function stopwatch(): () => number {
  const t0 = performance.now();
  return () => performance.now() - t0;
}

/** The 1-, 5- and 15-minute load averages: other work on the machine skews every timing. */
export async function loadAverage(): Promise<number[]> {
  const text = await Deno.readTextFile("/proc/loadavg");
  return text.split(" ").slice(0, 3).map(Number);
}
