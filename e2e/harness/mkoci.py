#!/usr/bin/env python3
"""Pack a root filesystem directory into a single-layer OCI image archive, stdlib only, reproducibly.

usage: mkoci.py ROOTFS NAME OUT.tar [--entrypoint A,B] [--cmd A,B] [--user UID:GID] [--env K=V]...
                [--workdir DIR]

`ctr -n k8s.io images import OUT.tar` (and `kind load image-archive`) name the image NAME: it is written
to the index annotations io.containerd.image.name and org.opencontainers.image.ref.name. Every entry is
owned by root with mtime 0 unless its mode says otherwise, so the same input gives the same digest.
"""
import argparse
import hashlib
import io
import json
import os
import tarfile


def layer(rootfs: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        paths = []
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            paths += [os.path.join(top, n) for n in dirs + sorted(files)]
        for path in sorted(paths):
            info = t.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isreg():
                with open(path, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
    return buf.getvalue()


def add(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    t.addfile(info, io.BytesIO(data))


def add_blob(t: tarfile.TarFile, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    add(t, f"blobs/sha256/{digest}", data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rootfs")
    p.add_argument("name")
    p.add_argument("out")
    p.add_argument("--entrypoint", type=lambda s: s.split(","))
    p.add_argument("--cmd", type=lambda s: s.split(","))
    p.add_argument("--user")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    a = p.parse_args()

    tar = layer(a.rootfs)
    config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env],
              "WorkingDir": a.workdir}
    for key, value in (("Entrypoint", a.entrypoint), ("Cmd", a.cmd), ("User", a.user)):
        if value:
            config[key] = value
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created_by": f"mkoci.py {os.path.basename(os.path.normpath(a.rootfs))}"}],
    }
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w") as t:
        add(t, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        layer_desc = add_blob(t, tar)
        config_desc = add_blob(t, json.dumps(image_config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = add_blob(t, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": a.name,
                                "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]},
            }],
        }
        add(t, "index.json", json.dumps(index, sort_keys=True).encode())
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.name} {manifest_desc['digest']} ({layer_desc['size']} bytes of layer)")


if __name__ == "__main__":
    main()
