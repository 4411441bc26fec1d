"""Reusable pytest fixtures over the infra classes.

Use from another test dir either with ``pytest_plugins = ["infra.fixtures"]`` in
the ROOT conftest (tests/conftest.py; pytest forbids it in nested conftests) or
``from infra.fixtures import *`` in that dir's conftest.py.  Needs root.

Fixtures (scope):
  slurm_cluster (module)  LocalSlurm; MaxArraySize from the test module's
                          ``SLURM_MAX_ARRAY_SIZE`` (default 1001)
  rootless_podman (module) RootlessPodmanStore for the ssh user: a private
                          rootless store (no ~/.config, no shared pause process)
  ssh_server (module)     TotpSshServer(auth='totp', user TEST_USER) with SetEnv
                          of slurm_cluster.ssh_env + rootless_podman.env, so
                          ``ssh host sbatch ...`` / ``ssh host podman ...`` just work
  ssh_transport (module)  ONE logged-in paramiko Transport (DISALLOW_REUSE: a
                          TOTP code works once per 30 s, so share the login)
  ssh_run (module)        cmd -> (rc, out, err) over ssh_transport
  registry (module)       LocalRegistry on 127.0.0.1:<free port>
  base_image (session)    SimpleNamespace(name, env, rootfs, archive): the
                          debootstrap python base image in a private store, plus
                          a docker-archive readable by the ssh user.  The rootfs
                          is cached in $MLOPS_INFRA_CACHE if set (reused across
                          sessions), else in a session tmp dir.
"""

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from ._util import shared_tmpdir
from .baseimage import DEFAULT_IMAGE, build_base_rootfs, destroy_store, import_base_image, private_store, save_archive
from .podman import RootlessPodmanStore
from .registry import LocalRegistry
from .slurm import LocalSlurm
from .sshd_totp import TotpSshServer, exec_command
from .users import ensure_user

TEST_USER = "mlopshpc"

__all__ = ["slurm_cluster", "ssh_server", "ssh_transport", "ssh_run", "registry", "base_image", "rootless_podman"]


@pytest.fixture(scope="module")
def slurm_cluster(request):
    size = getattr(request.module, "SLURM_MAX_ARRAY_SIZE", 1001)
    with LocalSlurm(max_array_size=size) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def rootless_podman():
    ensure_user(TEST_USER)
    with RootlessPodmanStore(TEST_USER) as store:
        yield store


@pytest.fixture(scope="module")
def ssh_server(slurm_cluster, rootless_podman):
    env = {**slurm_cluster.ssh_env, **rootless_podman.env}
    with TotpSshServer(user=TEST_USER, auth="totp", setenv=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def ssh_transport(ssh_server):
    t = ssh_server.transport()
    yield t
    t.close()


@pytest.fixture(scope="module")
def ssh_run(ssh_transport):
    def _run(cmd, timeout=300, stdin=None):
        return exec_command(ssh_transport, cmd, timeout=timeout, stdin=stdin)

    return _run


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="session")
def base_image(tmp_path_factory):
    cache = Path(
        os.environ.get("MLOPS_INFRA_CACHE")
        or os.environ.get("MLOPS_TEST_CACHE")
        or tmp_path_factory.mktemp("infra-cache")
    )
    rootfs = build_base_rootfs(cache / "base-rootfs")
    store_dir = tmp_path_factory.mktemp("infra-store")
    env = private_store(store_dir)
    name = import_base_image(env, DEFAULT_IMAGE, rootfs=rootfs)
    shared = shared_tmpdir("mlops-base-")  # the ssh user must be able to read it
    archive = save_archive(env, name, shared / "python-base.tar")
    archive.chmod(0o644)
    yield SimpleNamespace(name=name, env=env, rootfs=rootfs, archive=archive, store_dir=store_dir)
    destroy_store(env, store_dir)
    shutil.rmtree(shared, ignore_errors=True)
