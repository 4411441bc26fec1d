"""The images room: build the stage images, ship their layers, convert them on the cluster.

keys.py      input keys: what decides a rebuild
registry.py  registry HTTP API v2: manifest copies for cache hits
builders.py  buildah / BuildKit / kaniko / img: a docker-archive per image, and the push
layout.py    OCI image layouts: content-addressed blobs, read and verified
build.py     `mlops build`: the build cache (by input key) and the artifact images/oci + images.json
store.py     `mlops deploy`: the cluster's blob store, only missing blobs sent, verified, locked
store.sh     the cluster side of the store (runs on the login node from stdin)
runtime.py   per runtime: the conversion command, the "is it converted" test, the run argv
"""

from __future__ import annotations

from .build import MANIFEST, Settings, build, keys, read_manifest, settings
from .errors import BuildError, DeployError
from .store import deploy, prune, write_report

__all__ = [
    "MANIFEST",
    "BuildError",
    "DeployError",
    "Settings",
    "build",
    "deploy",
    "keys",
    "prune",
    "read_manifest",
    "settings",
    "write_report",
]
