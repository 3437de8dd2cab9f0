// unistore and podman share a store safely: while c/storage (the library podman uses, run as
// the containers-storage CLI) holds the layer store's lock, unistore waits and changes nothing;
// a long-running `podman system service` sees what unistore wrote without a restart, because
// unistore records write tokens (without a token, as the control shows, it would not).

import assert from "node:assert/strict";
import { close, openDir, statAt } from "../../../ffi/fs.ts";
import { CStorage } from "../../../lib/stores/cstorage/mod.ts";
import { runOk } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { buildRunnableImage } from "../../fixtures/cstorage/images.ts";
import { importOciImage } from "../../fixtures/cstorage/oci_import.ts";
import { podman, tempStore, TOOLS } from "../../fixtures/cstorage/podman.ts";

/** Resolves to "timeout" when `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pids holding POSIX write locks on inode `ino` (from /proc/locks). */
async function posixWriters(ino: bigint): Promise<number[]> {
  const pids: number[] = [];
  for (const line of (await Deno.readTextFile("/proc/locks")).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[1] === "POSIX" && f[3] === "WRITE" && f[5]?.endsWith(`:${ino}`)) pids.push(Number(f[4]));
  }
  return pids;
}

/** Every name below `root` with its size, and the bytes of every small file. */
async function snapshot(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${root}/${rel}` : root)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.lstat(`${root}/${p}`);
      lines.push(`${p} ${st.size}`);
      if (e.isDirectory) await walk(p);
      else if (e.isFile && st.size < 65536) {
        lines.push(btoa(String.fromCharCode(...await Deno.readFile(`${root}/${p}`))));
      }
    }
  };
  await walk("");
  return lines.sort().join("\n");
}

toolTest(
  "while containers-storage holds the layer lock, unistore waits and changes nothing",
  [TOOLS.podman, TOOLS.cstorage],
  async (bins) => {
    await using store = await tempStore();
    await podman(bins.podman, store, ["images"]); // podman creates the store and its lock files
    const oci = `${store.dir}/oci`;
    await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const cli = [
      bins["containers-storage"],
      "-g",
      store.root,
      "--run",
      store.runroot,
      "--storage-driver",
      "overlay",
    ];
    const layer = (await runOk([...cli, "create-layer"], { env: store.env })).stdout.trim();
    const fifo = `${store.dir}/diff.fifo`;
    await runOk(["mkfifo", fifo]);
    // applydiff holds layers.lock for writing while it reads the diff from the fifo.
    const applier = new Deno.Command(cli[0], {
      args: [...cli.slice(1), "applydiff", "-f", fifo, layer],
      env: store.env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const feeder = await Deno.open(fifo, { write: true });
    let fed = false;
    try {
      const rootFd = openDir(store.root);
      const ino = statAt(rootFd, "overlay-layers/layers.lock").ino;
      close(rootFd);
      for (let i = 0; i < 200 && !(await posixWriters(ino)).includes(applier.pid); i++) {
        await sleep(25);
      }
      assert.deepEqual(
        await posixWriters(ino),
        [applier.pid],
        "containers-storage holds layers.lock",
      );

      const before = await snapshot(store.root);
      using cs = await CStorage.open(store.root);
      const writing = importOciImage(cs, oci, "v1", ["localhost/locked:v1"]);
      assert.equal(
        await within(writing, 1500),
        "timeout",
        "unistore wrote while c/storage held the lock",
      );
      assert.equal(
        await snapshot(store.root),
        before,
        "the store changed while c/storage held the lock",
      );

      // An empty tar (two zero blocks) ends the diff; c/storage releases the lock, unistore goes on.
      await feeder.write(new Uint8Array(1024));
      feeder.close();
      fed = true;
      const done = await within(writing, 30000);
      assert.notEqual(done, "timeout", "unistore never got the lock");
      const out = await applier.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const listed = await podman(bins.podman, store, [
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
      ]);
      assert.equal(listed.stdout.trim(), "localhost/locked:v1");
    } finally {
      if (!fed) {
        try {
          await feeder.write(new Uint8Array(1024));
          feeder.close();
        } catch { /* already closed */ }
        await applier.output();
      }
    }
  },
  { root: true },
);

toolTest(
  "a running podman system service sees images unistore writes, without a restart",
  [TOOLS.podman],
  async (bins) => {
    await using store = await tempStore();
    await podman(bins.podman, store, ["images"]);
    const oci = `${store.dir}/oci`;
    const img = await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const shortId = img.configDigest.slice(7, 19);
    const sock = `${store.runroot}/podman.sock`;
    const service = new Deno.Command(bins.podman, {
      args: [...store.args, "system", "service", "--time=0", `unix://${sock}`],
      env: store.env,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      for (let i = 0; i < 400; i++) {
        if (await Deno.stat(sock).then(() => true, () => false)) break;
        await sleep(25);
      }
      const remote = async () =>
        (await runOk([
          bins.podman,
          "--url",
          `unix://${sock}`,
          "images",
          "--format",
          "{{.ID}} {{.Repository}}:{{.Tag}}",
        ]))
          .stdout.trim().split("\n").filter((l) => l !== "").sort();
      assert.deepEqual(await remote(), []); // the service has loaded the (empty) store

      using cs = await CStorage.open(store.root);
      await importOciImage(cs, oci, "v1", ["localhost/svc:v1"]);
      assert.deepEqual(await remote(), [`${shortId} localhost/svc:v1`]);

      // Control: images.json replaced without a new token on images.lock stays unseen by the
      // service (c/storage reloads images only on a token change), though a fresh podman sees it.
      const imagesJson = `${store.root}/overlay-images/images.json`;
      const records = JSON.parse(await Deno.readTextFile(imagesJson));
      records[0].names = ["localhost/renamed:v1"];
      await Deno.writeTextFile(`${imagesJson}.tmp`, JSON.stringify(records));
      await Deno.rename(`${imagesJson}.tmp`, imagesJson);
      assert.deepEqual(await remote(), [`${shortId} localhost/svc:v1`]);
      const fresh = await podman(bins.podman, store, [
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
      ]);
      assert.equal(fresh.stdout.trim(), "localhost/renamed:v1");

      // unistore's next write records a token: the same service now sees the current names.
      await importOciImage(cs, oci, "v1", ["localhost/svc:v2"]);
      assert.deepEqual(await remote(), [
        `${shortId} localhost/renamed:v1`,
        `${shortId} localhost/svc:v2`,
      ]);
    } finally {
      service.kill("SIGTERM");
      const exited = await within(service.status, 10000);
      if (exited === "timeout") {
        service.kill("SIGKILL");
        await service.status;
      }
    }
  },
  { root: true },
);
