"""`mlops config check|migrate`: what is said about mlops.toml, and its migration from the 0.2 layout
to 0.3 (the rendered file is mlops.settings.fill_toml's).

Through tomlkit (comments and the user's formatting kept; values serialized by tomlkit, never pasted
into TOML text); a result that does not load back as the same settings is refused.
`migrate` replaces the file atomically (a temp file beside it, then rename): nothing half-written.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, TextIO

from . import errors, options, settings


def migrate_text(text: str, name: str | None = None) -> str:
    """A 0.2 mlops.toml (`[cluster]` + `[scheduler]` + `notify.partition`) rewritten in the 0.3 layout:
    one `[clusters.NAME]` block (NAME: `name`, else the host's first label) holding those keys, with
    their comments, where `[cluster]` was; `[clusters] default = NAME`; everything else untouched.

    Raises errors.BadInput when the text is not a 0.2 file, errors.Problems when it does not load (as
    it is, or with the name given) or the result would not load as the same settings.
    """
    import tomlkit

    data = _toml(text)
    if not any(s in data for s in options.LEGACY_SECTIONS):
        raise errors.BadInput(
            f"{settings.FILENAME} is not in the 0.2 layout (no [cluster] or [scheduler]): nothing to migrate"
        )
    old = settings.from_data(data, Path(".")) if name is None else None  # its own problems, in its own terms
    host = data.get("cluster", {}).get("host", "")
    name = name or options.cluster_name_of(str(host))
    problem = options.cluster_name_problem(name, "--name")
    if problem:
        raise errors.BadInput(str(problem))
    doc = tomlkit.parse(text)
    block = tomlkit.table()
    for section in options.LEGACY_SECTIONS:
        _move(doc.get(section, {}), block, lambda key, s=section: options.LEGACY_0_2.get((s, key), key))
    notify = doc.get("notify")
    if notify is not None and "partition" in notify:
        rest = tomlkit.table()
        _move(notify, block, lambda key: "notify_partition" if key == "partition" else None, rest)
        doc["notify"] = rest
    clusters = tomlkit.table()
    clusters.add(options.DEFAULT, name)
    clusters.add(name, block)
    out = tomlkit.document()
    for top, item in doc.body:
        if top is None:
            out.add(item)
        elif top.key == "cluster":
            out.add(options.CLUSTERS, clusters)
        elif top.key not in options.LEGACY_SECTIONS:
            out.add(top.key, item)
    new_text = tomlkit.dumps(out)
    new = settings.from_data(_toml(new_text), Path("."))
    if old is not None and dataclasses.replace(old, layout=new.layout) != new:
        raise errors.Problems(settings.FILENAME, ["the migrated file would not say the same; please report this"])
    return new_text


def _toml(text: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.Problems(
            settings.FILENAME, [f"not valid TOML ({exc}). Fix: correct the syntax at that line"]
        ) from None


def _groups(table: Any) -> list[tuple[list[Any], str, Any]]:
    """(the comments right above a key, the key, its item) for each key of a tomlkit table, in order."""
    from tomlkit.items import Comment

    out, pending = [], []
    for key, item in table.value.body:
        if key is None:
            if isinstance(item, Comment):
                pending.append(item)
            else:  # a blank line ends a comment block that belongs to no key
                pending = []
            continue
        out.append((pending, key.key, item))
        pending = []
    return out


def _move(table: Any, into: Any, rename: Any, rest: Any = None) -> None:
    """Each key of `table` with the comments right above it: into `into` under rename(key), or, when
    rename gives None, into `rest`."""
    for comments, key, item in _groups(table):
        target, name = (into, rename(key)) if rename(key) is not None else (rest, key)
        for comment in comments:
            target.add(comment)
        target.add(name, item)


def migrate(root: Path | None = None, name: str | None = None, out: TextIO = sys.stdout) -> None:
    """`mlops config migrate`: rewrite `<project>/mlops.toml` from the 0.2 layout to 0.3 (migrate_text),
    atomically, and say what was done; a file already in the 0.3 layout is left as it is."""
    path = settings.find_root(root) / settings.FILENAME
    text = path.read_text(encoding="utf-8")
    if not any(s in _toml(text) for s in options.LEGACY_SECTIONS):
        print(f"{path}: already in the {settings.LAYOUT} layout ([clusters.NAME] blocks): nothing to do", file=out)
        return
    new_text = migrate_text(text, name)
    write_atomic(path, new_text)
    names = ", ".join(settings.from_data(_toml(new_text), path.parent).clusters)
    print(f"{path}: rewritten in the {settings.LAYOUT} layout as [clusters.{names}] (comments kept; review it "
          "with `git diff mlops.toml`)", file=out)  # fmt: skip


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text`: a temp file beside it (the same mode), flushed, then renamed over it."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def summary(s: settings.Settings) -> list[str]:
    """What `mlops config check` says about a file that loads: its clusters and the default, and for a
    file in the 0.2 layout how it is read and how to migrate it."""
    lines = [f"{s.root / settings.FILENAME}: ok"]
    for cluster, scheduler in s.cluster_blocks:
        default = " (default)" if cluster.name == s.default_cluster else ""
        lines.append(f"  cluster {cluster.name}{default}: {cluster.user}@{cluster.host}:{cluster.port}, "
                     f"{scheduler.kind}, {cluster.runtime}, {cluster.workdir}")  # fmt: skip
    if s.layout == settings.LAYOUT_0_2:
        name = s.clusters[0]
        lines.append(
            f"  note: the file is in the {settings.LAYOUT_0_2} layout ([cluster] + [scheduler]); it is read as "
            f"one cluster named {name!r} after its host. Fix: `mlops config migrate` rewrites it as [clusters.{name}] "
            "(comments kept), where more clusters can follow"
        )
    return lines
