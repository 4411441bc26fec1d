"""mlops.toml as parsed data -> every key typed and checked, problems named field by field.

The layouts are mlops.options.keys' (0.3: `[clusters.NAME]` blocks; 0.2: `[cluster]` + `[scheduler]` +
`notify.partition`, read as ONE cluster named by its host's first label). Each cluster block is checked
as the template answers it stands for (mlops.options.validate), so a block written by hand meets the
same rules as the one the template wrote. Nothing here reads a file: mlops.settings does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import errors, options

FILENAME = "mlops.toml"
LAYOUT, LAYOUT_0_2 = "0.3", "0.2"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class Parsed:
    """The checked values: project-wide sections, the cluster blocks in file order, the default's name."""

    sections: dict[str, dict[str, object]]  # "project", "build", ... -> key -> typed value
    blocks: dict[str, dict[str, object]]  # cluster name -> block key -> typed value
    default: str
    layout: str  # LAYOUT or LAYOUT_0_2
    answers: dict[str, str] = field(default_factory=dict)  # the project-wide template answers


def shown(name: object) -> str:
    """A key or table name as messages show it: plain names bare, anything else quoted (never raw control chars)."""
    return name if isinstance(name, str) and _PLAIN_KEY.fullmatch(name) else repr(name)


class _Labels:
    """Where a cluster key is written, for messages: `clusters.NAME.key`, or in a 0.2 file its old place."""

    def __init__(self, legacy: bool):
        self.legacy = legacy
        self.old = {new: f"{s}.{k}" for (s, k), new in options.LEGACY_0_2.items()}

    def block(self, name: str) -> str:
        return "cluster" if self.legacy else f"clusters.{shown(name)}"

    def key(self, name: str, key: str) -> str:
        where = self.old.get(key, f"cluster.{key}") if self.legacy else f"clusters.{shown(name)}.{key}"
        option = options.BY_CLUSTER_KEY.get(key)
        return f"{where} ({option.name})" if option else where

    def field(self, name: str, answer: str) -> str:
        """The label of a problem with template answer `answer` found in block `name`."""
        option = options.BY_NAME[answer]
        if option.key == options.CLUSTER:
            return self.old["host"] if self.legacy else self.block(name)
        if option.in_cluster:
            return self.key(name, option.toml_key)
        return f"{option.key} ({option.name})"


def parse(data: dict) -> Parsed:
    """Check parsed mlops.toml data; raises errors.Problems(FILENAME, [...]) naming every bad key and its fix."""
    problems: list[str] = []
    legacy = any(s in data for s in options.LEGACY_SECTIONS)
    if legacy and options.CLUSTERS in data:
        raise errors.Problems(
            FILENAME,
            [
                "cluster: the 0.2 sections [cluster]/[scheduler] and [clusters.NAME] blocks are both in the file. "
                "Fix: move what [cluster] and [scheduler] say into a [clusters.NAME] block and remove them "
                "(`mlops config migrate` does it for a 0.2 file)"
            ],
        )
    labels = _Labels(legacy)
    raw_blocks, default = (_legacy_blocks if legacy else _blocks)(data, problems)
    sections = _sections(data, legacy, problems)
    answers: dict[str, str] = {}
    values: dict[str, dict[str, object]] = {s: {} for s in options.SECTIONS}
    for option in options.OPTIONS:
        if option.in_cluster:
            continue
        section, key = option.key.split(".")
        if key not in sections[section]:
            problems.append(
                f"{option.key}: is missing. Fix: add `{key} = ...` under [{section}] "
                f"(the template answer {option.name})"
            )
            continue
        value, problem = typed(sections[section][key], option.type)
        if problem:
            problems.append(f"{option.key} ({option.name}): {problem}")
            continue
        values[section][key] = value
        answers[option.name] = options.to_answer(value)
    for k in options.SETTINGS_KEYS:
        value, problem = _keyed(k, sections[k.section].get(k.name), answers)
        if problem:
            problems.append(f"{k.dotted}: {problem}")
        elif value is not None:
            values[k.section][k.name] = value
    blocks = {name: _block(name, raw, answers, labels, problems) for name, raw in raw_blocks.items()}
    default = _default(default, list(raw_blocks), labels, problems)
    _duplicates(blocks, labels, problems)
    if problems:
        raise errors.Problems(FILENAME, list(dict.fromkeys(problems)))  # a project problem once, not per block
    return Parsed(values, blocks, default, LAYOUT_0_2 if legacy else LAYOUT, answers)


def _sections(data: dict, legacy: bool, problems: list[str]) -> dict[str, dict]:
    """The project-wide tables (a missing one is empty), unknown sections and keys named."""
    known_sections = {*options.SECTIONS, options.CLUSTERS, *(options.LEGACY_SECTIONS if legacy else ())}
    for section in sorted(set(data) - known_sections, key=str):
        problems.append(
            f"[{shown(section)}]: is not a section of this template. Fix: remove it or check the "
            f"spelling (sections: {', '.join(options.SECTIONS)}, and [clusters.NAME] blocks)"
        )
    known = {o.key for o in options.OPTIONS} | {k.dotted for k in options.SETTINGS_KEYS}
    if legacy:
        known.add("notify.partition")  # moved into the cluster block
    out = {}
    for section in options.SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{section}: is not a table. Fix: write it as a [{section}] section")
            table = {}
        for key in table:
            moved = options.LEGACY_0_2.get((section, key))
            if moved and not legacy:
                problems.append(
                    f"{section}.{key}: in the {LAYOUT} layout this is `{moved}` in each [clusters.NAME] block. "
                    f"Fix: move it there as `{moved} = ...` (or remove it: the default is the cluster's partition)"
                )
            elif f"{section}.{key}" not in known:
                problems.append(
                    f"{section}.{shown(key)}: is not a setting of this template. Fix: remove it or check the spelling"
                )
        out[section] = table
    return out


def _blocks(data: dict, problems: list[str]) -> tuple[dict[str, dict], object]:
    """The [clusters.NAME] tables in file order and `[clusters] default` (None when not given)."""
    clusters = data.get(options.CLUSTERS)
    if not isinstance(clusters, dict) or not any(isinstance(v, dict) for v in clusters.values()):
        problems.append(
            "clusters: no cluster is defined. Fix: add a [clusters.NAME] block with host, user, "
            "workdir, auth, runtime and scheduler (README: 'Several clusters')"
        )
        return {}, None
    blocks = {}
    for name, value in clusters.items():
        if isinstance(value, dict):
            blocks[name] = value
        elif name != options.DEFAULT:
            problems.append(
                f"clusters.{shown(name)}: is not a [clusters.NAME] block. Fix: put cluster keys "
                "under a [clusters.NAME] header (e.g. [clusters.uni]); [clusters] holds only "
                "`default = NAME`"
            )
    default = clusters.get(options.DEFAULT)
    return blocks, None if isinstance(default, dict) else default


def _legacy_blocks(data: dict, problems: list[str]) -> tuple[dict[str, dict], object]:
    """A 0.2 file's [cluster] + [scheduler] + notify.partition as one block named after its host."""
    block: dict[str, object] = {}
    for section in options.LEGACY_SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.append(f"{section}: is not a table. Fix: write it as a [{section}] section")
            continue
        for key, value in table.items():
            new = options.LEGACY_0_2.get((section, key))
            if new is None:
                problems.append(
                    f"{section}.{shown(key)}: is not a setting of this template. Fix: remove it or check the spelling"
                )
            else:
                block[new] = value
    notify = data.get("notify", {})
    if isinstance(notify, dict) and "partition" in notify:
        block["notify_partition"] = notify["partition"]
    host = block.get("host")
    return {options.cluster_name_of(host) if isinstance(host, str) else "": block}, None


def _block(name: object, raw: dict, project: dict[str, str], labels: _Labels, problems: list[str]) -> dict:
    """One cluster block typed and checked: its answers against the template's rules, its other keys."""
    values: dict[str, object] = {}
    answers = dict(project)
    for key in raw:
        if key not in options.BY_CLUSTER_KEY and key not in options.CLUSTER_KEY:
            problems.append(
                f"{labels.block(str(name))}.{shown(key)}: is not a setting of a cluster block. "
                "Fix: remove it or check the spelling"
            )
    for key, option in options.BY_CLUSTER_KEY.items():
        if key not in raw and option.required:
            problems.append(
                f"{labels.key(str(name), key)}: is missing. Fix: add `{key} = ...` under [{labels.block(str(name))}]"
            )
            continue
        value, problem = typed(raw[key], option.type) if key in raw else (option.toml_default(), None)
        if problem:
            problems.append(f"{labels.key(str(name), key)}: {problem}")
            continue
        values[key] = value
        answers[option.name] = options.to_answer(value)
    for k in options.CLUSTER_KEYS:
        value, problem = _keyed(k, raw.get(k.name), answers)
        if problem:
            problems.append(f"{labels.key(str(name), k.name)}: {problem}")
        elif value is not None:
            values[k.name] = value
    answers["cluster_name"] = name if isinstance(name, str) else repr(name)
    problems += _rules(answers, name, labels)
    return values


def _rules(answers: dict[str, str], name: object, labels: _Labels) -> list[str]:
    """The template's rules (options.validate) on a block's answers. An answer that is missing or of the
    wrong type (reported already) stands in as its option's default, and no problem of its own is named:
    the others are still checked, so one run of `config check` names every problem of the block."""
    reported = {o.name for o in options.OPTIONS if o.name not in answers}
    filled = {**{o.name: o.choices[0] if o.choices else str(o.default) for o in options.OPTIONS}, **answers}
    found = [p for p in options.validate(filled, explain_derived=False) if p.field not in reported]
    out = []
    for p in found:
        if labels.legacy and p.field == "cluster_name":  # not written in the file: derived from the host
            if not any(q.field == "hpc_host" for q in found):
                out.append(
                    f"cluster.host (hpc_host): a 0.2 file names its one cluster after the host's "
                    f"first label, and {name!r} is not a valid cluster name. Fix: run `mlops config "
                    "migrate --name NAME` with 1 to 32 lowercase letters, digits and hyphens"
                )
            continue
        out.append(f"{labels.field(str(name), p.field)}: {p.message}. Fix: {p.fix}.")
    return out


def _keyed(k: options.Key, raw: object, answers: dict[str, str]) -> tuple[object, str | None]:
    """(value, None), (None, problem), or (None, None) when its default needs an answer that is reported already."""
    if raw is None:
        try:
            raw = k.default_for(answers)
        except KeyError:
            return None, None
    value, problem = typed(raw, k.type)
    if problem is None and isinstance(value, str) and options.control_characters(value):
        problem = f"{value[:40]!r} contains a control character. Fix: write it on one line"
    if problem is None and k.rule is not None:
        found = k.rule(value)
        problem = f"{found[0]}. Fix: {found[1]}." if found else None
    return (None, problem) if problem else (value, None)


def _default(given: object, names: list, labels: _Labels, problems: list[str]) -> str:
    if given is None:
        return str(names[0]) if names else ""
    if given not in names:
        known = ", ".join(shown(n) for n in names) or "none yet"
        problems.append(
            f"clusters.default: {shown(given)} is not a [clusters.NAME] block of this file. "
            f"Fix: name one of: {known} (or remove the key: the first block is the default)"
        )
        return ""
    return str(given)


def _duplicates(blocks: dict[str, dict], labels: _Labels, problems: list[str]) -> None:
    """Two blocks for one place (same host, port and workdir) would share their images and run directories."""
    seen: dict[tuple, str] = {}
    for name, b in blocks.items():
        if not {"host", "port", "workdir"} <= set(b):
            continue
        place = (str(b["host"]).lower(), b["port"], str(b["workdir"]).rstrip("/"))
        if place in seen:
            problems.append(
                f"{labels.block(name)}: has the same host, port and workdir as "
                f"{labels.block(seen[place])}, so both would use the same images and run directories. "
                "Fix: remove one of the blocks, or give one another workdir"
            )
        else:
            seen[place] = name


def typed(value: object, kind: type) -> tuple[object, str | None]:
    """(value as `kind`, None) or (None, problem). Accepts what older files hold: port "22", use_gpu "yes"."""
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        if value in ("yes", "no"):
            return value == "yes", None
        return None, f"{value!r} is not true or false. Fix: write true or false (without quotes)"
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value), None
        return None, f"{value!r} is not a whole number. Fix: write a number without quotes, e.g. 22"
    if isinstance(value, str):
        return value, None
    return None, f"{value!r} is not text. Fix: write it in double quotes"
