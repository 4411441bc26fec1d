"""Fixtures for the infra self-tests (they live in infra/fixtures.py so that
other test dirs can reuse them) and the ``infra`` marker."""

from infra.fixtures import *  # noqa: F401,F403  (pytest finds fixtures by name)


def pytest_configure(config):
    config.addinivalue_line("markers", "infra: starts real services (sshd, SLURM, registry, podman); needs root")
