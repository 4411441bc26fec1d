"""mlops.toml with several clusters: the [clusters.NAME] layout, the 0.2 layout, problems field by field,
the cluster_name answer and `mlops config migrate` (mlops.settings, mlops.settings_write)."""

import dataclasses
import io
import os
import tomllib
from pathlib import Path

import pytest

from mlops import errors, options, settings, settings_write
from support.render import PROJECT_TEMPLATE, answers_for

SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
SECOND = """
[clusters.bw]
host = "uc3.scc.kit.edu"
user = "ab_cd1234"
workdir = "/pfs/work9/workspace/scratch/ab_cd1234-mlops"
auth = "totp+password"
runtime = "singularity"
scheduler = "slurm"
partition = "cpu"
mem = "16G"
"""
# A 0.2 file as the template 477e52a rendered it (trimmed to what matters; comments kept).
OLD = """# my settings
[project]
name = "Forecasting Experiments"
slug = "forecasting-experiments"
description = "x"
author_name = "Jane Doe"
author_email = "jane.doe@example.org"
python_version = "3.11"
ml_framework = "scikit-learn"
gitlab_host = "gitlab.example.com"

[cluster]
host = "Login.HPC.example.org"
port = 2222
user = "jdoe"
# [user@]host[:port]; empty = connect directly
jump_host = ""
workdir = "/scratch/jdoe"
auth = "totp"
ssh_key = "~/.ssh/id_ed25519"
runtime = "apptainer"
use_gpu = false

[scheduler]
# slurm | none
kind = "slurm"
partition = "cpu"
account = ""
time = "02:00:00"
cpus_per_task = 2
mem = "8G"  # we need more
parallel = 4

[build]
builder = "buildah"
base_image = "python:3.11-slim"

[wandb]
mode = "offline"
entity = ""
project = "forecasting-experiments"

[notify]
# partition of the small notification job (empty = scheduler.partition)
partition = "short"
timeout_s = 30
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mlops.toml").write_text(text, encoding="utf-8")
    return tmp_path


def rendered(**changes) -> str:
    return settings.fill_toml(SKELETON, answers_for(changes))


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(errors.Problems) as info:
        settings.load(write(tmp_path, text))
    assert info.value.exit_code == 2
    assert all("Fix:" in p for p in info.value.problems), info.value.problems
    return info.value.problems


def test_two_clusters_the_first_is_the_default_and_select_switches(tmp_path):
    text = rendered().replace('default = "hpc"\n', "") + SECOND
    s = settings.load(write(tmp_path, text))
    assert s.clusters == ("hpc", "bw") and s.default_cluster == "hpc" and s.cluster.name == "hpc"
    bw = settings.load(tmp_path, cluster="bw")
    assert bw == s.select("bw") and bw.cluster.name == "bw" and bw.cluster.port == 22  # optional keys: defaults
    assert (bw.cluster.jump_host, bw.cluster.ssh_key, bw.cluster.use_gpu) == ("", "~/.ssh/id_ed25519", False)
    assert (bw.scheduler.kind, bw.scheduler.partition, bw.scheduler.mem, bw.scheduler.time) == (
        "slurm", "cpu", "16G", "01:00:00")  # fmt: skip
    assert bw.cluster_root == "/pfs/work9/workspace/scratch/ab_cd1234-mlops/forecasting-experiments"
    assert s.cluster_root == "/home/jdoe/mlops/forecasting-experiments"
    assert s.answers() == bw.answers() == answers_for({})  # the template's answers: the first block
    assert bw.answers("bw")["hpc_host"] == "uc3.scc.kit.edu" and bw.answers("bw")["cluster_name"] == "bw"
    with pytest.raises(errors.BadInput, match=r"cluster 'nope': .* Fix: use one of: hpc, bw"):
        settings.load(tmp_path, cluster="nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        bw.cluster.name = "x"  # type: ignore[misc]


def test_the_default_key_chooses_another_cluster(tmp_path):
    text = rendered().replace('default = "hpc"', 'default = "bw"') + SECOND
    s = settings.load(write(tmp_path, text))
    assert s.default_cluster == "bw" and s.cluster.name == "bw" and s.select(None).cluster.name == "bw"
    assert s.answers()["cluster_name"] == "hpc"  # still the first block: the one the template asked for


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda t: t.replace('default = "hpc"', 'default = "uni"'),
         "clusters.default: uni is not a [clusters.NAME] block of this file. Fix: name one of: hpc"),
        (lambda t: t + SECOND.replace('user = "ab_cd1234"\n', ""),
         "clusters.bw.user (hpc_user): is missing. Fix: add `user = ...` under [clusters.bw]"),
        (lambda t: t + SECOND.replace('mem = "16G"', 'mem = "16 GB"'),
         "clusters.bw.mem: '16 GB' is not a SLURM memory size. Fix:"),
        (lambda t: t + SECOND.replace('mem = "16G"', 'memory = "16G"'),
         "clusters.bw.memory: is not a setting of a cluster block. Fix: remove it or check the spelling"),
        (lambda t: t + SECOND.replace('host = "uc3.scc.kit.edu"', 'host = "https://uc3.scc.kit.edu"'),
         "clusters.bw.host (hpc_host): 'https://uc3.scc.kit.edu' contains a URL scheme. Fix: give only the host"),
        (lambda t: t + SECOND.replace('scheduler = "slurm"', 'scheduler = "none"'),
         "clusters.bw.partition (slurm_partition): is set to 'cpu' but scheduler is 'none'. Fix: clear"),
        (lambda t: t + SECOND.replace('runtime = "singularity"', 'runtime = "charliecloud"\nuse_gpu = true'),
         "clusters.bw.use_gpu (use_gpu): 'yes' has no effect with ml_framework 'scikit-learn'"),
        (lambda t: t + SECOND.replace("[clusters.bw]", "[clusters.BW]"),
         "clusters.BW: 'BW' is not a valid cluster name. Fix: use 1 to 32 lowercase letters"),
        (lambda t: t.replace('default = "hpc"\n', "") + SECOND.replace("[clusters.bw]", "[clusters.default]"),
         "clusters.default: 'default' is reserved"),
        (lambda t: t + SECOND.replace("[clusters.bw]", "[clusters.hpc2]").replace("uc3.scc.kit.edu", "hpc.example.org")
         .replace("/pfs/work9/workspace/scratch/ab_cd1234-mlops", "/home/jdoe/mlops/"),
         "clusters.hpc2: has the same host, port and workdir as clusters.hpc, so both would use the same images"),
        (lambda t: t.replace("[clusters]\n", "[clusters]\nhost = \"x\"\n"),
         "clusters.host: is not a [clusters.NAME] block. Fix: put cluster keys under a [clusters.NAME] header"),
        (lambda t: t[: t.index("[clusters]")] + t[t.index("[build]"):],
         "clusters: no cluster is defined. Fix: add a [clusters.NAME] block"),
        (lambda t: t + '\n[cluster]\nhost = "x"\n',
         "cluster: the 0.2 sections [cluster]/[scheduler] and [clusters.NAME] blocks are both in the file"),
    ],
)  # fmt: skip
def test_a_missing_or_inconsistent_block_is_explained_field_by_field(tmp_path, change, expected):
    found = problems_of(tmp_path, change(rendered()))
    assert any(p.startswith(expected) for p in found), found


def test_a_project_problem_is_named_once_not_per_block(tmp_path):
    text = rendered().replace('author_email = "jane.doe@example.org"', 'author_email = "jane"') + SECOND
    found = problems_of(tmp_path, text)
    assert found == ["project.author_email (author_email): 'jane' is not an e-mail address. "
                     "Fix: use the form name@example.org."]  # fmt: skip


def test_the_0_2_layout_loads_as_one_cluster_named_by_its_host(tmp_path):
    s = settings.load(write(tmp_path, OLD))
    assert s.layout == settings.LAYOUT_0_2 and s.clusters == ("login",) and s.cluster.name == "login"
    assert (s.cluster.port, s.scheduler.kind, s.scheduler.mem, s.scheduler.notify_partition) == (
        2222, "slurm", "8G", "short")  # fmt: skip
    assert s.answers()["cluster_name"] == "login"
    found = problems_of(tmp_path, OLD.replace('mem = "8G"', 'mem = "8 GB"').replace("parallel = 4", "paralel = 4"))
    assert any(p.startswith("scheduler.mem: '8 GB' is not a SLURM memory size") for p in found), found
    assert any(p.startswith("scheduler.paralel: is not a setting of this template") for p in found), found
    found = problems_of(tmp_path, OLD.replace('kind = "slurm"', 'kind = "pbs"'))
    assert found[0].startswith("scheduler.kind (scheduler): 'pbs' is not one of the choices"), found
    long_label = "a" * 40
    found = problems_of(tmp_path, OLD.replace("Login.HPC.example.org", f"{long_label}.example.org"))
    assert found[0].startswith("cluster.host (hpc_host): a 0.2 file names its one cluster after the host's"), found
    assert "mlops config migrate --name NAME" in found[0]


def test_migrate_moves_every_key_with_its_comments_and_loads_the_same(tmp_path):
    new_text = settings_write.migrate_text(OLD)
    data = tomllib.loads(new_text)
    assert set(data) == {"project", "clusters", "build", "wandb", "notify"}
    assert data["clusters"]["default"] == "login" and data["notify"] == {"timeout_s": 30}
    block = data["clusters"]["login"]
    assert block["scheduler"] == "slurm" and block["notify_partition"] == "short" and block["mem"] == "8G"
    for comment in (
        "# my settings",
        "# [user@]host[:port]; empty = connect directly",
        "# slurm | none",
        'mem = "8G"  # we need more',
        "# partition of the small notification job",
    ):
        assert new_text.count(comment) == 1, comment  # fmt: skip
    assert new_text.index("[clusters.login]") < new_text.index("# partition of the small") < new_text.index("[build]")
    old = settings.load(write(tmp_path, OLD))
    new = settings.load(write(tmp_path, new_text))
    assert new.layout == settings.LAYOUT and dataclasses.replace(old, layout=new.layout) == new
    with pytest.raises(errors.BadInput, match="not in the 0.2 layout"):
        settings_write.migrate_text(new_text)


def test_migrate_with_a_name_and_what_it_refuses(tmp_path):
    text = settings_write.migrate_text(OLD, name="uni")
    assert settings.load(write(tmp_path, text)).clusters == ("uni",)
    with pytest.raises(errors.BadInput, match="--name: 'Uni' is not a valid cluster name"):
        settings_write.migrate_text(OLD, name="Uni")
    with pytest.raises(errors.Problems, match="scheduler.mem"):  # a 0.2 file with a bad value: its own terms
        settings_write.migrate_text(OLD.replace('mem = "8G"', 'mem = "lots"'))


def test_migrate_writes_atomically_and_keeps_the_mode(tmp_path):
    path = write(tmp_path, OLD) / "mlops.toml"
    path.chmod(0o640)
    said = io.StringIO()
    settings_write.migrate(tmp_path, out=said)
    assert "rewritten in the 0.3 layout as [clusters.login]" in said.getvalue()
    assert settings.load(tmp_path).layout == settings.LAYOUT and (path.stat().st_mode & 0o777) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["mlops.toml"]  # no temp file left
    before = path.read_text()
    settings_write.migrate(tmp_path, out=said)  # again: nothing to do, nothing written
    assert "already in the 0.3 layout" in said.getvalue() and path.read_text() == before
    path.write_text(OLD.replace('mem = "8G"', 'mem = "lots"'))
    with pytest.raises(errors.Problems):
        settings_write.migrate(tmp_path, out=said)
    assert path.read_text() == OLD.replace('mem = "8G"', 'mem = "lots"') and sorted(os.listdir(tmp_path)) == [
        "mlops.toml"
    ]


@pytest.mark.parametrize(
    "host, name",
    [("hpc.example.org", "hpc"), ("Login01.Cluster.EDU", "login01"), ("127.0.0.1", "127"), ("juwels", "juwels")],
)
def test_cluster_name_is_derived_from_the_first_host_label(host, name):
    answers = answers_for({"hpc_host": host})
    assert answers["cluster_name"] == name and options.validate(answers) == []
    text = settings.fill_toml(SKELETON, answers)
    assert tomllib.loads(text)["clusters"]["default"] == name and f"[clusters.{name}]" in text


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"cluster_name": "My Cluster"}, "cluster_name: 'My Cluster' is not a valid cluster name"),
        ({"cluster_name": "-uni"}, "cluster_name: '-uni' is not a valid cluster name"),
        ({"cluster_name": "default"}, "cluster_name: 'default' is reserved"),
        ({"hpc_host": "a" * 40 + ".example.org"},
         "cluster_name: '" + "a" * 40 + "' is not a valid cluster name (derived from hpc_host"),
    ],
)  # fmt: skip
def test_bad_cluster_names_are_refused_with_the_fix(changes, expected):
    found = [str(p) for p in options.validate(answers_for(changes))]
    assert any(p.startswith(expected) for p in found), found


def test_a_bad_host_is_named_once_not_again_through_the_name_derived_from_it():
    found = [p.field for p in options.validate(answers_for({"hpc_host": "https://hpc.example.org"}))]
    assert found == ["hpc_host"]


def test_conflict_markers_and_a_0_2_key_left_in_a_0_3_file_are_named_with_the_way_out(tmp_path):
    text = rendered()
    conflicted = text.replace("[notify]\n", '[notify]\n<<<<<<< ours\npartition = "short"\n=======\n>>>>>>> theirs\n')
    found = problems_of(tmp_path, conflicted)
    assert len(found) == 1 and found[0].startswith("line ") and "merge conflict" in found[0]
    assert "git checkout --ours mlops.toml && mlops config migrate" in found[0]
    found = problems_of(tmp_path, text.replace("[notify]\n", '[notify]\npartition = "short"\n'))
    assert found == [
        "notify.partition: in the 0.3 layout this is `notify_partition` in each [clusters.NAME] block. "
        "Fix: move it there as `notify_partition = ...` (or remove it: the default is the cluster's partition)"
    ]
