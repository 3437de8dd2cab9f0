/**
 * Fault points: named places in the write paths where a crash test may cut the power.
 *
 * `faultPoint("cstorage.layer-complete")` sits right after a durable write step. It does nothing
 * unless the process was started with one of these variables (read once, on the first call):
 *
 * | variable | effect |
 * |---|---|
 * | `UNISTORE_FAULT_AT=NAME` or `NAME#N` | the N-th time (default the first) `NAME` is reached, the process sends itself SIGKILL: no `finally`, no cleanup, no flush of anything still in memory, as after a power cut that keeps what reached the page cache |
 * | `UNISTORE_FAULT_TRACE=/path` | every point reached is appended to `/path` as `NAME#N`, one per line (O_APPEND, so concurrent processes do not clobber each other's lines) |
 *
 * A crash test runs a command once with the trace to learn the points it passes, then once per
 * point with `UNISTORE_FAULT_AT`, and checks that every store still passes its own fsck, the
 * unified flag is absent unless it was written before the kill, and a rerun completes
 * (tests/reliability/, docs/RELIABILITY.md).
 *
 * Names are `<area>.<step done>`: `composefs.stream-registered`, `ostree.ref-written`. Renaming
 * one only breaks crash tests that name it; the tests enumerate points from the trace.
 *
 * @module
 */

/** The environment variable that selects the point to crash at (`NAME` or `NAME#N`). */
export const FAULT_AT_ENV = "UNISTORE_FAULT_AT";
/** The environment variable naming the file every reached point is appended to. */
export const FAULT_TRACE_ENV = "UNISTORE_FAULT_TRACE";

/** One hit of a fault point: its name and which time it was reached (1-based). */
export interface FaultHit {
  name: string;
  hit: number;
}

/** What the environment asked for; `null` when neither variable is set (the common case). */
interface FaultConfig {
  at: FaultHit | null;
  trace: string | null;
}

/** `undefined` until the environment has been read; `null` when fault injection is off. */
let config: FaultConfig | null | undefined;
const hits = new Map<string, number>();

const NAME_RE = /^[a-z0-9][a-z0-9.-]*$/;

/**
 * Parses `NAME` or `NAME#N` (N ≥ 1) as `UNISTORE_FAULT_AT` and the trace lines spell it.
 *
 * @throws {Error} naming the text when it is neither.
 * @example
 * ```ts
 * parseFaultHit("ostree.ref-written");   // { name: "ostree.ref-written", hit: 1 }
 * parseFaultHit("composefs.object-linked#12"); // { name: "composefs.object-linked", hit: 12 }
 * ```
 */
export function parseFaultHit(text: string): FaultHit {
  const m = /^([^#]+)(?:#(\d+))?$/.exec(text.trim());
  const hit = m?.[2] === undefined ? 1 : Number(m[2]);
  if (!m || !NAME_RE.test(m[1]) || !Number.isSafeInteger(hit) || hit < 1) {
    throw new Error(
      `${FAULT_AT_ENV}: expected NAME or NAME#N (N >= 1, NAME of [a-z0-9.-]), found ${
        JSON.stringify(text)
      }`,
    );
  }
  return { name: m[1], hit };
}

/** The lines of a trace file as hits, in the order they were reached. */
export function parseFaultTrace(text: string): FaultHit[] {
  return text.split("\n").filter((l) => l.trim() !== "").map(parseFaultHit);
}

function envOrNull(name: string): string | null {
  try {
    const v = Deno.env.get(name);
    return v === undefined || v === "" ? null : v;
  } catch {
    // Without --allow-env there is no fault injection (the CLI always runs with -A).
    return null;
  }
}

function readConfig(): FaultConfig | null {
  const at = envOrNull(FAULT_AT_ENV);
  const trace = envOrNull(FAULT_TRACE_ENV);
  if (at === null && trace === null) return null;
  return { at: at === null ? null : parseFaultHit(at), trace };
}

/**
 * Marks a write step as done. Free when fault injection is off (one comparison after the first
 * call); see the module doc for what it does when it is on.
 *
 * @example
 * ```ts ignore
 * replaceFileAt(dirfd, "bootc.json", bytes);
 * faultPoint("host.bootc-json-written");
 * ```
 */
export function faultPoint(name: string): void {
  if (config === undefined) config = readConfig();
  if (config === null) return;
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  if (config.trace !== null) {
    // Synchronous and appended before any kill: the line survives the SIGKILL below.
    Deno.writeTextFileSync(config.trace, `${name}#${n}\n`, { append: true });
  }
  if (config.at !== null && config.at.name === name && config.at.hit === n) {
    try {
      Deno.kill(Deno.pid, "SIGKILL");
    } catch {
      // Without --allow-run: exit at once instead, still without running any finally.
      Deno.exit(137);
    }
  }
}
