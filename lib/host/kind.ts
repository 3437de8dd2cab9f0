/**
 * What kind of bootc host a root is: ostree backend, native composefs backend, or none.
 *
 * bootc decides by the kernel command line of the running system (`composefs=` in
 * `/proc/cmdline` → composefs backend, else ostree; store/mod.rs). A root that was not booted
 * (`--root` on an installed disk, a test tree) has no such karg, so the layout decides:
 *
 * 1. `composefs.digest=` / `composefs=` karg → `composefs` (checked first, as bootc does);
 * 2. `ostree=` karg → `ostree`;
 * 3. `sysroot/ostree/deploy` exists → `ostree`;
 * 4. `sysroot/state/deploy` and the composefs repo `sysroot/composefs` exist → `composefs`
 *    (ostree hosts may have `sysroot/composefs` too: bootc creates it on both backends);
 * 5. otherwise `none`: not a bootc host.
 *
 * @module
 */

import { type ComposefsKarg, type OstreeKarg, readKernelCmdline } from "./cmdline.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";

/** The three kinds of host. */
export type HostKind = "ostree" | "composefs" | "none";

/** The verdict and why. */
export interface HostKindInfo {
  kind: HostKind;
  /** One sentence naming the evidence, e.g. `proc/cmdline has composefs=<hex>`. */
  reason: string;
  /** True when the verdict comes from the kernel command line, i.e. the root is booted. */
  booted: boolean;
  /** The booting `ostree=` karg, when there is one. */
  ostreeKarg: OstreeKarg | null;
  /** The booting composefs karg, when there is one. */
  composefsKarg: ComposefsKarg | null;
}

/**
 * Decides the host kind of `root` (see the module doc for the rules).
 *
 * @throws {HostFileError} when `proc/cmdline` holds a malformed `ostree=` or `composefs=`.
 * @example
 * ```ts
 * const info = detectHostKind(new HostRoot("/"));
 * if (info.kind === "none") console.log(`not a bootc host: ${info.reason}`);
 * ```
 */
export function detectHostKind(root: HostRoot): HostKindInfo {
  const cmdline = readKernelCmdline(root);
  const composefsKarg = cmdline?.composefs() ?? null;
  const ostreeKarg = cmdline?.ostree() ?? null;
  const base = { ostreeKarg, composefsKarg };
  if (composefsKarg) {
    return {
      kind: "composefs",
      reason: `${HOST_PATHS.procCmdline} has ${composefsKarg.karg}=${
        composefsKarg.insecure ? "?" : ""
      }${composefsKarg.digest}`,
      booted: true,
      ...base,
    };
  }
  if (ostreeKarg) {
    return {
      kind: "ostree",
      reason: `${HOST_PATHS.procCmdline} has ostree=${ostreeKarg.path}`,
      booted: true,
      ...base,
    };
  }
  const noKarg = cmdline === null
    ? `no ${HOST_PATHS.procCmdline}`
    : `no ostree= or composefs= karg`;
  if (root.isDir(HOST_PATHS.ostreeDeploy)) {
    return {
      kind: "ostree",
      reason: `${noKarg}; ${HOST_PATHS.ostreeDeploy} exists`,
      booted: false,
      ...base,
    };
  }
  const state = root.isDir(HOST_PATHS.composefsStateDeploy);
  const repo = root.isDir(HOST_PATHS.composefsRepo);
  if (state && repo) {
    return {
      kind: "composefs",
      reason: `${noKarg}; ${HOST_PATHS.composefsStateDeploy} and ${HOST_PATHS.composefsRepo} exist`,
      booted: false,
      ...base,
    };
  }
  const missing = state
    ? `${HOST_PATHS.composefsRepo} is missing`
    : `neither ${HOST_PATHS.ostreeDeploy} nor ${HOST_PATHS.composefsStateDeploy} exists`;
  return {
    kind: "none",
    reason: `${noKarg}; ${missing}: not a bootc host`,
    booted: false,
    ...base,
  };
}
