/**
 * File locks: OFD record locks (ostree's repo lock, containers-storage's lock
 * files) and flock (composefs repositories).
 *
 * OFD locks conflict with the classic POSIX locks c/storage takes and, unlike
 * those, are not dropped when another fd of the same file is closed in this
 * process (specs/deno-platform.md §4.3). Both kinds belong to the open file
 * description: a second open of the same file in this process blocks against
 * the first.
 *
 * @module
 */

import { Errno, SysError } from "./errno.ts";
import { errno, libc } from "./libc.ts";

const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_OFD_SETLKW = 38;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;

/** Whether a lock is shared (read) or exclusive (write). */
export type LockKind = "read" | "write";

function flockStruct(type: number): Uint8Array<ArrayBuffer> {
  // struct flock, 32 bytes: i16 l_type, i16 l_whence, i64 l_start, i64 l_len
  // (0 = whole file), i32 l_pid (must be 0 for OFD locks).
  const buf = new Uint8Array(32);
  new DataView(buf.buffer).setInt16(0, type, true);
  return buf;
}

function lockType(kind: LockKind): number {
  return kind === "read" ? F_RDLCK : F_WRLCK;
}

/**
 * Tries to take an OFD lock on the whole file without waiting.
 * Returns false when another holder conflicts.
 */
export function ofdTryLock(fd: number, kind: LockKind, what?: string): boolean {
  const rc = libc.fcntl_ptr(fd, F_OFD_SETLK, flockStruct(lockType(kind)));
  const err = errno[0];
  if (rc === 0) return true;
  if (err === Errno.EAGAIN || err === Errno.EACCES) return false;
  throw new SysError(`fcntl(F_OFD_SETLK, ${kind})`, err, what);
}

/**
 * Takes an OFD lock on the whole file, waiting as long as it takes.
 * The wait runs on a worker thread so the event loop (child processes,
 * timers) keeps going; errno is read by repeating the call synchronously.
 */
export async function ofdLock(fd: number, kind: LockKind, what?: string): Promise<void> {
  if (ofdTryLock(fd, kind, what)) return;
  for (;;) {
    const rc = await libc.fcntl_ptr_nb(fd, F_OFD_SETLKW, flockStruct(lockType(kind)));
    if (rc === 0) return;
    // errno of the pool thread cannot be read: find out by trying again here.
    if (ofdTryLock(fd, kind, what)) return;
  }
}

/** Releases an OFD lock held through `fd`. */
export function ofdUnlock(fd: number, what?: string): void {
  const rc = libc.fcntl_ptr(fd, F_OFD_SETLK, flockStruct(F_UNLCK));
  const err = errno[0];
  if (rc < 0) throw new SysError("fcntl(F_OFD_SETLK, unlock)", err, what);
}

/** Who holds a conflicting lock: `null` when `kind` could be taken now. */
export function ofdConflict(fd: number, kind: LockKind, what?: string): { pid: number } | null {
  const buf = flockStruct(lockType(kind));
  const rc = libc.fcntl_ptr(fd, F_OFD_GETLK, buf);
  const err = errno[0];
  if (rc < 0) throw new SysError("fcntl(F_OFD_GETLK)", err, what);
  const v = new DataView(buf.buffer);
  if (v.getInt16(0, true) === F_UNLCK) return null;
  return { pid: v.getInt32(24, true) };
}

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** Tries to take a flock without waiting; false when another holder conflicts. */
export function flockTry(fd: number, kind: LockKind, what?: string): boolean {
  const rc = libc.flock(fd, (kind === "read" ? LOCK_SH : LOCK_EX) | LOCK_NB);
  const err = errno[0];
  if (rc === 0) return true;
  if (err === Errno.EAGAIN) return false;
  throw new SysError(`flock(${kind})`, err, what);
}

/** Takes a flock, waiting off the event loop. */
export async function flockWait(fd: number, kind: LockKind, what?: string): Promise<void> {
  if (flockTry(fd, kind, what)) return;
  for (;;) {
    const rc = await libc.flock_nb(fd, kind === "read" ? LOCK_SH : LOCK_EX);
    if (rc === 0) return;
    if (flockTry(fd, kind, what)) return;
  }
}

/** Releases a flock. */
export function flockRelease(fd: number, what?: string): void {
  const rc = libc.flock(fd, LOCK_UN);
  const err = errno[0];
  if (rc < 0) throw new SysError("flock(unlock)", err, what);
}
