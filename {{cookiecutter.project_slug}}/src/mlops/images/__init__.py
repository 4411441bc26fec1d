"""The images room: build the stage images, ship their layers, convert them on the cluster.

options.py   the build options (BuildOptions): a leaf others may import
keys.py      input keys: what decides a rebuild
registry.py  registry HTTP API v2: manifest copies for cache hits
builders.py  buildah / BuildKit / kaniko / img: a docker-archive per image, and the push
layout.py    OCI image layouts: content-addressed blobs, read and verified
build.py     `mlops build`: the build cache (by input key) and the artifact images/oci + images.json
scripts.py   the package shell files run on the login node from stdin (store.sh, convert.sh)
store.py     the cluster's blob store: only missing blobs sent, verified, locked; `mlops images prune`
store.sh     the cluster side of the store (bash, coreutils, flock, sha256sum)
deployment.py `mlops deploy`: the flow (local checks, tools, upload, convert, record) and its report
convert.py   conversion per runtime (tools and versions checked, the FUSE probe); convert.sh its shell side
runtime.py   per runtime: image forms, what each stage's container sees, the run argv
"""

from __future__ import annotations

from .build import MANIFEST, build, keys, options, read_manifest
from .deployment import deploy, deployed, local_images, write_report
from .errors import BuildError, DeployError, DeploySetupError
from .options import BuildOptions
from .store import prune

__all__ = [
    "MANIFEST",
    "BuildError",
    "BuildOptions",
    "DeployError",
    "DeploySetupError",
    "build",
    "deploy",
    "deployed",
    "keys",
    "local_images",
    "options",
    "prune",
    "read_manifest",
    "write_report",
]
