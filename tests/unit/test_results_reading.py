"""Results people read (issue 19): the metric plotted against each varying parameter (checked from the
figure's axes and the PNG's own text chunks, no screenshot), the end table led by the varying
parameters, `mlops runs` and `mlops compare` across clusters and commits (contract E, issue 21)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from mlops import cli, settings
from mlops.errors import BadInput
from mlops.results import caps, collect, compare, history, plot, read, table
from support import good_run, results_settings
from support.local_shell import LocalShell


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt/iTXt chunks of a PNG (PNG spec 11.3.4), read from the bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = {}, 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, value = rest.partition(b"\0")
            out[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode()
        pos += 12 + length
    return out


@pytest.fixture
def rows(tmp_path):
    found, problems = read.run_rows(good_run.make(tmp_path / "p1", wandb_links=False), caps.defaults())
    assert not problems
    return found


def _axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_the_plot_shows_the_metric_against_each_varying_parameter(rows):
    fig = plot.figure(rows)
    try:
        axes = _axes(fig)
        assert [ax.get_xlabel() for ax in axes] == ["window", "alpha"]  # varying, in order; horizon is fixed
        assert axes[0].get_ylabel() == "mae"
        window = axes[0]
        xs = sorted({float(x) for c in window.collections for x, _ in c.get_offsets()})
        assert xs == [6.0, 12.0, 24.0]
        best = min(rows, key=lambda r: r["metrics"]["mae"])
        assert best["parameters"]["window"] == 24  # the star sits at the longest window
        assert "fixed: horizon=24" in " ".join(t.get_text() for t in fig.texts)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_png_says_what_it_shows(rows):
    meta = png_text(plot.plot(rows))
    assert meta["Title"] == "mae against window, alpha"
    about = json.loads(meta["Description"])
    assert about["x"] == ["window", "alpha"] and about["fixed"] == {"horizon": 24}
    assert about["completed"] == about["configurations"] == len(good_run.CONFIGS)


def test_text_parameters_get_one_position_per_value_and_wide_ranges_a_log_axis(tmp_path):
    configs = {
        f"{i:x}".rjust(10, "a"): {"model": name, "lr": lr, "horizon": 24}
        for i, (name, lr) in enumerate([(m, lr) for m in ("ridge", "lasso") for lr in (1e-4, 1e-3, 1e-2, 1e-1)])
    }
    run = good_run.make(tmp_path / "p2", configs={k: {**v, "window": 6} for k, v in configs.items()}, wandb_links=False)
    found, _ = read.run_rows(run, caps.defaults())
    fig = plot.figure(found)
    try:
        by_label = {ax.get_xlabel(): ax for ax in _axes(fig)}
        assert set(by_label) == {"model", "lr"}
        assert [t.get_text() for t in by_label["model"].get_xticklabels()] == ["lasso", "ridge"]
        assert by_label["lr"].get_xscale() == "log"
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_one_configuration_is_drawn_without_parameter_panels(tmp_path):
    cid, params = next(iter(good_run.CONFIGS.items()))
    found, _ = read.run_rows(good_run.make(tmp_path / "p3", configs={cid: params}, wandb_links=False), caps.defaults())
    meta = json.loads(png_text(plot.plot(found))["Description"])
    assert meta["x"] == [] and meta["fixed"] == params


def test_the_table_leads_with_the_varying_parameters_and_never_cuts_them(tmp_path):
    names = [f"parameter_with_a_long_name_{i:02d}" for i in range(12)]
    configs = {
        f"{i:010x}": {**{n: i * (k + 1) for k, n in enumerate(names)}, "window": 6 + i, "fixed_thing": "same"}
        for i in range(1, 8)
    }
    run = good_run.make(tmp_path / "p4", configs=configs, wandb_links=False)
    found, _ = read.run_rows(run, caps.defaults())
    lines = table.table(found, [], "sweep.png", "summary.csv").splitlines()
    assert lines[0] == "fixed: fixed_thing=same"
    assert lines[1].startswith("best 5 by mae (lower is better; 7 completed)")
    header = lines[2].split()
    assert header == ["config", *names, "window", "mae"]
    first = lines[3].split()
    best = min(found, key=lambda r: r["metrics"]["mae"])
    assert first[0] == best["config_id"] and first[1:-1] == [str(best["parameters"][n]) for n in [*names, "window"]]


# ------------------------------------------------------------------ mlops runs / mlops compare


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with a local run, and one commit's run collected from two clusters of its mlops.toml
    ([clusters.uni] and [clusters.state]; on state every mae is 0.01 higher)."""
    root = tmp_path / "project"
    root.mkdir()
    workdirs = {"uni": tmp_path / "uni", "state": tmp_path / "state"}
    (root / "mlops.toml").write_text(results_settings.toml_text(workdirs))
    cfg = settings.load(root)
    good_run.make(root / "runs" / "local-20261205-120000-ab12", commit="1" * 40, cluster="local")
    monkeypatch.chdir(root)
    shell = LocalShell({"PATH": os.environ["PATH"]})
    for name, offset in (("uni", 0.0), ("state", 0.01)):
        one = cfg.select(name)
        good_run.make(Path(one.cluster_root) / "runs" / "p4242", offset=offset, cluster=name)
        collect.collect(shell, one, "p4242", Path("results"), out=io.StringIO())
    return cfg


def test_runs_lists_local_runs_and_collected_results_of_every_cluster(project, capsys):
    assert cli.main(["runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["where", "cluster", "commit", "created", "configurations", "best"]
    body = {line.split()[0]: line for line in out[1:]}
    assert set(body) == {"runs/local-20261205-120000-ab12", "results/uni/p4242", "results/state/p4242"}
    assert (
        "local" in body["runs/local-20261205-120000-ab12"] and "1111111111" in body["runs/local-20261205-120000-ab12"]
    )
    assert "6 completed" in body["results/uni/p4242"] and "mae=0.041667 (c1b2c3d4e5)" in body["results/uni/p4242"]
    assert cli.main(["runs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {(r["cluster"], r["run_id"]) for r in doc} >= {("uni", "p4242"), ("state", "p4242")}


def test_compare_matches_configurations_by_id_across_clusters(project, capsys):
    assert cli.main(["compare", "uni/p4242", "state/p4242"]) == 0
    out = capsys.readouterr().out
    assert "A: results/uni/p4242" in out and "B: results/state/p4242" in out
    assert "cluster" in out and "uni" in out and "state" in out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("same configurations (6)"))
    assert lines[at + 1].split() == ["config", "window", "alpha", "A", "B", "B", "-", "A"]
    assert all(line.split()[-1] == "+0.01" for line in lines[at + 2 : at + 8])
    doc = json.loads(compare.compare_text(*(history.resolve(project, r) for r in ("uni/p4242", "state/p4242")),
                                          as_json=True))  # fmt: skip
    assert {round(s["delta"], 6) for s in doc["same"]} == {0.01} and not doc["only_a"] and not doc["only_b"]


def test_compare_puts_different_commits_side_by_side(project, capsys):
    assert cli.main(["compare", "local/local-20261205-120000-ab12", "results/uni/p4242"]) == 0
    out = capsys.readouterr().out
    commit = next(line for line in out.splitlines() if line.strip().startswith("commit"))
    assert "1111111111" in commit and "0123456789" in commit and commit.rstrip().endswith("*")


def test_compare_names_the_candidates_of_an_ambiguous_or_unknown_run(project):
    with pytest.raises(BadInput, match="uni/p4242.*state/p4242|state/p4242.*uni/p4242"):
        compare.compare_command(project, "p4242", "uni/p4242", None)
    with pytest.raises(BadInput, match="no run nope.*Runs here"):
        compare.compare_command(project, "nope", "uni/p4242", None)


def test_runs_never_follows_a_link_into_another_directory(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    good_run.make(elsewhere / "p9")
    (project.root / "results" / "linked").symlink_to(elsewhere)
    assert all("linked" not in r.where for r in history.find(project))
