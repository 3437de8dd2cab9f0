/**
 * Ref names and ostree-ext ref escaping (vectors from specs/ostree-repo.md §9.1 and from
 * ostree-ext's own refescape tests), GKeyFile editing that keeps unknown content, and `[core]`
 * config parsing.
 */

import assert from "node:assert/strict";
import { parseRepoConfig } from "../../../lib/stores/ostree/config.ts";
import { RefError, RepoConfigError } from "../../../lib/stores/ostree/errors.ts";
import { KeyFile, KeyFileError } from "../../../lib/stores/ostree/keyfile.ts";
import {
  escapeForRef,
  imageRef,
  imageReferenceOfRef,
  isValidRefName,
  layerRef,
  parseRefspec,
  prefixEscapeForRef,
  unescapeForRef,
  unprefixUnescapeRef,
} from "../../../lib/stores/ostree/refs.ts";

Deno.test("ref escaping: spec and ostree-ext vectors", () => {
  assert.equal(escapeForRef("sha256:abc"), "sha256_3A_abc");
  assert.equal(
    escapeForRef("docker://quay.io/fedora/fedora-bootc:42"),
    "docker_3A__2F__2F_quay_2E_io/fedora/fedora-bootc_3A_42",
  );
  assert.equal(escapeForRef("localhost:5000/foo:latest"), "localhost_3A_5000/foo_3A_latest");
  assert.equal(
    prefixEscapeForRef("container", "registry:quay.io/coreos/fedora:latest"),
    "container/registry_3A_quay_2E_io/coreos/fedora_3A_latest",
  );
  // Unchanged strings, and "/" only between an alphanumeric and something more.
  assert.equal(escapeForRef("foo/bar/baz-blah/foo"), "foo/bar/baz-blah/foo");
  assert.equal(escapeForRef("/"), "_2F_");
  assert.equal(escapeForRef("blah/"), "blah_2F_");
  assert.equal(escapeForRef("a-/b"), "a-_2F_b");
  assert.equal(escapeForRef("under_score"), "under__score");
  assert.equal(escapeForRef("é☃😀"), "_E9__2603__1F600_");
  assert.throws(() => escapeForRef(""), RefError);
  assert.throws(() => escapeForRef("a\0b"), /embedded NUL/);
});

Deno.test("ref escaping round-trips and produces valid ref names", () => {
  const cases = [
    "localhost:5000/foo:latest",
    "fedora/x86_64/coreos",
    "/foo/bar/foo.oci-archive",
    "docker://quay.io/exampleos/blah:latest",
    "oci-archive:/path/to/foo.ociarchive",
    "/",
    "blah/",
    "/foo/",
    "a__b_c",
    "ünï/cødé",
    "sha256:" + "f".repeat(64),
  ];
  for (const s of cases) {
    const ref = prefixEscapeForRef("testprefix/blah", s);
    assert.ok(isValidRefName(ref), ref);
    assert.equal(unprefixUnescapeRef("testprefix/blah", ref), s);
  }
  assert.equal(
    imageRef("docker://quay.io/x:1"),
    "ostree/container/image/docker_3A__2F__2F_quay_2E_io/x_3A_1",
  );
  assert.equal(imageReferenceOfRef(imageRef("docker://quay.io/x:1")), "docker://quay.io/x:1");
  assert.equal(layerRef("sha256:ab"), "ostree/container/blob/sha256_3A_ab");
  assert.throws(() => unescapeForRef("bad_ZZ_"), /malformed escape/);
  assert.throws(() => unescapeForRef("open_3A"), /malformed escape/);
  assert.throws(() => unescapeForRef("sp ace"), /invalid character/);
  assert.throws(() => unprefixUnescapeRef("ostree/container/image", "other/x"), /not below/);
});

Deno.test("ref names and refspecs follow ostree's syntax", () => {
  for (const ok of ["a", "exampleos/stable", "ostree/0/1/0", "_x/y.z-1", "9"]) {
    assert.ok(isValidRefName(ok), ok);
  }
  for (const bad of ["", "/a", "a/", "a//b", "-a", ".a", "a b", "é", "a:b"]) {
    assert.ok(!isValidRefName(bad), bad);
  }
  assert.deepEqual(parseRefspec("origin:a/b"), { remote: "origin", ref: "a/b" });
  assert.deepEqual(parseRefspec("a/b"), { remote: null, ref: "a/b" });
  assert.throws(() => parseRefspec("bad remote:x"), /invalid remote name/);
});

Deno.test("GKeyFile: read values, edit, keep comments and unknown groups", () => {
  const text =
    '# repo config\n[core]\nrepo_version=1\nmode=bare\n\n[remote "fedora"]\nurl=https://example.com\ngpg-verify = true\n';
  const kf = KeyFile.parse(text, "config");
  assert.equal(kf.toString(), text, "unchanged file is written back byte for byte");
  assert.deepEqual(kf.groups(), ["core", 'remote "fedora"']);
  assert.equal(kf.getBoolean('remote "fedora"', "gpg-verify"), true);
  assert.equal(kf.getInteger("core", "repo_version"), 1);
  kf.setBoolean("composefs", "unified", true);
  kf.setString("core", "mode", "bare-user");
  kf.setString("core", "note", " leading space\tand tab");
  assert.equal(
    kf.toString(),
    "# repo config\n[core]\nrepo_version=1\nmode=bare-user\nnote=\\sleading space\\tand tab\n\n" +
      '[remote "fedora"]\nurl=https://example.com\ngpg-verify = true\n\n[composefs]\nunified=true\n',
  );
  const again = KeyFile.parse(kf.toString(), "config");
  assert.equal(again.getString("core", "note"), " leading space\tand tab");
  assert.equal(again.getBoolean("composefs", "unified"), true);
  assert.ok(again.remove("composefs", "unified"));
  assert.equal(again.getRaw("composefs", "unified"), undefined);
  assert.throws(() => KeyFile.parse("key=value\n", "x"), /outside of any \[group\]/);
  assert.throws(() => KeyFile.parse("[g]\nnot a pair\n", "x"), KeyFileError);
  assert.throws(
    () => KeyFile.parse("[g]\nb=maybe\n", "x").getBoolean("g", "b"),
    /expected true or false/,
  );
});

Deno.test("repo config: mode, defaults and refusals", () => {
  const c = parseRepoConfig("[core]\nrepo_version=1\n", "/r");
  assert.equal(c.mode, "bare", "mode defaults to bare");
  assert.equal(c.fsync, true);
  assert.equal(c.perObjectFsync, false);
  assert.equal(c.lockTimeoutSecs, 300);
  assert.equal(parseRepoConfig("[core]\nrepo_version=1\nmode=archive-z2\n", "/r").mode, "archive");
  const tuned = parseRepoConfig(
    "[core]\nrepo_version=1\nmode=bare-user\nfsync=false\nlock-timeout-secs=-1\ndisable-xattrs=true\n",
    "/r",
  );
  assert.deepEqual([tuned.mode, tuned.fsync, tuned.lockTimeoutSecs, tuned.disableXattrs], [
    "bare-user",
    false,
    -1,
    true,
  ]);
  assert.throws(
    () => parseRepoConfig("[core]\nmode=bare\n", "/r"),
    /\/r: config has no \[core\] repo_version/,
  );
  assert.throws(() => parseRepoConfig("[core]\nrepo_version=2\n", "/r"), /repo_version is "2"/);
  assert.throws(
    () => parseRepoConfig("[core]\nrepo_version=1\nmode=zip\n", "/r"),
    /unknown mode "zip"/,
  );
  assert.throws(
    () => parseRepoConfig("[core]\nrepo_version=1\narchive=true\n", "/r"),
    RepoConfigError,
  );
});
