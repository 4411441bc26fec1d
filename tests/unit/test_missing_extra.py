"""A laptop installed with `.[dev]` only: a verb that needs the cluster or GitLab extra says which one
to install (exit 2), never a ModuleNotFoundError traceback; any other missing module stays a bug."""

from __future__ import annotations

import sys

import pytest

from mlops import cli, errors
from mlops.credentials import online


def test_a_known_optional_module_names_its_extra():
    problem = errors.missing_extra(ModuleNotFoundError("No module named 'gitlab'", name="gitlab"))
    assert problem is not None and problem.exit_code == 2
    assert str(problem) == 'python-gitlab is not installed (the [gitlab] extra). Fix: pip install -e ".[gitlab]"'
    assert "[cluster]" in str(errors.missing_extra(ModuleNotFoundError(name="paramiko.transport")))
    assert errors.missing_extra(ModuleNotFoundError(name="numpy")) is None


def run_verb(monkeypatch, handler) -> int:
    """`mlops runs` with its handler replaced by `handler` (no mlops.toml needed)."""
    parser = cli.build_parser()
    args = parser.parse_args(["runs"])
    args.handler = handler
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    monkeypatch.setattr(cli, "_settings", lambda a: None)
    return cli.main([])


def test_the_command_exits_2_with_the_install_line(monkeypatch, capsys):
    def handler(args, settings):
        import gitlab  # noqa: F401  (blocked below, as on a laptop without the extra)

    monkeypatch.setitem(sys.modules, "gitlab", None)
    assert run_verb(monkeypatch, handler) == 2
    err = capsys.readouterr().err
    assert 'python-gitlab is not installed (the [gitlab] extra). Fix: pip install -e ".[gitlab]"' in err


def test_an_unknown_missing_module_keeps_its_traceback(monkeypatch):
    def handler(args, settings):
        import no_such_dependency  # noqa: F401

    monkeypatch.setitem(sys.modules, "no_such_dependency", None)
    with pytest.raises(ModuleNotFoundError):
        run_verb(monkeypatch, handler)


def test_check_credentials_online_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "paramiko", None)

    class Cluster:
        name, user, host, port, auth, jump_host, ssh_key = "uni", "jdoe", "login.example.org", 22, "key", "", ""

    class Settings:
        cluster, root = Cluster(), None

    def session(*args, **kwargs):
        import paramiko  # noqa: F401

    monkeypatch.setattr("mlops.ssh.Session", session)
    monkeypatch.setattr("mlops.ssh.known_hosts.pinned_path", lambda root: None)
    result = online.check_login(Settings())
    assert result.status == "FAIL" and 'pip install -e ".[cluster]"' in result.detail, result
