"""Tier 'e2e' (support/tiers.py): every test in this folder is marked e2e.

The fixtures the e2e modules share (module scope: one real cluster per module; a module that
needs another MaxArraySize sets SLURM_MAX_ARRAY_SIZE, see support/infra/fixtures.py):
  cache_dir, store_env   the shared private container store (buildah --layers cache reused across
                         tiers, MLOPS_TEST_CACHE) with the debootstrap python base image
  cluster                login details as a user sets them (key file, pinned known_hosts, codes) for
                         the module's sshd + SLURM + rootless podman, and a work dir on the cluster
  gitlab                 GitLab's trigger endpoint on 127.0.0.1 (project.gitlab_host of a render)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.infra._util import shared_tmpdir
from support.infra.baseimage import DEFAULT_IMAGE, build_base_rootfs, import_base_image, private_store
from support.infra.fixtures import rootless_podman, slurm_cluster, ssh_server  # noqa: F401 (fixtures)
from support.infra.sshd_totp import CodeBook
from support.project import TriggerStandIn
from support.tiers import mark_folder

pytest_collection_modifyitems = mark_folder(__file__)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def store_env(cache_dir) -> dict:
    """The shared private container store (buildah --layers cache reused across tiers) + base image."""
    env = private_store(cache_dir / "containers")
    import_base_image(env, DEFAULT_IMAGE, rootfs=build_base_rootfs(cache_dir / "base-rootfs"))
    return env


@pytest.fixture(scope="module")
def cluster(ssh_server, rootless_podman, tmp_path_factory):  # noqa: F811 (fixtures)
    """Login details as a user would set them: key file, pinned known_hosts, codes."""
    workdir = shared_tmpdir("mlops-e2e-hpc-")
    shutil.chown(workdir, ssh_server.user, ssh_server.user)
    secrets = tmp_path_factory.mktemp("secrets")
    known = secrets / "known_hosts"
    ssh_server.write_known_hosts(known)
    yield {"server": ssh_server, "workdir": workdir, "known_hosts": known, "codes": CodeBook(ssh_server.totp_secret)}
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def gitlab():
    """GitLab's trigger endpoint on 127.0.0.1 (project.gitlab_host of the rendered project)."""
    with TriggerStandIn() as stand_in:
        yield stand_in
