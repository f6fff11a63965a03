#!/usr/bin/env python3
"""tests/image/archive.py - craft and alter image archives for tests/image/image.sh.

  archive.py layer-escape OUT HOSTDIR  a `docker save`-form archive whose one layer holds a
                                       symlink to HOSTDIR (an absolute host path) and a file
                                       written through it, plus a file named "../escaped"
                                       when OUT ends in .dotdot.tar
  archive.py tamper IN OUT PATH        rewrite a `docker save`-form archive so that the file PATH
                                       (no leading '/') in its first layer has one byte changed,
                                       with every digest (layer, diff_id, config) recomputed, as
                                       an attacker who can write the archive would do
"""
import hashlib
import io
import json
import sys
import tarfile


def add_bytes(tf, name, data, mode=0o644, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def docker_archive(out, layers, entry):
    """layers: list of layer tar bytes."""
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Entrypoint": entry},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    cfg_b = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_b).hexdigest() + ".json"
    names = ["layer%d/layer.tar" % i for i in range(len(layers))]
    man = [{"Config": cfg_name, "RepoTags": ["scptest/crafted:1"], "Layers": names}]
    with tarfile.open(out, "w") as tf:
        for n, l in zip(names, layers):
            add_bytes(tf, n, l)
        add_bytes(tf, cfg_name, cfg_b)
        add_bytes(tf, "manifest.json", json.dumps(man).encode())


def layer_escape(out, hostdir):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        # the same path inside the image, so that the symlinks resolve (inside the root)
        parts = hostdir.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            add_bytes(tf, "/".join(parts[:i]) + "/", b"", mode=0o755, kind=tarfile.DIRTYPE)
        add_bytes(tf, "escape", b"", kind=tarfile.SYMTYPE, link=hostdir)
        add_bytes(tf, "escape/pwned", b"written through a symlink\n")
        add_bytes(tf, "rel", b"", kind=tarfile.SYMTYPE, link="../../../../../../" + hostdir.lstrip("/"))
        add_bytes(tf, "rel/pwned2", b"written through a relative symlink\n")
        if out.endswith(".dotdot.tar"):
            add_bytes(tf, "../escaped", b"x\n")
        add_bytes(tf, "bin/prog", b"#!/bin/true\n", mode=0o755)
    docker_archive(out, [buf.getvalue()], ["/bin/prog"])


def tamper(inp, out, path):
    with tarfile.open(inp) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    man = json.loads(files["manifest.json"])
    cfg_name = man[0]["Config"]
    cfg = json.loads(files[cfg_name])
    first = man[0]["Layers"][0]
    src = tarfile.open(fileobj=io.BytesIO(files[first]))
    buf = io.BytesIO()
    hit = False
    with tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.isfile() and m.name.lstrip("./") == path:
                data = bytearray(data)
                data[len(data) // 2] ^= 1
                data = bytes(data)
                hit = True
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    if not hit:
        sys.exit("tamper: %s not in the first layer" % path)
    new_layer = buf.getvalue()
    digest = hashlib.sha256(new_layer).hexdigest()
    new_name = "blobs/sha256/" + digest
    del files[first]
    files[new_name] = new_layer
    cfg["rootfs"]["diff_ids"][0] = "sha256:" + digest
    cfg_b = json.dumps(cfg).encode()
    new_cfg = "blobs/sha256/" + hashlib.sha256(cfg_b).hexdigest()
    del files[cfg_name]
    files[new_cfg] = cfg_b
    man[0]["Config"] = new_cfg
    man[0]["Layers"][0] = new_name
    files["manifest.json"] = json.dumps(man).encode()
    files.pop("index.json", None)  # the attacker rewrites the Docker form only
    with tarfile.open(out, "w") as tf:
        for n in sorted(files):
            add_bytes(tf, n, files[n])


if __name__ == "__main__":
    if sys.argv[1] == "layer-escape":
        layer_escape(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "tamper":
        tamper(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
