"""`mlops` as a table of verbs (mlops.commands): --cluster on every cluster verb, handlers that return
nothing and raise MlopsError, main() that catches MlopsError only, and `config check|migrate`."""

import argparse
import ast
import subprocess
import sys
import types

import pytest

from mlops import cli, commands, errors, settings
from support.render import PROJECT_TEMPLATE, answers_for

COMMANDS = PROJECT_TEMPLATE / "src" / "mlops" / "commands"
SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
CLUSTER_VERBS = ["deploy", "submit", "launch", "status", "collect", "cancel", "images prune", "check-credentials",
                 "variables upload", "variables local", "known-hosts show", "known-hosts add"]  # fmt: skip
SECOND = '\n[clusters.bw]\nhost = "uc3.scc.kit.edu"\nuser = "ab_cd1234"\nworkdir = "/pfs/ws"\nauth = "key"\n' \
         'runtime = "podman"\nscheduler = "none"\n'  # fmt: skip


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser by its full name ("images prune")."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*path, name))
        if parser.get_default("handler"):
            found[" ".join(path)] = parser

    walk(cli.build_parser(), ())
    return found


def test_every_cluster_verb_takes_cluster_and_no_other_does():
    table = parsers()
    assert set(CLUSTER_VERBS) <= set(table)
    for verb, parser in table.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert ("--cluster" in options) == (verb in CLUSTER_VERBS), verb
        assert parser.get_default("verb") == verb


def test_handlers_are_one_call_and_return_nothing():
    """No handler (or any function of mlops.commands) returns an exit code: success returns None,
    failure raises an MlopsError."""
    for path in COMMANDS.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
                assert not returns, f"{path.name}:{node.name} returns a value"
                if node.name.startswith("_"):  # a handler
                    assert [a.arg for a in node.args.args] == ["args", "s"], f"{path.name}:{node.name}"


def test_a_room_adds_a_verb_and_a_verb_to_a_shared_group(monkeypatch):
    calls = []
    room = types.ModuleType("mlops.commands.demo")
    room.register = lambda verbs: (
        verbs.add("demo", lambda args, s: calls.append(("demo", s is None)), "a demo verb", settings=commands.NONE),
        verbs.group("images").add("tag", lambda args, s: calls.append(("tag", s.cluster.name)), "x", cluster=True),
    )
    monkeypatch.setitem(sys.modules, "mlops.commands.demo", room)
    monkeypatch.setattr(commands, "MODULES", (*commands.MODULES, "demo"))
    assert cli.main(["demo"]) == 0 and calls == [("demo", True)]
    assert {"images keys", "images prune", "images tag"} <= set(parsers())


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mlops.toml").write_text(settings.fill_toml(SKELETON, answers_for({})) + SECOND)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cluster_selects_the_block_and_an_unknown_name_is_bad_input(project, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr("mlops.cluster.verbs.cancel", lambda s, run_id: seen.append((s.cluster.name, run_id)))
    assert cli.main(["cancel", "--run-id", "p1"]) == 0 and cli.main(["cancel", "--cluster", "bw"]) == 0
    assert seen == [("hpc", "p1"), ("bw", None)]
    assert cli.main(["cancel", "--cluster", "juwels"]) == 2
    err = capsys.readouterr().err
    assert "mlops cancel: cluster 'juwels': mlops.toml has no [clusters.juwels] block. Fix: use one of: hpc, bw" in err


def test_main_turns_mlops_errors_into_exit_codes_and_nothing_else(project, monkeypatch, capsys):
    def fails(error):
        def handler(s, *args, **kwargs):
            raise error

        return handler

    for error, code in ((errors.WorkFailed("w"), 1), (errors.BadInput("b"), 2), (errors.TemplateOutOfDate("t"), 3),
                        (errors.CannotTell("c"), 4)):  # fmt: skip
        monkeypatch.setattr("mlops.cluster.verbs.status", fails(error))
        assert cli.main(["status", "--cluster", "bw"]) == code
        assert capsys.readouterr().err == f"mlops status: {error}\n"
    monkeypatch.setattr("mlops.cluster.verbs.status", fails(ValueError("a bug")))
    with pytest.raises(ValueError):  # a bug keeps its traceback
        cli.main(["status"])


def test_config_check_explains_a_block_field_by_field_and_lists_the_clusters(project, capsys):
    assert cli.main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "cluster hpc (default): jdoe@hpc.example.org:22, slurm, apptainer" in out
    assert "cluster bw: ab_cd1234@uc3.scc.kit.edu:22, none, podman, /pfs/ws" in out
    text = (project / "mlops.toml").read_text()
    (project / "mlops.toml").write_text(
        text.replace('auth = "key"\n', "").replace('scheduler = "none"', 'scheduler = "pbs"')
    )
    assert cli.main(["config", "check"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "mlops config check: mlops.toml: clusters.bw.auth (hpc_auth): is missing. Fix: add `auth = ...` under "
        "[clusters.bw]",
        "mlops.toml: clusters.bw.scheduler (scheduler): 'pbs' is not one of the choices. "
        "Fix: choose one of slurm, none.",
    ]


def test_config_migrate_rewrites_a_0_2_file_and_check_then_passes(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    text = settings.fill_toml(SKELETON, answers_for({}))
    (old / "mlops.toml").write_text(text)  # the 0.3 file ...
    new = tmp_path / "new"
    new.mkdir()
    legacy = LEGACY_FROM(text)  # ... and the same settings in the 0.2 layout
    (new / "mlops.toml").write_text(legacy)

    def mlops(*args, cwd):
        env = {"PYTHONPATH": str(PROJECT_TEMPLATE / "src"), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=cwd, env=env, capture_output=True, text=True)

    checked = mlops("config", "check", cwd=new)
    assert checked.returncode == 0 and "note: the file is in the 0.2 layout" in checked.stdout
    assert "Fix: `mlops config migrate` rewrites it as [clusters.hpc]" in checked.stdout
    migrated = mlops("config", "migrate", cwd=new)
    assert migrated.returncode == 0, migrated.stderr
    checked = mlops("config", "check", cwd=new)
    assert checked.returncode == 0 and "note:" not in checked.stdout, checked.stdout
    assert mlops("config", "migrate", cwd=new).stdout.endswith("nothing to do\n")
    bad = mlops("config", "migrate", "--name", "No Name", cwd=old)  # a 0.3 file: nothing to do, the name unused
    assert bad.returncode == 0


def LEGACY_FROM(text: str) -> str:
    """The 0.2 layout of a rendered 0.3 mlops.toml (as the template of 0.2 wrote it)."""
    import tomllib

    import tomlkit

    data = tomllib.loads(text)
    block = data["clusters"]["hpc"]
    doc = tomlkit.document()
    doc.add("project", data["project"])
    doc.add("cluster", {k: block[k] for k in ("host", "port", "user", "jump_host", "workdir", "auth", "ssh_key",
                                               "runtime", "use_gpu")})  # fmt: skip
    scheduler = {"kind": block["scheduler"]}
    scheduler.update({k: block[k] for k in ("partition", "account", "time", "cpus_per_task", "mem", "parallel")})
    doc.add("scheduler", scheduler)
    for section in ("build", "wandb"):
        doc.add(section, data[section])
    doc.add("notify", {"partition": block["notify_partition"], **data["notify"]})
    return tomlkit.dumps(doc)
