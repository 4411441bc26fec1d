"""Results are untrusted data (issue 11): the extractor, the validated reader, the reports, W&B sync,
and the whole of `mlops collect` over a hostile run directory, without SSH (the cluster commands run
in a local shell, as in benchmarks/bench_scale.py). The same with the real sshd: test_hostile_results_e2e.py.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from mlops import errors, runid
from mlops.cluster import runs
from mlops.results import caps, collect, extract, outdir, read, text, wandb_sync
from support import hostile_results as hostile
from support import results_settings
from support.local_shell import LocalShell
from support.results_checks import (  # noqa: F401
    CANARY_ENV,
    GITLAB_METRIC,
    SECRET,
    assert_reports_safe,
    check_rows,
    file_tree,
    pth_files,
)

make_settings = results_settings.make


# ------------------------------------------------------------------ crafted tar streams


def _stream(members) -> io.BytesIO:
    """A tar.gz built member by member: (TarInfo, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _info(name: str, kind=tarfile.REGTYPE, data: bytes = b"", link: str = "", size: int | None = None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o4777  # setuid + world-writable: must not be kept
    info.size = len(data) if size is None else size
    return info, (data if kind == tarfile.REGTYPE else None)


@pytest.fixture
def box(tmp_path):
    """dest/ for the extraction, with canaries beside it that must stay untouched."""
    (tmp_path / "dest").mkdir(mode=0o700)
    canary = tmp_path / "canary.txt"
    canary.write_text("canary\n")
    return tmp_path


def test_links_devices_fifos_and_bad_names_are_refused_the_rest_kept(box):
    members = [
        _info("results/", tarfile.DIRTYPE),
        _info("results/a/x", tarfile.SYMTYPE, link="y/../.."),
        _info("results/a/y", tarfile.SYMTYPE, link="."),
        _info("results/a/x/canary.txt", data=b"through the chain"),
        _info("results/abs", tarfile.SYMTYPE, link="/etc/passwd"),
        _info("results/abs", data=b"replaced link?"),
        _info("results/hard", tarfile.LNKTYPE, link="../canary.txt"),
        _info("results/fifo", tarfile.FIFOTYPE),
        _info("results/dev", tarfile.CHRTYPE),
        _info("results/blk", tarfile.BLKTYPE),
        _info("../canary.txt", data=b"escaped"),
        _info("/tmp/abs-escape", data=b"escaped"),
        _info("results/../../canary.txt", data=b"escaped"),
        _info("results/nl\nname", data=b"x"),
        _info("results/esc\x1b[31m", data=b"x"),
        _info("results/not-utf8-\udcff", data=b"x"),
        _info("results/" + "l" * 300, data=b"x"),
        _info("results/" + "/".join(["d" * 200] * 6), data=b"x"),
        _info("results/ok.json", data=b'{"mae": 1}'),
        _info("./results/sub/./ok2.txt", data=b"kept"),
        _info("results/ok.json/inner", data=b"parent is a file"),
        _info("results/sub", data=b"a dir already"),
    ]
    done = extract.extract(_stream(members), box / "dest", caps.defaults())
    tree = file_tree(box / "dest")
    # a/x was refused as a link, so a/x/canary.txt is a plain file in a plain directory a/x: inside dest
    assert tree == {
        "results": "d",
        "results/a": "d",
        "results/a/x": "d",
        "results/a/x/canary.txt": "f",
        "results/abs": "f",
        "results/ok.json": "f",
        "results/sub": "d",
        "results/sub/ok2.txt": "f",
    }, tree
    assert (box / "dest/results/abs").read_bytes() == b"replaced link?"
    assert (box / "canary.txt").read_text() == "canary\n"
    assert not Path("/tmp/abs-escape").exists()
    refused = dict(done.refused)
    assert {
        "results/a/x",
        "results/a/y",
        "results/abs",
        "results/hard",
        "results/fifo",
        "results/dev",
        "results/blk",
    } <= set(refused)
    reasons = dict(done.skipped)
    assert reasons["../canary.txt"] == "name contains '..'" and reasons["/tmp/abs-escape"] == "absolute name"
    assert "control characters" in reasons["results/nl\nname"] and "not UTF-8" in reasons["results/not-utf8-\udcff"]
    deep = "results/" + "/".join(["d" * 200] * 6)  # 1,207 characters: kept for the report as its first 1,021 + "..."
    assert "longer than max_path_length" in reasons[deep[: extract.NAME_KEPT - 3] + "..."]
    assert "255" in reasons["results/" + "l" * 300]
    assert "results/ok.json/inner" in reasons and "results/sub" in reasons
    assert done.stopped is None and not done.complete and done.files == 4


def test_caps_per_file_total_and_member_count(box):
    limits = caps.defaults(max_file_bytes=100, max_total_bytes=250, max_members=6)
    members = (
        [_info(f"f{i}", data=b"x" * 90) for i in range(3)]
        + [_info("big", data=b"y" * 101)]
        + [_info(f"g{i}", data=b"z") for i in range(5)]
    )
    done = extract.extract(_stream(members), box / "dest", limits)
    assert sorted(os.listdir(box / "dest")) == ["f0", "f1", "g0", "g1"]
    reasons = dict(done.skipped)
    assert "max_total_bytes" in reasons["f2"] and "max_file_bytes" in reasons["big"]
    assert "max_members" in done.stopped


def test_decompression_bomb_is_stopped_by_the_stream_cap(box):
    limits = caps.defaults(max_file_bytes=1 << 20, max_total_bytes=2 << 20, max_members=10)
    info = tarfile.TarInfo("results/bomb")
    info.size = 256 << 20  # 256 MiB of zeros: ~1 MB compressed
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        tar.addfile(_info("results/first", data=b"kept")[0], io.BytesIO(b"kept"))

        class Zeros(io.RawIOBase):
            left = info.size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros()))
    buf.seek(0)
    t0 = time.monotonic()
    done = extract.extract(buf, box / "dest", limits)
    assert "passed" in done.stopped and (box / "dest/results/first").read_bytes() == b"kept"
    assert not (box / "dest/results/bomb").exists()
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("data", [b"", b"not gzip at all", b"\x1f\x8b\x08\x00garbage"], ids=["empty", "text", "bad"])
def test_a_broken_stream_is_reported_not_raised(box, data):
    done = extract.extract(io.BytesIO(data), box / "dest", caps.defaults())
    assert done.stopped is not None or done.files == 0


def test_a_cut_stream_keeps_what_came_before(box):
    whole = _stream([_info("a", data=b"1" * 5000), _info("b", data=os.urandom(200_000))]).getvalue()
    done = extract.extract(io.BytesIO(whole[: len(whole) // 2]), box / "dest", caps.defaults())
    assert (box / "dest/a").read_bytes() == b"1" * 5000 and "broken" in done.stopped


# ------------------------------------------------------------------ text encodings


def test_text_encodings():
    assert text.xml_text("a\x00b\x01\x1bc\ud800\ufffe\U0001f680") == "abc\U0001f680"
    assert text.metric_name("evil 1\nconfigurations_failed") == "evil_1_configurations_failed"
    assert text.metric_name("=HYPERLINK(1)") == "_HYPERLINK_1_" and text.metric_name("9lives") == "m_9lives"
    for bad in ("=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"):
        assert text.csv_cell(bad).startswith("'"), bad
    assert text.csv_cell(-1.5) == "-1.5" and text.csv_cell(None) == "" and text.csv_cell("a\nb") == "a b"
    assert text.printable("a\nb\x1b") == "a\\x0ab\\x1b"
    t = text.tail(b"x" * (20 << 20) + b" END\n", 1000, 30)
    assert len(t) <= 1000 and t.endswith("END")


# ------------------------------------------------------------------ reading a hostile run directory


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "id_canary"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def hostile_run(tmp_path, secret_file):
    site_packages = tmp_path / "venv-site-packages"
    site_packages.mkdir()
    run = tmp_path / "cluster" / "proj" / "runs" / "p666"
    hostile.make(run, str(secret_file), str(site_packages))
    return run


def test_reader_validates_every_file_and_never_follows_a_link(hostile_run):
    rows, problems = read.run_rows(hostile_run, caps.defaults())
    check_rows(rows, problems)
    assert all(SECRET.splitlines()[1] not in r["log"].decode(errors="replace") for r in rows)
    assert len(next(r for r in rows if r["config_id"] == "c000000002")["log"]) <= caps.defaults().log_tail_bytes


def test_collect_of_a_hostile_run_keeps_everything_inside_and_reports_each_case(
    hostile_run, secret_file, tmp_path, monkeypatch
):
    for k, v in CANARY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(secret_file))
    root = hostile_run.parents[2]
    cfg = make_settings(tmp_path, root)
    artifacts = tmp_path / "job"
    out = artifacts / "results"
    out.mkdir(parents=True)
    beside = artifacts / "canary.txt"
    beside.write_text("canary\n")
    before = (beside.stat().st_mtime_ns, pth_files())
    log = io.StringIO()
    t0 = time.monotonic()
    # the verb's way in: the cluster's state of the run (malformed here) read once, then the download
    result = runs.collect_run(LocalShell({"PATH": os.environ["PATH"]}), cfg, "p666", out, out=log)
    seconds = time.monotonic() - t0
    print(
        f"\ncollect of the hostile run: {seconds:.1f}s; {len(result['lost'])} lost/bad lines, "
        f"{len(result['refused'])} refused\n{log.getvalue()}"
    )
    assert not result["ok"]
    check_rows(result["rows"], result["lost"])
    assert (beside.stat().st_mtime_ns, pth_files()) == before
    assert sorted(p.name for p in artifacts.iterdir()) == ["canary.txt", "results"]
    cluster = cfg.cluster.name
    assert sorted(p.name for p in out.iterdir()) == [cluster]
    assert sorted(p.name for p in (out / cluster).iterdir()) == ["metrics.txt", "p666"]
    run = out / cluster / "p666"
    assert result["run"] == run and set(collect.REPORTS) <= {p.name for p in run.iterdir()}
    _tree_ok = file_tree(run, reports=collect.REPORTS)
    assert "envs/index.json" in _tree_ok and not any(n.endswith(".env") for n in _tree_ok)
    secrets = [*CANARY_ENV.values(), SECRET.splitlines()[1]]
    assert_reports_safe(run, secrets)
    for s in secrets:
        assert s not in log.getvalue()
    lost = "\n".join(result["lost"])
    assert "bomb.ckpt" in lost and "not sent by the cluster" in lost and "cluster's state" in lost
    assert "envs/index.json entry" in lost
    refused = {name for name, _ in result["refused"]}
    assert "results/a000000001/a/x" in refused and "results/a000000001/abs-secret" in refused
    assert (run / "results/a000000002/sparse.bin").stat().st_size == hostile.SPARSE_SMALL
    # again: harmless, same result (the previous tree is replaced)
    again = collect.collect(LocalShell({"PATH": os.environ["PATH"]}), cfg, "p666", out, out=io.StringIO())
    assert len(again["rows"]) == len(result["rows"])
    assert sorted(p.name for p in (out / cluster).iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("run_id", ["../x", "/abs", "a/b", "..", ".hidden", "x\ny", "", "a" * 200])
def test_run_id_used_as_a_path_is_validated(run_id):
    with pytest.raises(errors.BadInput):
        runid.check(run_id)


def test_out_dir_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results").symlink_to(tmp_path / "elsewhere")
    cfg = make_settings(tmp_path, Path("/nonexistent"))
    with pytest.raises(errors.BadInput):
        collect.collect(LocalShell({}), cfg, "p1", tmp_path / "results", out=io.StringIO())


def test_reports_write_never_through_a_link(tmp_path, secret_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "junit.xml").symlink_to(secret_file)
    outdir.write_all(out, {"junit.xml": b"<x/>"}, tmp_path)
    assert secret_file.read_text() == SECRET and (out / "junit.xml").read_bytes() == b"<x/>"


# ------------------------------------------------------------------ W&B sync


def _offline_run(run: Path, cid: str = "a000000001") -> Path:
    d = run / "results" / cid / "wandb" / "offline-run-1-x"
    d.mkdir(parents=True)
    (d / "run-x.wandb").write_bytes(b"not really")
    (d / "run-x.wandb.synced").write_text("")  # planted by the cluster: must not count
    return d


def _fake_wandb(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_wandb.py"
    script.write_text(
        "import json, os, pathlib, sys\nd = pathlib.Path(sys.argv[1])\n"
        f"(d.parent / 'env.json').write_text(json.dumps(dict(os.environ)))\n{body}\n"
    )
    return [sys.executable, str(script)]


def test_wandb_sync_counts_only_a_verified_success_and_sees_only_what_it_needs(tmp_path):
    run, out = tmp_path / "p1", tmp_path / "out"
    out.mkdir()
    d = _offline_run(run)
    env = {**CANARY_ENV, "HPC_SSH_PRIVATE_KEY": "/k", "PATH": os.environ["PATH"], "HOME": "/root", "CI_JOB_JWT": "x"}
    log = io.StringIO()
    # wandb sync that prints an error and exits 0 (as it does for a garbage file): not synced
    failing = _fake_wandb(tmp_path, "print('wandb: ERROR could not read the file'); sys.exit(0)")
    assert wandb_sync.sync(run, out, command=failing, out=log, env=env) == (0, 1)
    assert "not synced" in log.getvalue() and not (out / wandb_sync.RECORD).exists()
    seen = json.loads((d.parent / "env.json").read_text())
    assert set(seen) <= set(wandb_sync.ALLOWED) and seen["WANDB_API_KEY"] == CANARY_ENV["WANDB_API_KEY"]
    assert not any(k.startswith(("HPC_", "GITLAB_", "CI_")) for k in seen)
    # a sync that writes W&B's own marker: synced, recorded, and skipped the next time
    working = _fake_wandb(tmp_path, "next(d.glob('run-*.wandb')).with_suffix('.wandb.synced').write_text('')")
    assert wandb_sync.sync(run, out, command=working, out=log, env=env) == (1, 0)
    assert wandb_sync.sync(run, out, command=working, out=log, env=env) == (0, 0)
    assert CANARY_ENV["WANDB_API_KEY"] not in log.getvalue()


def test_wandb_sync_without_a_key_does_nothing(tmp_path):
    _offline_run(tmp_path / "p1")
    assert wandb_sync.sync(tmp_path / "p1", tmp_path, command=["false"], env={"PATH": "/bin"}) == (0, 0)


def test_local_run_passes_no_secret_to_research_code():
    from mlops import local_env

    env = local_env.child_env(
        {
            **CANARY_ENV,
            "HPC_SSH_PRIVATE_KEY": "/k",
            "PATH": "/bin",
            "HOME": "/h",
            "LANG": "C",
            "CI_JOB_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "s",
            "WANDB_DIR": "/w",
        }
    )
    assert env == {"PATH": "/bin", "HOME": "/h", "LANG": "C", "WANDB_DIR": "/w"}


def test_caps_come_from_mlops_toml_collect_section(tmp_path):
    s = make_settings(tmp_path, Path("/w"), max_file_bytes=1024, log_tail_lines=5)
    assert s.collect.max_file_bytes == 1024 and s.collect.log_tail_lines == 5 and s.collect.max_members == 100_000
    assert caps.defaults() == make_settings(tmp_path, Path("/w")).collect  # defaults: options.py only
    for bad in (0, -1, "1k", True, 1.5):
        with pytest.raises(errors.BadInput, match="max_members"):
            make_settings(tmp_path, Path("/w"), max_members=bad)
