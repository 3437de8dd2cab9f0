/**
 * Tests that need external tools (ostree, podman, skopeo, mkfs.xfs, ...) or root.
 *
 * Policy (DESIGN.md §5): in CI (`CI=true`) a missing prerequisite is a test FAILURE, because the
 * CI machine is supposed to have everything; anywhere else the test is registered as ignored and
 * the reason is printed once, so a developer sees what to install instead of a wall of errors.
 *
 * @module
 */

/** A required program and the Debian package that provides it. */
export interface Tool {
  /** Program name as looked up on PATH, e.g. `"mkfs.xfs"`. */
  bin: string;
  /** Debian package to install, e.g. `"xfsprogs"`. */
  pkg: string;
}

/** Options for tests registered through {@link skippableTest}, {@link toolTest} and friends. */
export interface SkippableTestOptions {
  /** Passed through to `Deno.test`; keep the defaults (true) unless a test really needs to. */
  sanitizeOps?: boolean;
  /** Passed through to `Deno.test`. */
  sanitizeResources?: boolean;
  /** Passed through to `Deno.test`. */
  sanitizeExit?: boolean;
  /** Passed through to `Deno.test` (focus a single test while debugging). */
  only?: boolean;
}

/** True when running in CI, where missing prerequisites must fail rather than skip. */
export function isCi(): boolean {
  // Only the exact value "true" (what GitHub Actions, GitLab and .ci/run set) counts, so a stray
  // CI=0 or CI=false in a developer shell does not turn skips into failures.
  return Deno.env.get("CI") === "true";
}

// Standard sbin directories are searched even when absent from PATH: mkfs.*, losetup and friends
// live in /usr/sbin, which is often not on a non-login root shell's or a CI runner's PATH.
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

const toolPaths = new Map<string, string | null>();

/**
 * Absolute path of an executable named `bin` on PATH (then in the sbin directories), or null.
 * Cached per process. Callers should run the returned path rather than the bare name, so the
 * program found here is the one that runs even when PATH lacks the sbin directories.
 */
export function findTool(bin: string): string | null {
  const cached = toolPaths.get(bin);
  if (cached !== undefined) return cached;
  let found: string | null = null;
  if (bin.includes("/")) {
    found = isExecutable(bin) ? bin : null;
  } else {
    const path = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
    for (const dir of [...path, ...EXTRA_DIRS]) {
      const candidate = `${dir}/${bin}`;
      if (isExecutable(candidate)) {
        found = candidate;
        break;
      }
    }
  }
  toolPaths.set(bin, found);
  return found;
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Skip reason for a missing program: null when `bin` is found, otherwise
 * `"<bin> not found (apt-get install <aptPackage>)"`.
 */
export function requireTool(bin: string, aptPackage: string): string | null {
  return findTool(bin) === null ? `${bin} not found (apt-get install ${aptPackage})` : null;
}

/** Skip reason for several programs at once (all missing ones listed), or null. */
export function requireTools(tools: readonly Tool[]): string | null {
  const reasons = tools.map((t) => requireTool(t.bin, t.pkg)).filter((r) => r !== null);
  return reasons.length === 0 ? null : reasons.join("; ");
}

let rootReason: string | null | undefined;

/** Skip reason when the process is not root (loop mounts, chown, mknod need it), else null. */
export function requireRoot(): string | null {
  if (rootReason === undefined) {
    try {
      rootReason = Deno.uid() === 0 ? null : "not root";
    } catch (e) {
      // Deno.uid() needs --allow-sys; report that rather than crash at registration time.
      rootReason = `cannot determine uid (${e instanceof Error ? e.message : e})`;
    }
  }
  return rootReason;
}

const printedSkips = new Set<string>();

/**
 * Registers a test that needs prerequisites. `reason` is null when they are met; otherwise, with
 * `CI=true` the test runs and fails with the reason, elsewhere it is registered with
 * `ignore: true` and `skip: <reason>` is printed to stderr once per distinct reason.
 */
export function skippableTest(
  name: string,
  reason: string | null,
  fn: () => Promise<void> | void,
  opts: SkippableTestOptions = {},
): void {
  // Pick the Deno.test options explicitly (callers pass wider objects, e.g. with sizeMiB) and
  // leave out undefined ones: an explicit `sanitizeOps: undefined` could override Deno's default.
  const testOpts: SkippableTestOptions = {};
  for (const key of ["sanitizeOps", "sanitizeResources", "sanitizeExit", "only"] as const) {
    if (opts[key] !== undefined) testOpts[key] = opts[key];
  }
  if (reason === null) {
    Deno.test({ name, fn, ...testOpts });
  } else if (isCi()) {
    Deno.test({
      name,
      fn() {
        throw new Error(`${reason} (CI=true: a missing prerequisite is a failure, DESIGN.md §5)`);
      },
      ...testOpts,
    });
  } else {
    if (!printedSkips.has(reason)) {
      printedSkips.add(reason);
      console.error(`skip: ${reason} (tests needing it are ignored; CI=true makes them fail)`);
    }
    Deno.test({ name, ignore: true, fn() {}, ...testOpts });
  }
}

/** Options for {@link toolTest}. */
export interface ToolTestOptions extends SkippableTestOptions {
  /** The test also needs root (e.g. `ostree admin`, chown to other uids); see {@link requireRoot}. */
  root?: boolean;
}

/**
 * Registers a test that needs the given programs. `fn` receives the absolute path of each one,
 * keyed by `bin` (use it instead of the bare name; see {@link findTool}). Missing programs make
 * the test fail under `CI=true` and be ignored elsewhere (see {@link skippableTest}).
 */
export function toolTest(
  name: string,
  tools: readonly Tool[],
  fn: (bins: Record<string, string>) => Promise<void> | void,
  opts: ToolTestOptions = {},
): void {
  const reasons = [opts.root ? requireRoot() : null, requireTools(tools)].filter((r) => r !== null);
  skippableTest(name, reasons.length === 0 ? null : reasons.join("; "), () => {
    const bins: Record<string, string> = {};
    for (const t of tools) bins[t.bin] = findTool(t.bin)!;
    return fn(bins);
  }, opts);
}
