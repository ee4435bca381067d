"""Package one static binary as a single-layer OCI image archive, ko's layout.

The conformance suite's test images are plain Go programs; a Docker engine or a base image
is not needed for them: the binary goes to /ko-app/NAME (the entrypoint), user 65532. The
archive's index names the image (io.containerd.image.name), so `ctr images import` tags it.

Usage: python3 ociimage.py BINARY IMAGE_REF OUT.tar
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

OCI = "application/vnd.oci.image"


def _layer(binary: Path, name: str) -> bytes:
    """A reproducible tar of ko-app/ and ko-app/NAME (mtime 0, root-owned, 0755)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("ko-app")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        data = binary.read_bytes()
        f = tarfile.TarInfo(f"ko-app/{name}")
        f.mode, f.size = 0o755, len(data)
        tar.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def build(binary: Path, ref: str) -> dict[str, bytes]:
    """The files of an OCI image layout (path -> content) holding one image named ref."""
    name = binary.name
    layer = _layer(binary, name)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": [f"/ko-app/{name}"],
                "User": "65532",
                "Env": ["PATH=/ko-app:/usr/local/bin:/usr/bin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": f"{OCI}.manifest.v1+json",
            "config": {
                "mediaType": f"{OCI}.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": f"{OCI}.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": f"{OCI}.manifest.v1+json",
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + _digest(blob).removeprefix("sha256:")] = blob
    return files


def write_archive(files: dict[str, bytes], out: Path) -> None:
    with tarfile.open(out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, ref, out = Path(argv[0]), argv[1], Path(argv[2])
    if not binary.is_file():
        print(f"ociimage: no such binary: {binary}", file=sys.stderr)
        return 2
    write_archive(build(binary, ref), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
