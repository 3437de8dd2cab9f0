/**
 * The JSON record files of a store (`layers.json`, `volatile-layers.json`, `images.json`): a
 * JSON array of objects, read whole and replaced atomically.
 *
 * Records are kept as the parsed objects they came from, so keys unistore does not know (added
 * by newer c/storage versions) survive a rewrite. Writes go through a temp file, fsync and
 * rename (§3.4); the caller records a token on the matching lock file first.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import { close, ensureDirAt, openDirAt, readFileAt } from "../../../ffi/fs.ts";
import { replaceFileAt } from "../../../ffi/replace.ts";
import { StoreFormatError } from "./errors.ts";
import { MODES } from "./layout.ts";

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

/** True when `v` is a plain JSON object (not an array, not null). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Reads a record file below `rootFd` (`dir/name`). A missing or empty file is an empty list,
 * as c/storage treats it. Anything but a JSON array of objects with a string `id` throws
 * {@linkcode StoreFormatError} naming the file and the record index.
 */
export function readRecordFile(
  rootFd: number,
  rootPath: string,
  dir: string,
  name: string,
): JsonObject[] {
  const where = `${rootPath}/${dir}/${name}`;
  let bytes: Uint8Array;
  try {
    bytes = readFileAt(rootFd, `${dir}/${name}`);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
  if (bytes.length === 0) return [];
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new StoreFormatError(where, `expected a JSON array of records: ${(e as Error).message}`);
  }
  if (value === null) return []; // Go marshals a nil slice as null
  if (!Array.isArray(value)) {
    throw new StoreFormatError(where, `expected a JSON array of records, found ${typeof value}`);
  }
  value.forEach((rec, i) => {
    if (!isJsonObject(rec) || typeof rec.id !== "string") {
      throw new StoreFormatError(where, `record ${i}: expected an object with a string "id"`);
    }
  });
  return value as JsonObject[];
}

/**
 * Replaces a record file atomically (0600, fsynced unless `sync` is false: volatile files are
 * written without fsync by c/storage). The directory is created (0700) when missing.
 */
export function writeRecordFile(
  rootFd: number,
  dir: string,
  name: string,
  records: readonly JsonObject[],
  opts: { sync?: boolean } = {},
): void {
  ensureDirAt(rootFd, dir, MODES.storeDir);
  const dirfd = openDirAt(rootFd, dir);
  try {
    replaceFileAt(dirfd, name, new TextEncoder().encode(JSON.stringify(records)), {
      mode: MODES.json,
      sync: opts.sync,
    });
  } finally {
    close(dirfd);
  }
}

/** Typed field readers that name the file, record and key in their errors. */
export class RecordReader {
  constructor(readonly rec: JsonObject, readonly where: string) {}

  string(key: string): string | undefined {
    const v = this.rec[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw this.#bad(key, "a string", v);
    return v;
  }

  number(key: string): number | undefined {
    const v = this.rec[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) throw this.#bad(key, "a number", v);
    return v;
  }

  strings(key: string): string[] {
    const v = this.rec[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw this.#bad(key, "an array of strings", v);
    }
    return v as string[];
  }

  numbers(key: string): number[] {
    const v = this.rec[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) {
      throw this.#bad(key, "an array of numbers", v);
    }
    return v as number[];
  }

  object(key: string): JsonObject {
    const v = this.rec[key];
    if (v === undefined || v === null) return {};
    if (!isJsonObject(v)) throw this.#bad(key, "an object", v);
    return v;
  }

  #bad(key: string, expected: string, found: unknown): StoreFormatError {
    return new StoreFormatError(
      this.where,
      `record ${JSON.stringify(this.rec.id)}: "${key}" should be ${expected}, found ${
        JSON.stringify(found)?.slice(0, 80)
      }`,
    );
  }
}
