/**
 * Killing one command at every fault point it passes (lib/fault/fault_point.ts), or at random
 * moments, each time on a fresh copy of the same host; after every kill the stores are judged
 * (store_checks.ts), the flag must be absent unless it was written before the kill, and a rerun
 * of the same command must complete and leave the host exactly as an uninterrupted run leaves it
 * (same images, names, tags, flag, and whatever `extraOutcome` adds).
 *
 * 1. reference: the command once, uninterrupted, with `UNISTORE_FAULT_TRACE`: the points it
 *    passes, in order, its duration, and the host it leaves;
 * 2. {@linkcode runKillMatrix}, per selected hit `NAME#N`: copy, run with
 *    `UNISTORE_FAULT_AT=NAME#N` (it must die of SIGKILL: a point that is not reached is a
 *    failure, never a silent pass); {@linkcode runRandomKills}: copy, start the command in a
 *    session of its own and SIGKILL the whole session (podman, skopeo, ostree included) after a
 *    random delay;
 * 3. then clean up what a reboot clears (mounts, run root), judge, `unistore status`, rerun,
 *    judge again. `bootc.json` must exist after a fault-point kill exactly when it existed before
 *    the command or the kill came after {@linkcode FLAG_POINT}; after a random kill, when it
 *    exists every store must already hold what an uninterrupted run leaves.
 *
 * Every case runs even when an earlier one failed; the failures are returned together.
 *
 * @module
 */

import { type FaultHit, parseFaultTrace } from "../../lib/fault/fault_point.ts";
import { type CrashHost, type HostTemplate, killGroup, spawnUnistoreGroup } from "./crash_host.ts";
import { type HostVerdict, judgeHost, judgeWithPodman, leftovers } from "./store_checks.ts";

/** The fault point written right after `bootc.json`: from there on the flag must exist. */
export const FLAG_POINT = "host.bootc-json-written";

/** The command and the host it runs on. */
export interface CrashCommand {
  template: HostTemplate;
  /** The command after `--root DIR`, e.g. `["set-unified", "full"]`. */
  args: string[];
  /** After each rerun, podman lists and skopeo copies every image of containers-storage. */
  podman?: boolean;
  /**
   * More of what a rerun must reproduce (e.g. the deployments `ostree admin status` lists):
   * compared between the uninterrupted run and every rerun, like the stores' contents.
   */
  extraOutcome?: (host: CrashHost) => Promise<Record<string, unknown>>;
  /** Where the trace file goes. */
  traceDir: string;
}

/** How {@linkcode runKillMatrix} runs. */
export interface KillMatrixOptions extends CrashCommand {
  /** Which hits to kill at (default every hit of the reference trace). */
  select?: (hits: FaultHit[]) => FaultHit[];
}

/** What {@linkcode runKillMatrix} did. */
export interface KillMatrixResult {
  /** Every hit of the reference run, in order. */
  hits: FaultHit[];
  /** The hits killed at. */
  cases: FaultHit[];
  /** One line per failed check, each naming its case. */
  failures: string[];
  /** Distinct point names reached, with their hit counts. */
  points: Record<string, number>;
  /** What the killed runs left behind after their reruns, summed by kind (store_checks.ts). */
  leftovers: Record<string, number>;
  ms: number;
}

/** What a rerun must reproduce: the host an uninterrupted run leaves. */
async function outcomeOf(
  host: CrashHost,
  v: HostVerdict,
  cmd: CrashCommand,
): Promise<Record<string, unknown>> {
  return {
    ...(await cmd.extraOutcome?.(host)),
    bootcJson: v.bootcJson,
    ostreeBound: v.ostreeBound,
    images: v.images.map((i) => `${i.id} ${[...i.names].sort().join(",")}`).sort(),
    composefsTags: [...v.composefsTags].sort(),
    incompleteLayers: v.incompleteLayers,
  };
}

/** The differences between two outcomes, one line per key. */
function outcomeDiff(got: Record<string, unknown>, expected: Record<string, unknown>): string[] {
  return Object.keys(expected)
    .filter((k) => JSON.stringify(got[k]) !== JSON.stringify(expected[k]))
    .map((k) =>
      `${k} is ${JSON.stringify(got[k])}, an uninterrupted run gives ${JSON.stringify(expected[k])}`
    );
}

interface Reference {
  hits: FaultHit[];
  expected: Record<string, unknown>;
  /** `bootc.json` existed before the command (an upgrade runs on a unified host). */
  flagBefore: boolean;
  ms: number;
}

async function reference(cmd: CrashCommand): Promise<Reference> {
  const trace = `${cmd.traceDir}/fault-trace-${crypto.randomUUID()}.txt`;
  const ref = await cmd.template.copy("reference");
  try {
    const flagBefore = await Deno.lstat(ref.bootcJson).then(() => true, () => false);
    const started = Date.now();
    const r = await ref.run(cmd.args, { trace });
    const ms = Date.now() - started;
    if (r.code !== 0) {
      throw new Error(`reference run of ${cmd.args.join(" ")} failed (${r.code}): ${r.stderr}`);
    }
    const v = await judgeHost(ref);
    if (v.problems.length > 0) {
      throw new Error(`reference run left problems:\n${v.problems.join("\n")}`);
    }
    const hits = parseFaultTrace(await Deno.readTextFile(trace));
    return { hits, expected: await outcomeOf(ref, v, cmd), flagBefore, ms };
  } finally {
    await ref.remove();
    await Deno.remove(trace).catch(() => {});
  }
}

/**
 * Step 3 of the module doc on a killed copy. `flag`: whether `bootc.json` must exist, or
 * `"implies-complete"` (random kills: it may, but then everything must be in place).
 */
async function judgeKilledAndRerun(
  host: CrashHost,
  cmd: CrashCommand,
  ref: Reference,
  flag: boolean | "implies-complete",
  fail: (what: string) => void,
  tally: Record<string, number>,
): Promise<void> {
  await host.cleanupAfterKill();
  const after = await judgeHost(host);
  // A random kill may catch podman half way through an image: its leftover is podman's.
  const podmanResidue = flag === "implies-complete" ? after.namelessImageProblems : [];
  after.problems.filter((p) => !podmanResidue.includes(p)).forEach((p) =>
    fail(`after the kill: ${p}`)
  );
  if (flag === "implies-complete") {
    if (after.bootcJson !== null && !ref.flagBefore) {
      // Podman's own crash leftovers (incomplete layers) are c/storage's to delete: not ours.
      const got = { ...(await outcomeOf(host, after, cmd)), incompleteLayers: [] };
      outcomeDiff(got, ref.expected).forEach((d) =>
        fail(`bootc.json written, but the stores are not complete: ${d}`)
      );
    }
  } else if ((after.bootcJson !== null) !== flag) {
    fail(
      `bootc.json ${after.bootcJson ? "present" : "absent"} after the kill, expected ` +
        (flag ? "present (it existed before, or was written before the kill)" : "absent"),
    );
  }
  const status = await host.run(["status", "--format", "json"]);
  if (status.code !== 0) fail(`unistore status after the kill: ${status.stderr}`);

  const rerun = await host.run(cmd.args);
  if (rerun.code !== 0) {
    fail(`rerun failed (exit ${rerun.code}): ${rerun.stderr}${rerun.stdout}`);
    return;
  }
  const final = await judgeHost(host);
  final.problems.forEach((p) => fail(`after the rerun: ${p}`));
  outcomeDiff(await outcomeOf(host, final, cmd), ref.expected).forEach((d) =>
    fail(`after the rerun ${d}`)
  );
  if (cmd.podman) {
    (await judgeWithPodman(host, final.images.map((i) => i.id))).forEach((p) => fail(p));
  }
  for (const [kind, n] of Object.entries(leftovers(host))) tally[kind] = (tally[kind] ?? 0) + n;
}

const label = (h: FaultHit) => `${h.name}#${h.hit}`;

/** Kills the command at each selected fault-point hit (see the module doc). */
export async function runKillMatrix(opts: KillMatrixOptions): Promise<KillMatrixResult> {
  const started = Date.now();
  const ref = await reference(opts);
  const hits = ref.hits;
  const points: Record<string, number> = {};
  for (const h of hits) points[h.name] = h.hit;
  const cases = opts.select ? opts.select(hits) : hits;
  const failures: string[] = [];
  const tally: Record<string, number> = {};

  for (const at of cases) {
    const index = hits.findIndex((h) => h.name === at.name && h.hit === at.hit);
    const flagExpected = ref.flagBefore ||
      hits.slice(0, index + 1).some((h) => h.name === FLAG_POINT);
    const host = await opts.template.copy(label(at));
    const fail = (what: string) => failures.push(`kill at ${label(at)}: ${what}`);
    try {
      const killed = await host.run(opts.args, { faultAt: label(at) });
      if (killed.signal !== "SIGKILL") {
        fail(`not killed (exit ${killed.code}): the point was not reached. ${killed.stderr}`);
        continue;
      }
      await judgeKilledAndRerun(host, opts, ref, flagExpected, fail, tally);
    } catch (e) {
      fail(`case crashed: ${(e as Error).stack}`);
    } finally {
      await host.remove();
    }
  }
  return { hits, cases, failures, points, leftovers: tally, ms: Date.now() - started };
}

/** How {@linkcode runRandomKills} runs. */
export interface RandomKillOptions extends CrashCommand {
  kills: number;
  /** Seed of the delays (printed with every failure, so a failing run can be replayed). */
  seed: number;
}

/** What {@linkcode runRandomKills} did. */
export interface RandomKillResult {
  /** Delay of each kill in ms, and whether the command was still running then. */
  kills: { delayMs: number; killedRunning: boolean }[];
  failures: string[];
  /** What the killed runs left behind after their reruns, summed by kind (store_checks.ts). */
  leftovers: Record<string, number>;
  referenceMs: number;
  ms: number;
}

/** mulberry32: a small seeded PRNG, enough to spread kill delays reproducibly. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * Kills the command (its whole session) after `kills` random delays spread over the length of
 * an uninterrupted run (see the module doc).
 */
export async function runRandomKills(opts: RandomKillOptions): Promise<RandomKillResult> {
  const started = Date.now();
  const ref = await reference(opts);
  const random = seededRandom(opts.seed);
  const kills: RandomKillResult["kills"] = [];
  const failures: string[] = [];
  const tally: Record<string, number> = {};
  for (let i = 0; i < opts.kills; i++) {
    // Spread over the reference run (less its tail: the traced run is a little slower).
    const delayMs = Math.round(random() * ref.ms * 0.9);
    const host = await opts.template.copy(`random-${i}`);
    const fail = (what: string) =>
      failures.push(`random kill ${i} after ${delayMs} ms (seed ${opts.seed}): ${what}`);
    try {
      const child = spawnUnistoreGroup(host.root, opts.args);
      const output = child.output();
      await new Promise((r) => setTimeout(r, delayMs));
      await killGroup(child, () => host.thaw());
      const out = await output;
      kills.push({ delayMs, killedRunning: out.signal === "SIGKILL" });
      if (out.signal !== "SIGKILL" && out.code !== 0) {
        fail(`exited ${out.code} before the kill: ${new TextDecoder().decode(out.stderr)}`);
      }
      await judgeKilledAndRerun(host, opts, ref, "implies-complete", fail, tally);
    } catch (e) {
      fail(`case crashed: ${(e as Error).stack}`);
    } finally {
      await host.remove();
    }
  }
  return { kills, failures, leftovers: tally, referenceMs: ref.ms, ms: Date.now() - started };
}

/** The first and the last hit of every point: what a sample of the matrix covers. */
export function firstAndLastHits(hits: FaultHit[]): FaultHit[] {
  const last = new Map<string, number>();
  for (const h of hits) last.set(h.name, h.hit);
  return hits.filter((h) => h.hit === 1 || h.hit === last.get(h.name));
}

/** Fails unless the matrix reached every point in `points`: else it proves little. */
export function assertPointsReached(r: KillMatrixResult, points: readonly string[]): void {
  const missing = points.filter((p) => !r.points[p]);
  if (missing.length > 0) {
    throw new Error(`not reached: ${missing.join(", ")} (reached: ${JSON.stringify(r.points)})`);
  }
}

/** One line for the test log: cases, points, time. */
export function describeMatrix(what: string, r: KillMatrixResult): string {
  const names = Object.entries(r.points).map(([n, c]) => `${n}×${c}`).join(", ");
  return `${what}: ${r.cases.length} kills of ${r.hits.length} hits at ${
    Object.keys(r.points).length
  } points (${names}) in ${(r.ms / 1000).toFixed(1)} s, ${r.failures.length} failures; ` +
    `left behind: ${describeLeftovers(r.leftovers)}`;
}

function describeLeftovers(l: Record<string, number>): string {
  return Object.entries(l).map(([k, n]) => `${n} ${k}`).join(", ") || "nothing";
}

/** One line for the test log: kills, how many hit a running command, time. */
export function describeRandomKills(what: string, seed: number, r: RandomKillResult): string {
  const running = r.kills.filter((k) => k.killedRunning).length;
  const delays = r.kills.map((k) => k.delayMs).join(", ");
  return `${what}: ${r.kills.length} random kills (seed ${seed}; ${running} while running; ` +
    `delays ${delays} ms of a ${r.referenceMs} ms run) in ${(r.ms / 1000).toFixed(1)} s, ` +
    `${r.failures.length} failures; left behind: ${describeLeftovers(r.leftovers)}`;
}
