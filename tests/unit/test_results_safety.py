"""Collect on the runner's side (issues 17.4, 17.5, 17.7, 18.8, 19): every output path opened without
following links, extended tar headers capped before tarfile reads them, invisible Unicode refused in
names and escaped in reports, a full disk named as a local error, W&B's own links counted as expected.

The cluster side runs in a local shell (support.local_shell); the streams of the tar-header tests are
written block by block (support.tar_craft).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mlops.errors import BadInput, MlopsError, WorkFailed
from mlops.results import caps, collect, extract, outdir, read, reports, text
from support import good_run, results_settings
from support import tar_craft as craft
from support.local_shell import LocalShell, SessionLike
from support.render import PROJECT_TEMPLATE

MiB = 1 << 20


# ------------------------------------------------------------------ extended tar headers (17.5)


def _extract_measured(data: bytes, dest: Path) -> tuple[extract.Extracted, int]:
    """Extract with tracemalloc on; returns (what was extracted, peak bytes allocated during it)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        done = extract.extract(io.BytesIO(data), dest, caps.defaults())
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return done, peak


@pytest.mark.parametrize("kind", [b"x", b"L", b"K"], ids=["pax", "gnu-longname", "gnu-longlink"])
def test_a_huge_extended_header_is_skipped_unread_in_bounded_memory(tmp_path, kind):
    """256 MiB of one extended header (256 KB compressed): before, tarfile read it whole (peak > 512 MiB
    allocated); now it is discarded in small reads, the member it belongs to is refused with the
    reason, and the members around it are kept."""
    data = craft.gzipped(
        [
            craft.regular("results/before.txt", b"kept\n"),
            craft.huge_header(kind, 256 * MiB),
            craft.regular("results/victim.txt", b"refused with its header\n"),
            craft.regular("results/after.txt", b"kept too\n"),
            craft.end(),
        ]
    )
    assert len(data) < 512 * 1024
    (tmp_path / "dest").mkdir()
    done, peak = _extract_measured(data, tmp_path / "dest")
    print(f"\n{kind!r} header of 256 MiB in {len(data):,} bytes: peak {peak / MiB:.1f} MiB allocated")
    assert peak < 16 * MiB, f"peak {peak:,} bytes"
    assert sorted(os.listdir(tmp_path / "dest/results")) == ["after.txt", "before.txt"]
    reasons = dict(done.skipped)
    assert "over 12,288" in reasons["results/victim.txt"] and done.stopped is None


def test_global_headers_over_the_cap_stop_the_stream(tmp_path):
    data = craft.gzipped([craft.regular("a.txt", b"kept"), craft.huge_header(b"g", 64 * MiB), craft.end()])
    (tmp_path / "d").mkdir()
    done, peak = _extract_measured(data, tmp_path / "d")
    assert peak < 16 * MiB and "global PAX headers" in done.stopped and os.listdir(tmp_path / "d") == ["a.txt"]


def test_many_small_global_headers_are_capped_in_total(tmp_path):
    record = [craft.pax_record(f"k{i}", b"v" * 1000) for i in range(64)]
    many = [
        craft.header("g", b"g", len(r)) + craft.padded(r) + craft.regular(f"f{i}", b"x") for i, r in enumerate(record)
    ]
    data = craft.gzipped([*many, craft.end()])
    (tmp_path / "d").mkdir()
    done = extract.extract(io.BytesIO(data), tmp_path / "d", caps.defaults())
    assert "global PAX headers" in done.stopped


def test_chained_extended_headers_are_bounded(tmp_path):
    record = craft.padded(craft.pax_record("comment", b"x" * 100))
    chain = [craft.header("PaxHeader", b"x", len(craft.pax_record("comment", b"x" * 100))) + record] * 2000
    data = craft.gzipped([craft.regular("a.txt", b"kept"), *chain, craft.regular("b.txt", b"?"), craft.end()])
    (tmp_path / "d").mkdir()
    done = extract.extract(io.BytesIO(data), tmp_path / "d", caps.defaults())
    assert "extended tar headers in a row" in done.stopped and os.listdir(tmp_path / "d") == ["a.txt"]


def test_an_endless_old_gnu_sparse_chain_is_bounded(tmp_path):
    """An old-GNU sparse member whose extension blocks never end: tarfile collected every region."""
    block = bytearray(512)
    block[504] = 1  # isextended: one more block follows, forever
    data = craft.gzipped(
        [craft.regular("a.txt", b"kept"), craft.header("results/s", b"S", 0, extended=True), [bytes(block)] * 100_000]
    )
    (tmp_path / "d").mkdir()
    done, peak = _extract_measured(data, tmp_path / "d")
    assert "sparse member with more than" in done.stopped and peak < 16 * MiB


def test_a_pax_sparse_map_that_never_ends_is_not_read(tmp_path):
    """PAX sparse 1.0: the map declares 10**9 regions, one number per line: tarfile read them all."""
    pax = b"".join(craft.pax_record(k, v) for k, v in (("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")))
    body = b"1000000000\n" + b"1\n" * (4 * MiB)
    data = craft.gzipped(
        [
            craft.header("PaxHeader", b"x", len(pax)) + craft.padded(pax),
            craft.header("results/sparse", b"0", len(body)) + craft.padded(body),
            craft.regular("results/after.txt", b"kept"),
            craft.end(),
        ]
    )
    (tmp_path / "d").mkdir()
    done, peak = _extract_measured(data, tmp_path / "d")
    assert peak < 16 * MiB, f"peak {peak:,}"
    assert "sparse member" in dict(done.skipped)["results/sparse"]
    assert os.listdir(tmp_path / "d/results") == ["after.txt"]


def test_tarfile_keeps_no_member_it_has_read(tmp_path):
    """tarfile keeps every TarInfo it read (with its PAX records) in TarFile.members: 4,000 members
    with 8 KiB of PAX records each (all under the cap) held 32+ MiB until the end of the stream."""
    members = []
    for i in range(4000):
        pax = craft.pax_record("comment", b"c" * 8000)
        members += [craft.header("PaxHeader", b"x", len(pax)) + craft.padded(pax), craft.regular(f"f{i}", b"")]
    data = craft.gzipped([*members, craft.end()])
    (tmp_path / "d").mkdir()
    done, peak = _extract_measured(data, tmp_path / "d")
    assert done.files == 4000 and peak < 16 * MiB, f"peak {peak:,}"


# ------------------------------------------------------------------ invisible Unicode (17.7)

INVISIBLE = {
    "rlo": "\u202e",
    "lri": "\u2066",
    "zwsp": "\u200b",
    "zwj": "\u200d",
    "bom": "\ufeff",
    "lrm": "\u200e",
    "soft-hyphen": "\u00ad",
    "nbsp": "\u00a0",
    "line-sep": "\u2028",
    "hangul-filler": "\u3164",
    "tag": "\U000e0041",
    "private": "\ue000",
}


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_member_names_with_invisible_characters_are_refused(tmp_path, char):
    name = f"results/a000000001/report{char}gpj.exe"
    data = craft.gzipped([craft.regular(name, b"x"), craft.regular("results/ok-\u00fcml\u00e4ut-\u6570.txt", b"y"),
                          craft.end()])  # fmt: skip
    (tmp_path / "d").mkdir()
    done = extract.extract(io.BytesIO(data), tmp_path / "d", caps.defaults())
    assert os.listdir(tmp_path / "d/results") == ["ok-\u00fcml\u00e4ut-\u6570.txt"]  # umlauts and CJK are text
    (reason,) = [why for n, why in done.skipped if n == name]
    assert "invisible" in reason and char not in reason


def test_invisible_characters_never_reach_a_report_or_the_log():
    evil = "mae\u202e\u200bgnp"
    assert not text.visible(evil) and text.visible("Gr\u00f6\u00dfe \u6570 caf\u00e9")
    assert text.printable(evil) == "mae\\u202e\\u200bgnp"
    assert text.printable("\udcff") == "\\xff" and text.printable("\u2028") == "\\u2028"
    assert "\u202e" not in text.csv_cell(evil) and "\u202e" not in text.xml_text(evil)
    assert text.tail(b"ok\n\xe2\x80\xaeevil\xef\xbb\xbf line\n", 1000, 5) == "ok\n?evil? line"


def test_a_run_with_invisible_names_reports_them_escaped(tmp_path):
    run = good_run.make(tmp_path / "p1", wandb_links=False)
    cid = next(iter(good_run.CONFIGS))
    (run / "results" / cid / "metrics.json").write_text(json.dumps({"mae": 0.5, "rmse\u202e": 1.0}))
    index = json.loads((run / "envs/index.json").read_text())
    index["configurations"][1]["parameters"]["label"] = "a\u202eb"
    (run / "envs/index.json").write_text(json.dumps(index))
    rows, problems = read.run_rows(run, caps.defaults())
    assert any("visible" in p for p in problems) and len(rows) == len(good_run.CONFIGS) - 1
    row = next(r for r in rows if r["config_id"] == cid)
    assert "rmse\\u202e" in row["metrics"]
    for data in (reports.junit(rows, "p1", problems, caps.defaults()), reports.summary_csv(rows)):
        assert "\u202e".encode() not in data


# ------------------------------------------------------------------ links in the output path (17.4)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory (the working directory, as in CI), a final run on the "cluster", and
    /elsewhere (a directory outside the project that no collect may write to)."""
    root, cluster, elsewhere = tmp_path / "project", tmp_path / "cluster", tmp_path / "elsewhere"
    for d in (root, cluster, elsewhere):
        d.mkdir()
    cfg = results_settings.make(root, cluster)
    good_run.make(cluster / "proj" / "runs" / "p1")
    monkeypatch.chdir(root)
    return {"root": root, "cfg": cfg, "elsewhere": elsewhere, "cluster": cfg.cluster.name}


def _collect(p, out="results"):
    return collect.collect(LocalShell({"PATH": os.environ["PATH"]}), p["cfg"], "p1", Path(out), out=io.StringIO())


def _untouched(p) -> None:
    assert list(p["elsewhere"].iterdir()) == [], list(p["elsewhere"].rglob("*"))


@pytest.mark.parametrize(
    "shape",
    ["out-is-a-link", "parent-is-a-link", "cluster-dir-is-a-link", "absolute-out-inside-the-project"],
)
def test_no_directory_of_the_output_path_is_followed(project, shape):
    root, elsewhere, name = project["root"], project["elsewhere"], project["cluster"]
    out = "results"
    if shape == "out-is-a-link":  # issue 17.4: a committed `results -> /elsewhere`
        (root / "results").symlink_to(elsewhere)
    elif shape == "parent-is-a-link":
        (root / "ci").symlink_to(elsewhere)
        out = "ci/results"
    elif shape == "cluster-dir-is-a-link":
        (root / "results").mkdir()
        (root / "results" / name).symlink_to(elsewhere)
    else:
        (root / "results").symlink_to(elsewhere)
        out = str(root / "results")
    with pytest.raises(BadInput, match="symbolic link"):
        _collect(project, out)
    _untouched(project)


def test_links_in_place_of_the_run_dir_and_the_reports_are_replaced_not_followed(project):
    root, elsewhere, name = project["root"], project["elsewhere"], project["cluster"]
    (root / "results" / name).mkdir(parents=True)
    (root / "results" / name / "p1").symlink_to(elsewhere)  # a link where the run goes: moved away
    (root / "results" / name / "metrics.txt").symlink_to(elsewhere / "metrics.txt")
    result = _collect(project)
    run = root / "results" / name / "p1"
    assert result["ok"] and run.is_dir() and not run.is_symlink()
    assert not (root / "results" / name / "metrics.txt").is_symlink()
    _untouched(project)


def test_collect_all_final_never_writes_through_a_committed_results_link(project):
    """Issue 17.4 as found: `collect --all-final` made results/ with mkdir(parents=True) through the link
    and wrote the cluster's files and collected.txt there."""
    from mlops.cluster import runs

    (project["root"] / "results").symlink_to(project["elsewhere"])
    with pytest.raises(BadInput):
        runs.collect_all_final(LocalShell({"PATH": os.environ["PATH"]}), project["cfg"], Path("results"), io.StringIO())
    _untouched(project)


def test_collected_list_is_not_written_through_a_link(project):
    from mlops.cluster import runs

    target = project["elsewhere"] / "collected.txt"
    (project["root"] / "results" / project["cluster"]).mkdir(parents=True)
    (project["root"] / "results" / project["cluster"] / "collected.txt").symlink_to(target)
    runs.collect_all_final(LocalShell({"PATH": os.environ["PATH"]}), project["cfg"], Path("results"), io.StringIO())
    assert not target.exists()
    assert (project["root"] / "results" / project["cluster"] / "collected.txt").read_text() == "p1\n"


def test_a_link_that_appears_between_mkdir_and_open_is_not_followed(project, monkeypatch):
    """The race of a check-then-use: here the component is swapped for a link right after mkdir."""
    real_mkdir = os.mkdir

    def mkdir_then_swap(name, mode=0o777, *, dir_fd=None):
        real_mkdir(name, mode, dir_fd=dir_fd)
        if name == project["cluster"]:
            os.rmdir(name, dir_fd=dir_fd)
            os.symlink(project["elsewhere"], name, dir_fd=dir_fd)

    monkeypatch.setattr(outdir.os, "mkdir", mkdir_then_swap)
    with pytest.raises(BadInput, match="symbolic link"):
        _collect(project)
    _untouched(project)


def test_a_link_planted_at_the_temp_name_of_a_report_is_not_followed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".junit.xml.000000000000.tmp").symlink_to(tmp_path / "victim")
    monkeypatch.setattr(outdir.secrets, "token_hex", lambda n: "0" * (2 * n))
    with pytest.raises(WorkFailed, match="appeared"):
        outdir.write_all(out, {"junit.xml": b"<x/>"}, tmp_path)
    assert not (tmp_path / "victim").exists() and not (out / "junit.xml").exists()


def test_two_clusters_of_one_commit_sit_side_by_side(project, tmp_path):
    """Contract E: one mlops.toml with [clusters.uni] and [clusters.state], the same run id on both."""
    import tomllib

    from mlops import settings

    workdirs = {"uni": tmp_path / "uni", "state": tmp_path / "state"}
    both = settings.from_data(tomllib.loads(results_settings.toml_text(workdirs)), project["root"])
    for name, offset in (("uni", 0.0), ("state", 0.5)):
        good_run.make(Path(both.select(name).cluster_root) / "runs" / "p1", cluster=name, offset=offset)
        collect.collect(LocalShell({"PATH": os.environ["PATH"]}), both.select(name), "p1", Path("results"),
                        out=io.StringIO())  # fmt: skip
    assert sorted(p.name for p in (project["root"] / "results").iterdir()) == ["state", "uni"]
    for name in ("uni", "state"):
        run = project["root"] / "results" / name / "p1"
        assert f"sweep.{name}.p1" in (run / "junit.xml").read_text()
        assert json.loads((run / "summary.json").read_text())["cluster"] == name
        lines = (project["root"] / "results" / name / "metrics.txt").read_text().splitlines()
        assert lines and all(line.startswith(f"{name}_") for line in lines)
    uni, state = (
        json.loads((project["root"] / "results" / n / "p1/summary.json").read_text()) for n in ("uni", "state")
    )
    assert uni["configurations"][0]["metrics"]["mae"] + 0.5 == state["configurations"][0]["metrics"]["mae"]


# ------------------------------------------------------------------ disk full on the runner (18.8)


def _big_run(project) -> None:
    """A configuration that sends 3 MiB of incompressible data."""
    run = Path(project["cfg"].cluster_root) / "runs" / "p1"
    (run / "results" / next(iter(good_run.CONFIGS)) / "model.bin").write_bytes(os.urandom(3 * MiB))


def _expect_local_disk_full(message: str) -> None:
    assert "no space left on the runner at" in message and "Fix:" in message, message
    assert "connection" not in message, message


def test_a_file_size_limit_on_the_runner_is_a_local_error_not_a_lost_connection(project):
    """RLIMIT_FSIZE (1 MiB) in a child process, SIGXFSZ ignored: the write fails with EFBIG inside the
    session's read loop. Before, that OSError became "the connection ... was lost"."""
    _big_run(project)
    tests = Path(__file__).resolve().parents[1]
    child = tests / "support" / "collect_with_fsize_limit.py"
    paths = json.dumps([str(tests), str(PROJECT_TEMPLATE / "src")])
    workdir = str(Path(project["cfg"].cluster_root).parent)
    proc = subprocess.run(
        [sys.executable, str(child), paths, str(project["root"]), workdir, str(MiB)],
        cwd=project["root"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    kind, message = json.loads(proc.stdout.splitlines()[-1])
    assert kind == "DiskFull" and "file size limit" in message
    _expect_local_disk_full(message)
    left = list((project["root"] / "results" / project["cluster"]).iterdir())
    assert left == [], left  # nothing half-written: the temp directory is gone, no run directory


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (the CI machine runs as root)")
def test_a_full_disk_on_the_runner_is_a_local_error_not_a_lost_connection(project):
    _big_run(project)
    out = project["root"] / "results"
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        with pytest.raises(MlopsError) as caught:
            collect.collect(SessionLike({"PATH": os.environ["PATH"]}), project["cfg"], "p1", Path("results"),
                            out=io.StringIO())  # fmt: skip
        assert isinstance(caught.value, outdir.DiskFull)
        _expect_local_disk_full(str(caught.value))
        assert "no space left" in str(caught.value) and list((out / project["cluster"]).iterdir()) == []
    finally:
        subprocess.run(["umount", str(out)], check=True)


# ------------------------------------------------------------------ W&B's own links (19)


def test_wandb_links_are_expected_files_and_every_report_agrees(project):
    result = _collect(project)
    run = result["run"]
    n = len(good_run.CONFIGS)
    assert result["transfer"]["links_refused"] == 0
    assert result["transfer"]["wandb_links"] == n * good_run.WANDB_LINKS_PER_CONFIG
    summary = json.loads((run / "summary.json").read_text())
    metrics = dict(line.split() for line in (run / "metrics.txt").read_text().splitlines())
    prefix = project["cluster"]
    for name in reports.TRANSFER:
        assert int(metrics[f"{prefix}_results_{name}"]) == summary["transfer"][name] == result["transfer"][name]
    assert summary["refused"] == [] and summary["skipped"] == []
    for cid in good_run.CONFIGS:  # never created: no link anywhere below the run
        assert not any(p.is_symlink() for p in (run / "results" / cid).rglob("*"))


def test_a_link_with_a_wandb_name_but_another_target_is_refused():
    from mlops.results import wandb_sync

    wandb = "results/a1b2c3d4e5/wandb/"
    assert wandb_sync.own_link(wandb + "latest-run", "offline-run-20261205_124642-p1-a1b2c3d4e5")
    assert not wandb_sync.own_link(wandb + "latest-run", "/home/user/.ssh")
    assert not wandb_sync.own_link(wandb + "debug.log", "offline-run-20261205_124642-x/logs/debug-internal.log")
    assert not wandb_sync.own_link("results/a1b2c3d4e5/latest-run", "offline-run-20261205_124642-x")
