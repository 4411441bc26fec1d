"""What a submission writes into the run directory before anything is started.

run.json (provenance: commit, pipeline, cluster, images), state/stage.env (the run context of the
params and data stages, never a secret), the container argv files (one word per line, placeholders
the shell files fill in) and the shell files themselves (package data, copied at every attempt so a
run always uses the shell of the mlops that submitted it).
"""

from __future__ import annotations

import os
import shlex
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .. import params, rundir, runenv, stages
from ..errors import BadInput
from ..images import runtime

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

SHELL_FILES = ("task.sh", "stage.sh", "runner.sh", "submit_slurm.sh", "cancel_slurm.sh", "notify.sh", "notify_post.py")


def argv_lines(argv: list[str]) -> str:
    """A container argv as the shell files read it (mlops.images.runtime.argv_file: one word per line,
    placeholders @ENV_FILE@, @CID@, @UID@, @GID@ for what the shell knows). ValueError for a newline."""
    return runtime.argv_file(argv)


def images_on_cluster(s: Settings, manifest: dict) -> dict[str, runtime.Image]:
    """The deployed images of the manifest (BadInput when one is missing from it)."""
    found = manifest.get("images", {})
    missing = [st.name for st in stages.STAGES if st.name not in found]
    if missing:
        raise BadInput(f"images manifest lacks {', '.join(missing)}: run `mlops build` then `mlops deploy`")
    store = f"{s.cluster_root}/images"
    return {
        st.name: runtime.Image(st.name, found[st.name]["digest"], store, s.project.slug, s.cluster.runtime)
        for st in stages.STAGES
    }


def write_shell_files(session: Remote, run_dir: str) -> None:
    """The shell files of mlops.cluster.shell into state/jobs/ (0700: they run as the user)."""
    for name in SHELL_FILES:
        data = resources.files(__package__).joinpath(f"shell/{name}").read_bytes()
        session.write_file(f"{run_dir}/state/jobs/{name}", data, 0o700)


def prepare(
    session: Remote,
    s: Settings,
    run_dir: str,
    run_id: str,
    manifest: dict,
    images: dict[str, runtime.Image],
    commit: str,
    n: int,
) -> None:
    """Create the run directory (or complete one a cut submission left) with run.json and stage files."""
    q = shlex.quote
    session.run(
        f"mkdir -p {q(os.path.dirname(run_dir))} && {{ [ -d {q(run_dir)} ] || mkdir -m 700 {q(run_dir)}; }} && "
        f"cd {q(run_dir)} && mkdir -m 700 -p state/tasks state/jobs state/slurm results"
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = rundir.create(Path(tmp), run_id, {
            "mode": s.scheduler.kind, "commit": commit, "cluster": s.cluster.name,
            "pipeline": os.environ.get("CI_PIPELINE_ID"), "pipeline_url": os.environ.get("CI_PIPELINE_URL"),
            "images": {name: img["digest"] for name, img in manifest["images"].items()},
            "runtime": images["model"].runtime,
            "parameters_sha256": params.file_sha256(s.root / "params" / "parameters.json"),
            "configurations": n})  # fmt: skip
        session.write_file(f"{run_dir}/run.json", (local / "run.json").read_bytes(), 0o600)
    tags = [f"commit={commit[:12]}"] + [f"{k}@{img['digest'][:19]}" for k, img in sorted(manifest["images"].items())]
    env = runenv.env_file_text(runenv.stage_env(s, run_id, runtime.MOUNT, tags))
    session.write_file(f"{run_dir}/state/stage.env", env.encode(), 0o600)
    for name in ("params", "data"):
        argv = runtime.run_argv(images[name], run_dir, "@ENV_FILE@", entrypoint=stages.raw_entrypoint(s.root, name))
        session.write_file(f"{run_dir}/state/jobs/{name}.argv", argv_lines(argv).encode(), 0o600)
