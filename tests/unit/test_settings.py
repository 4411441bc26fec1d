"""Unit tests of mlops.settings (mlops.toml read once, typed, checked) and of the helpers it feeds."""

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from mlops import errors, options, params, rundir, runenv, settings, stages
from mlops.results.reader import file_tail
from support.render import DEFAULTS, PROJECT_TEMPLATE, answers_for

SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
BLOCK = "clusters.hpc"  # the default answers' cluster block (hpc_host hpc.example.org)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mlops.toml").write_text(text, encoding="utf-8")
    return tmp_path


def rendered_toml(**changes) -> str:
    return settings.fill_toml(SKELETON, answers_for(changes))


def edit(text: str, dotted: str, value: str) -> str:
    """Replace the value of one `key = ...` line of one section (as a user edits the file);
    `dotted` is "section.key" or "clusters.NAME.key"."""
    section, key = dotted.rsplit(".", 1)
    lines, current = text.splitlines(), None
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    raise AssertionError(dotted)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(errors.Problems) as info:
        settings.load(write(tmp_path, text))
    assert info.value.exit_code == 2 and info.value.source == "mlops.toml"
    return info.value.problems


def test_defaults_load_typed(tmp_path):
    s = settings.load(write(tmp_path, rendered_toml()))
    assert s.cluster.port == 22 and s.cluster.use_gpu is False
    assert (s.scheduler.time, s.scheduler.cpus_per_task, s.scheduler.mem, s.scheduler.parallel) == (
        "01:00:00",
        2,
        "4G",
        4,
    )
    assert (s.cluster.name, s.clusters, s.default_cluster, s.layout) == ("hpc", ("hpc",), "hpc", "0.3")
    assert s.scheduler.kind == "slurm"
    assert s.build.base_image == "python:3.11-slim"
    assert (s.scheduler.notify_partition, s.notify.timeout_s, s.images.keep) == ("", 30, 5)
    assert s.collect.max_file_bytes == 268435456 and s.collect.log_tail_lines == 30
    assert s.cluster_root == "/home/jdoe/mlops/forecasting-experiments"
    assert s.answers() == answers_for({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cluster.port = 2222


def test_every_key_is_defined_once_in_options():
    """The dataclass fields are exactly the keys options defines (question-backed + the others), and the
    template's skeleton has each of them once (the cluster block as [clusters.NAME])."""
    keys = options.SETTINGS_KEYS + options.CLUSTER_KEYS
    defined = {o.key for o in options.OPTIONS if o.key != options.CLUSTER} | {k.dotted for k in keys}
    fields = {f"{name}.{f.name}" for name, cls in settings.SECTION_TYPES.items() for f in dataclasses.fields(cls)}
    fields |= {f"{options.CLUSTER}.{key}" for key in settings.BLOCK_FIELDS}
    assert fields == defined
    assert len(defined) == len(options.OPTIONS) - 1 + len(keys)
    skeleton = tomllib.loads(SKELETON)
    block = skeleton["clusters"].pop(settings.SKELETON_BLOCK)
    assert skeleton.pop("clusters") == {"default": ""}
    found = {f"{s}.{k}" for s, table in skeleton.items() for k in table} | {f"clusters.*.{k}" for k in block}
    assert found == defined


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("@.time", '"01:00:00\\ntouch /tmp/x"', "@.time: '01:00:00\\ntouch /tmp/x' contains a control"),
        ("@.time", '"1 hour"', "@.time: '1 hour' is not a SLURM time. Fix: use minutes"),
        ("@.mem", '"4 GB"', "@.mem: '4 GB' is not a SLURM memory size"),
        ("@.mem", '"4G\\n"', "@.mem: '4G\\n' contains a control character"),
        ("@.partition", '"gpu\\n#SBATCH --x"', "@.partition (slurm_partition): 'gpu\\n#SBATCH --x' "),
        ("@.account", '"a b"', "@.account (slurm_account): 'a b' contains unexpected characters"),
        ("@.cpus_per_task", "0", "@.cpus_per_task: 0 is below 1"),
        ("@.parallel", '"many"', "@.parallel: 'many' is not a whole number"),
        ("@.port", '"ssh"', "@.port (hpc_port): 'ssh' is not a whole number"),
        ("@.port", "70000", "@.port (hpc_port): '70000' is not a TCP port. Fix: use a number from 1"),
        ("@.workdir", '"scratch/me"', "@.workdir (hpc_workdir): 'scratch/me' is not an absolute path"),
        ("@.workdir", '"/scratch/../etc"', "@.workdir (hpc_workdir): '/scratch/../etc' contains"),
        ("@.workdir", '"/scratch/me\\n"', "@.workdir (hpc_workdir): '/scratch/me\\n' contains a control"),
        ("@.use_gpu", '"maybe"', "@.use_gpu (use_gpu): 'maybe' is not true or false"),
        ("@.auth", '"password"', "@.auth (hpc_auth): 'password' is not one of the choices"),
        ("project.slug", '"my-proj\\n"', "project.slug (project_slug): 'my-proj\\n' contains a control character"),
        ("build.base_image", '"python:3.11-slim\\nRUN x"', "build.base_image: 'python:3.11-slim\\nRUN x' contains"),
        ("build.base_image", '"Python 3"', "build.base_image: 'Python 3' is not an image reference"),
        ("notify.timeout_s", "-1", "notify.timeout_s: -1 is below 1"),
        ("images.keep", "true", "images.keep: True is not a whole number"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(tmp_path, dotted, value, expected):
    """'@' stands for the template's cluster block, [clusters.hpc]."""
    dotted, expected = dotted.replace("@", BLOCK), expected.replace("@", BLOCK)
    found = problems_of(tmp_path, edit(rendered_toml(), dotted, value))
    assert any(p.startswith(expected) for p in found), found
    assert all("Fix:" in p for p in found), found


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("@.time", '"30"'),
        ("@.time", '"30:00"'),
        ("@.time", '"2-00"'),
        ("@.time", '"2-12:30"'),
        ("@.time", '"2-12:30:00"'),
        ("@.mem", '"300M"'),
        ("@.mem", '"16000"'),
        ("@.port", '"2222"'),  # older files quoted it
        ("@.use_gpu", '"no"'),  # older files held the answer
        ("@.auth", '"totp+password"'),
        ("build.base_image", '"registry.example.org:5000/py/base:3.11@sha256:' + "a" * 64 + '"'),
    ],
)
def test_good_values_pass(tmp_path, dotted, value):
    settings.load(write(tmp_path, edit(rendered_toml(), dotted.replace("@", BLOCK), value)))


def test_missing_optional_keys_take_their_defaults_and_unknown_keys_are_named(tmp_path):
    text = rendered_toml()
    without = text.split("[notify]")[0]  # a file from before notify/collect/images existed
    s = settings.load(write(tmp_path, without))
    assert s.notify.timeout_s == 30 and s.images.keep == 5
    found = problems_of(tmp_path, text.replace("parallel = 4", "parallel = 4\ncpus_per_tasks = 3"))
    assert found == [
        "clusters.hpc.cpus_per_tasks: is not a setting of a cluster block. Fix: remove it or check the spelling"
    ]


def test_a_missing_answer_and_bad_toml_are_problems(tmp_path):
    found = problems_of(tmp_path, rendered_toml().replace('host = "hpc.example.org"\n', ""))
    assert found[0].startswith("clusters.hpc.host (hpc_host): is missing. Fix: add `host = ...` under [clusters.hpc]")
    found = problems_of(tmp_path, "[cluster\n")
    assert found[0].startswith("not valid TOML")


def test_no_project_is_bad_input(tmp_path):
    with pytest.raises(errors.BadInput, match="no mlops.toml found"):
        settings.find_root(tmp_path)


@pytest.mark.parametrize(
    "answer, value",
    [
        ("description", "Load forecasts 🚀 for the grid"),
        ("author_name", 'Jane O\'Brien "JB" \\ Ünïcødé'),
        ("project_name", "Jane's Forecasting (v2)"),
        ("description", "x" * 5000),
    ],
)
def test_fill_toml_round_trips_any_text(answer, value):
    answers = answers_for({answer: value})
    text = settings.fill_toml(SKELETON, answers)
    assert tomllib.loads(text)["project"][options.BY_NAME[answer].key.split(".")[1]] == value
    assert "# [user@]host[:port]; empty = connect directly" in text  # comments kept


def test_derived_slug_uses_slugify_and_a_refused_derived_value_names_its_source():
    assert answers_for({"project_name": "Jane's Forecasting (v2)"})["project_slug"] == "jane-s-forecasting-v2"
    found = [str(p) for p in options.validate(answers_for({"project_name": "2024 Study"}))]
    assert found == [
        "project_slug: '2024-study' is not a valid slug (derived from project_name '2024 Study'). "
        "Fix: answer project_slug yourself (use at most 50 lowercase letters, digits and single hyphens, starting "
        "with a letter, e.g. 'load-forecasting'), or change project_name."
    ]


@pytest.mark.parametrize("field", [o.name for o in options.OPTIONS if not o.choices])
def test_control_characters_in_any_answer_are_refused(field):
    answers = {**answers_for({}), field: DEFAULTS[field] + "\nx" if DEFAULTS[field] else "a\tb"}
    found = [p for p in options.validate(answers) if p.field == field]
    assert found and "control character" in found[0].message, found


def test_patterns_are_full_match():
    for name in ("lr\n", "Lr", "lr-x"):
        assert params.semantic_errors({"fixed": {name: 1}}), name
    assert params.semantic_errors({"grid": {"lr": ["0.1\n"]}})
    assert not params.semantic_errors({"grid": {"lr": ["0.1", "1e-3"]}})
    assert options.validate(answers_for({"hpc_user": "jdoe\n"}))
    assert options.validate(answers_for({"author_email": "a@b.org\n"}))


def test_env_lines_refuse_control_characters():
    configuration = params.Configuration("c0", {"lr": "0.1\n"})
    with pytest.raises(errors.BadInput, match="cannot carry"):
        params.env_lines(configuration, "/p", {"RUN_ID": "r"})
    with pytest.raises(errors.BadInput):
        runenv.env_file_text({"A": "b\nC=d"})
    assert runenv.env_file_text({"A": "b"}) == "A=b\n"


def test_stage_env_is_one_definition(tmp_path):
    s = settings.load(write(tmp_path, rendered_toml(wandb_mode="online", wandb_entity="lab")))
    env = runenv.stage_env(s, "p42", "/project", tags=["commit=abc"])
    assert env == {"RUN_ID": "p42", "PROJECT_DIR": "/project", "WANDB_MODE": "offline",
                   "WANDB_PROJECT": "forecasting-experiments", "WANDB_RUN_GROUP": "p42", "WANDB_ENTITY": "lab",
                   "WANDB_TAGS": "commit=abc"}  # fmt: skip
    with pytest.raises(errors.BadInput, match="RUN_ID"):
        runenv.stage_env(s, "p 42", "/project")


def test_raw_entrypoint_and_merged_helpers(tmp_path, monkeypatch):
    assert stages.raw_entrypoint(PROJECT_TEMPLATE, "params")[:3] == ["mlops", "params", "expand"]
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "Dockerfile").write_text("FROM x\nENTRYPOINT python train.py\n")
    with pytest.raises(errors.BadInput, match="model/Dockerfile: no exec-form ENTRYPOINT"):
        stages.raw_entrypoint(tmp_path, "model")
    log = tmp_path / "log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)) + b"\xff end\n")
    assert file_tail(log, 65536, 2) == "line 999\n\ufffd end"
    assert file_tail(log, 20, 50).splitlines()[-1] == "\ufffd end"
    assert file_tail(tmp_path / "none", 100, 5) == ""
    (tmp_path / "long").write_bytes(b"x" * 5000 + b" Error: out of cheese\n")
    assert file_tail(tmp_path / "long", 65536, 5, width=30) == "..." + ("x" * 10 + " Error: out of cheese")[-27:]
    (tmp_path / "link").symlink_to(log)
    assert file_tail(tmp_path / "link", 100, 5).startswith("(link: ")  # research code's link: not followed
    counts = rundir.count_states(["completed", "failed", "completed"])
    assert rundir.format_counts(counts) == "2 completed, 1 failed"
    monkeypatch.setenv("CI_COMMIT_SHA", "f" * 40)
    assert rundir.git_commit(tmp_path) == "f" * 40


def test_error_classes_share_one_base():
    from mlops import cli, credentials, images, local
    from mlops.ssh import session

    bad = (cli.UsageError, params.ParamsError, session.LoginFailed,
           credentials.CredentialError)  # fmt: skip
    failed = (session.RemoteError, images.DeployError, local.StageFailed)  # results/ raises WorkFailed itself
    assert all(issubclass(c, errors.BadInput) for c in bad)
    assert all(issubclass(c, errors.WorkFailed) for c in failed)
    assert images.BuildError("x", bad_input=True).exit_code == 2 and images.BuildError("x").exit_code == 1
    assert json.dumps(params.ParamsError("f", ["a"]).problems) == '["a"]'
