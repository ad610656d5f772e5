"""Output folders that are never destroyed: :func:`check_out_folder` runs before a writer writes anything.

Every command that writes a folder (``python -m train … --out``, ``train.sweep``, ``train.compare``,
``train.figures``, ``train.evaluate``) asks first whether the folder is

* **absent** or **empty** — it is written;
* **one of ours** — a folder that this kind of writer wrote before: it may be resumed or overwritten (a training run
  still asks for ``--resume`` or ``--overwrite``);
* anything else — refused with :class:`OutFolderError`, naming the folder and the first few entries that are not
  ours. ``--overwrite`` does not change that: only this project's own folders are ever replaced.

A folder is one of ours when (1) **every** entry in it is a file this kind of writer writes (:data:`KINDS` lists
them, in one place) or a subfolder that is one of ours in turn (a sweep's run folders, a run's ``checkpoint/``), and
(2) it holds the kind's **marker**: a file with the content only our writer puts there — ``train_args.json`` with
the training settings (or, for a run killed before it finished, ``checkpoint/state.safetensors`` whose metadata holds
them), ``comparison.json``, ``figures.json``, the ``metrics.json`` of an evaluation, a sweep's ``sweep.yaml`` or
``summary.json``. A folder whose only entries are subfolders of ours needs no marker. Names alone are not enough: a
folder holding just ``README.md`` and ``config.json`` (a Space's, a Hub model's) is not a run of ours.

Symbolic links are refused everywhere: an ``--out`` that is a link, and a link anywhere inside a folder of ours (a
``README.md`` linked to another file must never be overwritten through the link). Harmless files that file managers
leave (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) are tolerated and never written.

Example:
    >>> check_out_folder("runs/new_run", "run")            # doctest: +SKIP
    'absent'
    >>> check_out_folder(".", "run")                        # doctest: +SKIP
    Traceback (most recent call last):
    OutFolderError: . is not empty and is not a training run folder (…) of this project: it holds .git/, LICENSE, …
"""
from __future__ import annotations

import fnmatch
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from .errors import XcxrValueError

__all__ = ["OutFolderError", "FolderKind", "KINDS", "check_out_folder", "foreign_entries"]

#: Entries that file managers create by themselves: tolerated in any folder of ours, never written or removed.
IGNORED: frozenset[str] = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_SHOWN = 5                 # entries named in a refusal
_MARKER_MAX_BYTES = 64 << 20  # a marker larger than this is not read (and so not ours)
#: The temporary file safetensors (>= 0.6, Rust ``tempfile``) writes beside a ``.safetensors`` before renaming it:
#: a run killed mid-save leaves one behind (seen in CI: ``checkpoint/.tmp3zUoeH``).
SAFETENSORS_TMP = ".tmp??????"


class OutFolderError(XcxrValueError):
    """An output folder that is not one of ours (or holds a symbolic link): nothing was written."""


# ------------------------------------------------------------------------------------------------- markers
def _read_json(path: Path) -> Any:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MARKER_MAX_BYTES:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _has_keys(value: Any, keys: set[str]) -> bool:
    return isinstance(value, dict) and keys <= set(value)


#: Keys every ``train_args.json`` has held since the first version (later fields may be missing in old runs).
_TRAIN_ARGS_KEYS = {"model", "data", "out", "epochs", "lr", "seed"}


def _checkpoint_args(path: Path) -> Any:
    """The ``args`` in a checkpoint's safetensors metadata (header read by hand: no torch import), or None."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > _MARKER_MAX_BYTES:
                return None
            header = json.loads(f.read(n))
        return json.loads(header["__metadata__"]["meta"])["args"]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def _is_run(folder: Path) -> bool:
    return (_has_keys(_read_json(folder / "train_args.json"), _TRAIN_ARGS_KEYS)
            or _has_keys(_checkpoint_args(folder / "checkpoint" / "state.safetensors"), _TRAIN_ARGS_KEYS))


def _is_sweep(folder: Path) -> bool:
    if _has_keys(_read_json(folder / "summary.json"), {"runs", "kind", "base"}):
        return True
    path = folder / "sweep.yaml"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MARKER_MAX_BYTES:
            return False
        import yaml
        doc = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - unreadable, not UTF-8, not YAML: simply not our marker
        return False
    return isinstance(doc, dict) and bool({"base", "variants"} & set(doc))


def _is_compare(folder: Path) -> bool:
    return _has_keys(_read_json(folder / "comparison.json"), {"split", "criteria", "models"})


def _is_figures(folder: Path) -> bool:
    return _has_keys(_read_json(folder / "figures.json"), {"model", "data", "files"})


def _is_evaluation(folder: Path) -> bool:
    return _has_keys(_read_json(folder / "metrics.json"), {"model", "split", "n_images", "threshold_source"})


# --------------------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class FolderKind:
    """What one writer leaves in its output folder.

    Attributes:
        name: the key in :data:`KINDS`.
        what: the folder in words, for messages ("a training run folder").
        files: glob patterns of the files the writer writes at the top level (temporary ``*.tmp`` ones included).
        folders: subfolder name pattern → the kinds such a subfolder may be (the first pattern that matches counts).
        marker: whether a folder holds this kind's marker; None for a kind that only lives inside another.
        marker_name: the marker in words, for messages.
        plural: these folders in words, for messages ("training run folders").
    """

    name: str
    what: str
    files: tuple[str, ...]
    folders: tuple[tuple[str, tuple[str, ...]], ...] = ()
    marker: Callable[[Path], bool] | None = None
    marker_name: str = ""
    plural: str = "folders of this kind"

    def allows_file(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.files)

    def subfolder_kinds(self, name: str) -> tuple[str, ...]:
        return next((kinds for pattern, kinds in self.folders if fnmatch.fnmatchcase(name, pattern)), ())


#: Every kind of output folder and the files its writer leaves: the one list to extend when a writer writes more
#: (tests run each writer and check that every file it leaves is listed here).
KINDS: dict[str, FolderKind] = {k.name: k for k in (
    FolderKind("run", "training run folder (python -m train … --out)",
               # lib.models.save_model (config.json, model.safetensors, through *.tmp), lib.training.fit
               # (metrics/history/train_args), lib.reporting.write_run_report (plots, model card README.md)
               ("config.json", "config.json.tmp", "model.safetensors", "model.safetensors.tmp", "README.md",
                "metrics.json", "history.json", "train_args.json", "training_curves.png", "roc.png",
                "confusion_matrix.png", SAFETENSORS_TMP),
               (("checkpoint", ("checkpoint",)), ("predictions", ("predictions",))),
               _is_run, "train_args.json (or checkpoint/state.safetensors) with this project's training settings",
               "training run folders"),
    FolderKind("checkpoint", "training checkpoint folder", ("state.safetensors", "state.safetensors.tmp",
                                                                  SAFETENSORS_TMP)),
    # lib.explain.ship_predictions (python -m train.predictions): a model's predictions on the app's splits
    FolderKind("predictions", "folder of shipped predictions", ("predictions-*.npz", "predictions-*.tmp*.npz")),
    FolderKind("sweep", "sweep folder (python -m train.sweep --out / --results)",
               ("sweep.yaml", "summary.md", "summary.json", "curves.png", "search_*.png"),
               (("comparison", ("compare", "run")), ("best", ("bundle", "run")), ("*", ("run",))),
               _is_sweep, "sweep.yaml or summary.json of a sweep", "sweep folders"),
    FolderKind("bundle", "folder of bundled best runs", (), (("*", ("run",)),)),
    FolderKind("compare", "comparison report folder (python -m train.compare --out)",
               ("comparison.json", "thresholds.md", "roc.png", "confusion_matrices.png", "filters_*.png"),
               (), _is_compare, "comparison.json of a comparison", "comparison reports"),
    FolderKind("figures", "figures folder (python -m train.figures --out)",
               ("figures.json", "gradcam_10x2.png", "saliency_outcomes.png"),
               (), _is_figures, "figures.json of python -m train.figures", "figures folders"),
    FolderKind("evaluation", "evaluation folder (python -m train.evaluate --out)",
               ("metrics.json", "roc.png", "confusion_matrix.png", "confusion_matrix_f1.png",
                "confusion_matrix_gmean.png"),
               (), _is_evaluation, "metrics.json of python -m train.evaluate", "evaluation folders"),
)}


# ---------------------------------------------------------------------------------------------------- check
def _kind(kind: str) -> FolderKind:
    if kind not in KINDS:
        raise XcxrValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def _foreign(folder: Path, kinds: tuple[str, ...], prefix: str) -> list[str]:
    """Entries of ``folder`` (relative names, ``prefix`` before them) that no kind of ``kinds`` accounts for.

    Empty when the folder is one of ours as any of ``kinds``; otherwise the entries of the kind that came closest
    when they are few (``run_a/notes.txt``), else the subfolder itself (``data/``).
    """
    best: list[str] | None = None
    for name in kinds:
        found = _foreign_as(folder, KINDS[name], prefix)
        if not found:
            return []
        if best is None or len(found) < len(best):
            best = found
    return best if best is not None and len(best) <= 2 else [prefix]


def _foreign_as(folder: Path, kind: FolderKind, prefix: str) -> list[str]:
    foreign: list[str] = []
    files = 0
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        rel = prefix + e.name
        if e.is_symlink():
            foreign.append(f"{rel} (a symbolic link)")
        elif e.name in IGNORED:
            continue
        elif e.is_dir(follow_symlinks=False):
            kinds = kind.subfolder_kinds(e.name)
            foreign += _foreign(Path(e.path), kinds, rel + "/") if kinds else [rel + "/"]
        elif e.is_file(follow_symlinks=False) and kind.allows_file(e.name):
            files += 1
        else:
            foreign.append(rel)
    if not foreign and files and kind.marker is not None and not kind.marker(folder):
        foreign.append(f"(no {kind.marker_name})" if not prefix else f"{prefix} (no {kind.marker_name})")
    return foreign


def foreign_entries(path: str | os.PathLike, kind: str) -> list[str]:
    """Entries of the folder ``path`` that show it is not a ``kind`` folder of ours (``[]``: ours, or absent).

    Names are relative to ``path``; a symbolic link anywhere inside is listed, and so is a missing marker.
    """
    k, path = _kind(kind), Path(path)
    if path.is_symlink():
        return [". (a symbolic link)"]
    if not path.exists():
        return []
    return _foreign_as(path, k, "")


def check_out_folder(path: str | os.PathLike, kind: str) -> Literal["absent", "empty", "ours"]:
    """Say whether ``path`` may be written as a ``kind`` output folder, or refuse it; writes nothing.

    Args:
        path: the output folder (``--out``).
        kind: a key of :data:`KINDS`: ``"run"``, ``"sweep"``, ``"compare"``, ``"figures"`` or ``"evaluation"``.

    Returns:
        ``"absent"`` (nothing there), ``"empty"`` (an empty folder, or one with only ``.DS_Store``-like files) or
        ``"ours"`` (a folder this kind of writer wrote: the caller decides whether to resume or overwrite it).

    Raises:
        OutFolderError: ``path`` is a symbolic link, a file, unreadable, or a non-empty folder that is not one of
            ours (the message names the first few entries that are not, and what to do).

    Example:
        >>> check_out_folder("runs/never_used", "run")     # doctest: +SKIP
        'absent'
    """
    k, p = _kind(kind), Path(path)
    what = f"a {k.what}"
    fix = (f"choose a new or empty folder for the output (--out); only this project's own {k.plural} are ever "
           "overwritten, --overwrite or not")
    if p.is_symlink():
        raise OutFolderError(f"{path} is a symbolic link; an output folder must be a real folder (writing through a "
                             f"link could overwrite files elsewhere): {fix}")
    if not p.exists():
        return "absent"
    if not p.is_dir():
        raise OutFolderError(f"{path} is a file, not a folder: {fix}")
    try:
        entries = [name for name in os.listdir(p) if name not in IGNORED]
        if not entries:
            return "empty"
        foreign = _foreign_as(p, k, "")
    except OSError as e:
        raise OutFolderError(f"{path} cannot be read ({e.strerror or e}); nothing was written: {fix}") from e
    if not foreign:
        return "ours"
    links = [f for f in foreign if f.endswith("(a symbolic link)")]
    if links:
        raise OutFolderError(f"{path} holds symbolic links ({', '.join(links[:_SHOWN])}"
                             f"{_more(links)}); nothing was written: replace them with real files or {fix}")
    if foreign == [f"(no {k.marker_name})"]:  # only our file names, but not our content: e.g. a Space's README.md
        names = sorted(entries)
        held = f"{', '.join(names[:_SHOWN])}{_more(names)} but no {k.marker_name}"
    else:
        held = f"{', '.join(foreign[:_SHOWN])}{_more(foreign)}"
    raise OutFolderError(f"{path} is not empty and is not {what} of this project: it holds {held}; nothing was "
                         f"written. To keep these files, {fix}")


def _more(items: list[str]) -> str:
    return f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
