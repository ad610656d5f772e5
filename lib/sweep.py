"""Sweeps: many training runs from one YAML file, resumable, summarised in one table.

    python -m train.sweep studies/study1_finetuning/sweep.yaml                    # the full study (GPU: minutes)
    python -m train.sweep studies/study1_finetuning/sweep.yaml --variant small    # the CPU-sized one
    python -m train.sweep CONFIG.yaml --out runs/x --set max_images=64 --set epochs=1   # a smoke test

A sweep file names a ``base`` training configuration (any :class:`lib.training.TrainConfig` field) and then
*one* way to vary it:

``runs``
    a list of named overrides — ``{name: dropout_0.3, model_options: {dropout: 0.3}}``;
``grid``
    the Cartesian product of value lists — ``{lr: [1e-4, 1e-3], batch_size: [16, 32]}``;
``search``
    the report's one-at-a-time search — ``[{param: lr, values: […]}, {param: weight_decay, values: […]}, …]``: every
    value of the first parameter is tried, the one with the highest validation AUC is kept, then the next parameter
    is searched with it, and so on. With ``models: [dnn1, cnn1, …]`` the whole search is repeated per model.

``variants`` hold named overrides of the whole file (dicts merged key by key, lists replaced), e.g. a ``small``
variant at 64 px and a few epochs for a CPU. Paths (``data``, ``pretrained_file``) are relative to the working
directory, as on the ``python -m train`` command line.

Every run is an ordinary ``python -m train`` output folder (Hub-ready, listed by the app) named after what it
changes, under ``OUT/``. Running the same command again skips finished runs (``metrics.json`` present with the same
settings), resumes a killed one from its checkpoint, and refuses — naming the differences — a folder that holds a
run with other settings, unless ``--overwrite``. A folder that is not ours — other files in ``OUT`` or in a run
folder, a symbolic link — is refused before anything is written, ``--overwrite`` or not
(:func:`lib.out_folders.check_out_folder`). Identical configurations are trained once (a search step whose
value equals the previous step's winner reuses that run).

At the end ``OUT/summary.md`` and ``OUT/summary.json`` hold one row per run (its settings, best epoch, validation
AUC and loss at that epoch, test accuracy/precision/recall/F1/AUC at the operating threshold chosen on validation)
and ``OUT/*.png`` the validation AUC and loss curves: one figure for a list or grid, one per search step and model
for a search (as in the report).
"""
from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .errors import XcxrValueError
from .metrics.summary import headline
from .out_folders import check_out_folder
from .training import CHECKPOINT_DIR, CHECKPOINT_FILE, TrainConfig, fields_affecting, fit, upgrade_args

__all__ = ["SweepError", "SweepConfig", "RunSpec", "load_sweep", "run_sweep", "summary_rows", "summary_markdown",
           "pick_best", "run_name", "expand", "run_state", "best_val_auc", "export_results"]

log = logging.getLogger(__name__)

# Fields a sweep file may set in `base`, `runs`, `grid` and `search` (the runner owns the rest: the run folder and
# how it is driven). Derived from what each TrainConfig field affects (lib.training.AFFECTS).
_RUNNER_OWNED = fields_affecting("runner", "folder")
TRAIN_FIELDS = [f.name for f in fields(TrainConfig) if f.name not in _RUNNER_OWNED]
# Settings that do not change what a run computes: a finished run is still "the same" when they differ (a longer
# or shorter run of the same settings is continued or refused by run_state, on its epochs alone).
_IGNORED_IN_COMPARISON = fields_affecting("runner", "folder", "length", "machine")
_TOP_KEYS = {"name", "description", "base", "runs", "grid", "search", "models", "variants", "compare", "publish",
             "bundle_best"}
_SHORT = {"weight_decay": "wd", "batch_size": "bs", "model_options": "", "img_size": "px", "epochs": "ep"}


class SweepError(XcxrValueError):
    """A sweep file or output folder is not usable; the message names the key or folder and the fix."""


@dataclass
class RunSpec:
    """One training run of a sweep: its folder name, its full settings, and the search step it belongs to."""

    name: str
    settings: dict[str, Any]
    group: str = ""          # the model (search) or "" (list/grid)
    step: int | None = None  # index in `search`, None for list/grid runs
    param: str | None = None
    value: Any = None

    def train_config(self, out: Path, progress: bool = False) -> TrainConfig:
        return TrainConfig(**self.settings, out=str(out / self.name), resume=True, progress=progress)


@dataclass
class SweepConfig:
    """A parsed sweep file (one variant applied)."""

    name: str
    description: str
    base: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)  # [{model: name, <its own settings>}]
    compare: bool = False
    publish: str | None = None     # repo name prefix, e.g. "xcxr-study1": best runs go to OWNER/<prefix>-<model>
    bundle_best: list[str] = field(default_factory=list)
    variant: str | None = None
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "search" if self.search else "grid" if self.grid else "runs"


# --------------------------------------------------------------------------------------------------- parsing
def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``: dicts merged key by key (recursively), everything else replaced."""
    out = dict(copy.deepcopy(a))
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def _renamed(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``settings`` with renamed training settings under their new names: old sweep files keep working."""
    if not isinstance(settings, Mapping):
        raise SweepError(f"{where}: expected a mapping of training settings (KEY: VALUE), got {settings!r}")
    new = upgrade_args(settings)
    if set(new) != set(settings):
        log.warning("%s: %s renamed to %s; the old name still works but is deprecated", where,
                    ", ".join(sorted(set(settings) - set(new))), ", ".join(sorted(set(new) - set(settings))))
    return new


def _check_settings(settings: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(settings) - set(TRAIN_FIELDS))
    if unknown:
        owned = [k for k in unknown if k in _RUNNER_OWNED]
        hint = (f" ({', '.join(owned)} is set by the sweep runner: use --out/--overwrite/--push-to-hub)" if owned
                else f"; allowed: {', '.join(TRAIN_FIELDS)}")
        raise SweepError(f"{where}: unknown training setting(s) {unknown}{hint}")


def load_sweep(path: str | Path, variant: str | None = None,
               overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Read a sweep YAML file, apply ``variant`` and then ``overrides`` (base settings, e.g. ``{"epochs": 1}``).

    Raises:
        SweepError: unreadable YAML, unknown keys or settings, an unknown variant, more than one of
            ``runs``/``grid``/``search``, a search step without ``param``/``values``.

    Example:
        >>> cfg = load_sweep("studies/study1_finetuning/sweep.yaml", variant="small")   # doctest: +SKIP
        >>> [r.name for r in expand(cfg)][:2]                                             # doctest: +SKIP
        ['baseline', 'dropout_0.3']
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"{path}: cannot read the sweep file ({e.strerror or e})") from e
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a sweep file is a YAML mapping with at least a 'base' key")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    variants = raw.get("variants") or {}
    doc = {k: v for k, v in raw.items() if k != "variants"}
    if variant is not None:
        if variant not in variants:
            raise SweepError(f"{path}: no variant {variant!r}; the file defines {sorted(variants) or 'none'}")
        bad = sorted(set(variants[variant] or {}) - (_TOP_KEYS - {"variants"}))
        if bad:
            raise SweepError(f"{path}: variant {variant!r} has unknown key(s) {bad}")
        patch = dict(variants[variant] or {})
        if isinstance(patch.get("runs"), Mapping):
            # {run name: overrides}: patch those runs of the list instead of replacing the list
            by_name = {str(r.get("name")): r for r in doc.get("runs") or [] if isinstance(r, dict)}
            missing = sorted(set(patch["runs"]) - set(by_name))
            if missing:
                raise SweepError(f"{path}: variant {variant!r} patches runs {missing} that the file does not define")
            doc["runs"] = [_merge(r, patch["runs"].get(str(r.get("name")), {})) for r in doc.get("runs") or []]
            del patch["runs"]
        doc = _merge(doc, patch)
    base = _renamed(doc.get("base") or {}, f"{path}: base")
    if overrides:
        base = _merge(base, _renamed(overrides, "--set"))
    _check_settings(base, f"{path}: base")
    ways = [k for k in ("runs", "grid", "search") if doc.get(k)]
    if len(ways) > 1:
        raise SweepError(f"{path}: use one of runs, grid or search, not {ways}")
    runs = list(doc.get("runs") or [])
    for i, r in enumerate(runs):
        if not isinstance(r, dict) or not r.get("name"):
            raise SweepError(f"{path}: runs[{i}] needs a 'name' (the run's folder) and the settings it changes")
        runs[i] = r = _renamed(r, f"{path}: run {r['name']!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]+", str(r["name"])):
            raise SweepError(f"{path}: run name {r['name']!r} may only hold letters, digits and _ . = + -")
        _check_settings({k: v for k, v in r.items() if k != "name"}, f"{path}: run {r['name']!r}")
    names = [str(r["name"]) for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SweepError(f"{path}: run names must be unique; repeated: {dupes}")
    grid = _renamed(doc.get("grid") or {}, f"{path}: grid")
    _check_settings(grid, f"{path}: grid")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise SweepError(f"{path}: grid.{k} must be a non-empty list of values")
    search = list(doc.get("search") or [])
    for i, s in enumerate(search):
        if not isinstance(s, dict) or "param" not in s or not isinstance(s.get("values"), list) or not s["values"]:
            raise SweepError(f"{path}: search[{i}] needs 'param' and a non-empty list 'values'")
        search[i] = s = {**s, "param": next(iter(_renamed({s["param"]: None}, f"{path}: search[{i}]")))}
        _check_settings({s["param"]: None}, f"{path}: search[{i}]")
    models = []
    for i, m in enumerate(doc.get("models") or []):
        # a model name, or {model: name, <settings for this model only>} (e.g. a larger img_size for cnn1)
        m = {"model": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or not m.get("model"):
            raise SweepError(f"{path}: models[{i}] is a model name or a mapping with a 'model' key")
        m = _renamed(m, f"{path}: models[{i}]")
        _check_settings(m, f"{path}: models[{i}]")
        models.append(dict(m))
    if models and not search:
        raise SweepError(f"{path}: 'models' repeats a one-at-a-time 'search' per model; add a 'search'")
    publish = doc.get("publish")
    if publish is not None and not isinstance(publish, str):
        raise SweepError(f"{path}: publish is a repo name prefix such as 'xcxr-study1'")
    if "model" not in base and not models:
        raise SweepError(f"{path}: base.model is required (or a 'models' list)")
    if "data" not in base:
        raise SweepError(f"{path}: base.data is required (a data folder, .npz or CT description)")
    return SweepConfig(name=str(doc.get("name") or path.stem), description=str(doc.get("description") or ""),
                       base=base, runs=runs, grid=grid, search=search, models=models,
                       compare=bool(doc.get("compare", False)), publish=publish,
                       bundle_best=list(doc.get("bundle_best") or []), variant=variant, source=str(path), raw=raw)


# ------------------------------------------------------------------------------------------------ expansion
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return "_".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def run_name(settings: Mapping[str, Any], base: Mapping[str, Any], prefix: str = "") -> str:
    """A folder name from what ``settings`` change relative to ``base`` (``"base"`` when nothing).

    Example:
        >>> run_name({"lr": 3e-4, "weight_decay": 0.0, "gamma": 1.0}, {"lr": 1e-3, "weight_decay": 0.0, "gamma": 1.0})
        'lr=0.0003'
    """
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in TRAIN_FIELDS and f.name != "model_options"}
    settings, base = {**defaults, **settings}, {**defaults, **base}
    parts = []
    for k in TRAIN_FIELDS:
        if k in ("model", "data") or settings.get(k) == base.get(k):
            continue
        if k == "model_options":
            opts = settings.get(k) or {}
            old = base.get(k) or {}
            parts += [f"{o}={_fmt(v)}" for o, v in opts.items() if old.get(o) != v]
        else:
            parts.append(f"{_SHORT.get(k, k)}={_fmt(settings.get(k))}")
    name = "__".join(parts) or "base"
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)
    return f"{prefix}__{name}" if prefix else name


def expand(cfg: SweepConfig) -> list[RunSpec]:
    """The runs of a list or grid sweep, in order (a search is expanded step by step in :func:`run_sweep`)."""
    if cfg.runs:
        return [RunSpec(str(r["name"]), _merge(cfg.base, {k: v for k, v in r.items() if k != "name"}))
                for r in cfg.runs]
    if cfg.grid:
        keys = list(cfg.grid)
        specs = []
        for combo in itertools.product(*(cfg.grid[k] for k in keys)):
            change = dict(zip(keys, combo))
            name = "__".join(f"{_SHORT.get(k, k) or k}={_fmt(v)}" for k, v in change.items())
            specs.append(RunSpec(re.sub(r"[^A-Za-z0-9_.=+-]", "_", name), _merge(cfg.base, change)))
        return specs
    if cfg.search:
        raise SweepError("a search sweep is expanded while it runs (each step needs the previous winner)")
    return [RunSpec("base", dict(cfg.base))]


# ------------------------------------------------------------------------------------------------- running
def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    full = asdict(TrainConfig(**{k: v for k, v in settings.items()}, out=""))
    return {k: v for k, v in full.items() if k not in _IGNORED_IN_COMPARISON}


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _done_settings(folder: Path) -> dict[str, Any] | None:
    """The settings of the run in ``folder`` (finished: train_args.json; killed: the checkpoint), or None."""
    from .training import read_checkpoint_meta
    if (folder / "metrics.json").is_file() and (folder / "train_args.json").is_file():
        args = json.loads((folder / "train_args.json").read_text())
    elif (folder / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file():
        args = read_checkpoint_meta(folder / CHECKPOINT_DIR)["args"]
    else:
        return None
    return {k: v for k, v in upgrade_args(args).items() if k in TRAIN_FIELDS}


def run_state(folder: Path, settings: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``("finished" | "partial" | "new" | "different", differences)`` for the run ``settings`` in ``folder``.

    ``partial`` is a killed run (or a finished one asked for more epochs) that ``fit(resume=True)`` continues;
    ``different`` lists what the folder's run was trained with instead.
    """
    done = _done_settings(folder)
    if done is None:
        return "new", []
    diff = _differences(_comparable(done), _comparable(settings))
    if diff:
        return "different", diff
    finished = (folder / "metrics.json").is_file()
    want, have = int(settings.get("epochs", TrainConfig.epochs)), int(done.get("epochs", 0))
    if finished and want == have:
        return "finished", []
    if want >= have or not finished:
        return "partial", []
    return "different", [f"epochs: {have} → {want}"]


def _train(spec: RunSpec, out: Path, overwrite: bool, progress: bool,
           trainer: Callable[[TrainConfig], dict[str, Any]]) -> dict[str, Any]:
    folder = out / spec.name
    state, diff = run_state(folder, spec.settings)
    if state == "different" and not overwrite:
        raise SweepError(f"{folder} holds a run with other settings ({'; '.join(diff)}); "
                         "pass --overwrite to train it again, or choose another --out")
    if state == "finished":
        log.info("%s: finished earlier, skipped", spec.name)
        return json.loads((folder / "metrics.json").read_text())
    if state == "different":
        check_out_folder(folder, "run")  # only a run folder of ours is ever removed (checked again right before)
        shutil.rmtree(folder)
    log.info("%s: %s", spec.name, "resuming" if state == "partial" else "training")
    return trainer(spec.train_config(out, progress))


def _refuse_own_file(source: Path, target: Path, what: str, flag: str) -> None:
    """Refuse to write ``target`` when it is ``source`` itself (e.g. --out is the folder of the sweep file)."""
    try:
        same = source.is_file() and target.is_file() and os.path.samefile(source, target)
    except OSError:
        same = False
    if same:
        raise SweepError(f"{target} is {what} itself; the sweep would overwrite it: choose another {flag}")


def pick_best(values: Sequence[Any], scores: Sequence[float | None]) -> int:
    """Index of the highest score (validation AUC); the first one on a tie; ``None`` scores never win.

    Example:
        >>> pick_best([1e-4, 1e-3, 1e-2], [0.91, 0.95, 0.95])
        1
    """
    best, best_score = -1, -math.inf
    for i, s in enumerate(scores):
        if s is not None and not math.isnan(s) and s > best_score:
            best, best_score = i, s
    if best < 0:
        raise SweepError(f"no run of {list(values)} has a validation AUC: cannot pick a value")
    return best


def best_val_auc(folder: Path) -> float | None:
    """The selection score of a finished run: the highest per-epoch validation AUC (its best epoch)."""
    history = json.loads((folder / "history.json").read_text())
    aucs = [h["val_auc"] for h in history if h.get("val_auc") is not None]
    return max(aucs) if aucs else None


def run_sweep(cfg: SweepConfig, out: str | Path, overwrite: bool = False, progress: bool = False,
              trainer: Callable[[TrainConfig], dict[str, Any]] = fit,
              push_to_hub: str | None = None, private: bool = False) -> dict[str, Any]:
    """Train every run of ``cfg`` into ``out/<run name>/`` and write the summary; returns ``summary.json``.

    ``trainer`` is :func:`lib.training.fit` (a test may pass a fake). ``push_to_hub`` is an owner (user or
    organisation): the best run of each model goes to ``OWNER/<publish prefix>-<model>`` (``OWNER/<prefix>`` when
    the sweep has one model) when a token is present.
    """
    out = Path(out)
    # Before anything is written: OUT is absent, empty or a sweep folder of ours, and so is every run folder in it
    # (a folder with other files is refused, --overwrite or not; so is any symbolic link).
    check_out_folder(out, "sweep")
    _refuse_own_file(Path(cfg.source), out / "sweep.yaml", "the sweep file", "--out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(cfg.raw, sort_keys=False))
    started = time.perf_counter()
    specs: list[RunSpec] = []
    steps: list[dict[str, Any]] = []
    seen: dict[str, RunSpec] = {}

    def train_once(spec: RunSpec) -> RunSpec:
        # Identical settings are trained once: a later step reuses the earlier folder (same name by construction).
        if spec.name in seen:
            first = seen[spec.name]
            if _comparable(first.settings) != _comparable(spec.settings):
                raise SweepError(f"two runs are named {spec.name!r} with different settings; rename one")
            return first
        _train(spec, out, overwrite, progress, trainer)
        seen[spec.name] = spec
        specs.append(spec)
        return spec

    if cfg.search:
        for entry in cfg.models or [{"model": cfg.base["model"]}]:
            model = entry["model"]
            current = _merge(cfg.base, entry)
            ref = dict(current)  # names say what differs from the base settings of this model
            for i, step in enumerate(cfg.search):
                param, values, picked = step["param"], step["values"], []
                for v in values:
                    settings = _merge(current, {param: v})
                    spec = RunSpec(run_name(settings, ref, model if cfg.models else ""), settings,
                                   group=model, step=i, param=param, value=v)
                    picked.append(train_once(spec))
                scores = [best_val_auc(out / s.name) for s in picked]
                k = pick_best(values, scores)
                current = _merge(current, {param: values[k]})
                steps.append({"model": model, "step": i + 1, "param": param, "values": values,
                              "runs": [s.name for s in picked], "val_auc": scores, "picked": values[k],
                              "picked_run": picked[k].name})
                log.info("%s: %s = %s (val AUC %s)", model, param, values[k], scores[k])
    else:
        for spec in expand(cfg):
            train_once(spec)

    rows = summary_rows(out, specs)
    summary = {"name": cfg.name, "description": cfg.description, "variant": cfg.variant, "source": cfg.source,
               "kind": cfg.kind, "base": cfg.base, "runs": rows, "search": steps,
               "best": _best_per_group(rows), "figures": [], "published": {},
               "seconds": round(time.perf_counter() - started, 1)}
    summary["figures"] = _figures(out, specs, steps)
    if cfg.compare:
        summary["comparison"] = _compare(out, summary["best"])
    if push_to_hub:
        summary["published"] = _publish(out, summary["best"], push_to_hub, cfg.publish or cfg.name, private)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


# ------------------------------------------------------------------------------------------------- summary
def summary_rows(out: Path, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """One row per run: settings that differ from the sweep's base, selection scores, test metrics."""
    rows = []
    for spec in specs:
        folder = out / spec.name
        metrics = json.loads((folder / "metrics.json").read_text())
        history = json.loads((folder / "history.json").read_text())
        best = metrics["best_epoch"]
        at_best = next((h for h in history if h["epoch"] == best), history[-1])
        head = headline(metrics, "test")  # the run's unit (per patient in a patient-level run); None without test
        test = head.section if head else None
        row: dict[str, Any] = {
            "run": spec.name, "model": spec.settings["model"], "group": spec.group, "step": spec.step,
            "param": spec.param, "value": spec.value, "settings": spec.settings,
            "level": metrics.get("level", "image"), "epochs": len(history), "best_epoch": best,
            "val_auc": at_best.get("val_auc"), "val_loss": at_best.get("val_loss"),
            "threshold": metrics["threshold"], "train_seconds": round(sum(h.get("train_seconds", 0) for h in history), 1),
        }
        for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
            row[f"test_{key}"] = test.get(key) if test else None
        row["test_n"] = test.get("n") if test else None
        # per patient as well when the images carry patient ids (X-rays) and the headline is per image
        per_patient = head.per_patient if head else None
        if per_patient and row["level"] == "image":
            for key in ("accuracy", "f1", "auc"):
                row[f"test_patient_{key}"] = per_patient.get(key)
            row["test_patients"] = per_patient.get("n_patients", per_patient.get("n"))
        rows.append(row)
    return rows


def _best_per_group(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Run name with the highest validation AUC, per model (the search's model, or the run's architecture)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"] or r["model"], []).append(r)
    return {g: rs[pick_best([r["run"] for r in rs], [r["val_auc"] for r in rs])]["run"] for g, rs in groups.items()}


def _num(v: Any, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as markdown: the table of runs (best marked ★), the search decisions, the figures."""
    best = set(summary["best"].values())
    level = {r["level"] for r in summary["runs"]}
    unit = {frozenset({"patient"}): "per patient", frozenset({"image"}): "per image"}.get(
        frozenset(level), "per image, or per patient for the runs marked (per patient),")
    lines = [f"# {summary['name']}" + (f" — variant `{summary['variant']}`" if summary.get("variant") else ""), ""]
    if summary.get("description"):
        lines += [summary["description"].strip(), ""]
    rules = {str((r.get("settings") or {}).get("threshold_rule", "youden")) for r in summary["runs"]}
    where = ("at threshold 0.5 (the argmax of the softmax, as in MedMNIST)" if rules == {"0.5"} else
             "at the operating threshold chosen on the validation split"
             + (f" ({', '.join(sorted(rules))})" if rules != {"youden"} else " (Youden's J)"))
    lines += [f"Test metrics {unit} {where}; ★ = highest "
              f"validation AUC{' of its model' if summary['kind'] == 'search' else ''}. Training time "
              f"{sum(r['train_seconds'] for r in summary['runs']) / 60:.1f} min (training epochs, summed over runs).",
              "",
              "| run | model | epochs (best) | val AUC | val loss | threshold | test acc | precision | recall | F1 | "
              "test AUC | train s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        star = (" ★" if r["run"] in best else "") + (" (per patient)" if len(level) > 1 and r["level"] == "patient" else "")
        lines.append(f"| `{r['run']}`{star} | {r['model']} | {r['epochs']} ({r['best_epoch']}) | {_num(r['val_auc'])} | "
                     f"{_num(r['val_loss'])} | {_num(r['threshold'], 3)} | {_num(r['test_accuracy'])} | "
                     f"{_num(r['test_precision'])} | {_num(r['test_recall'])} | {_num(r['test_f1'])} | "
                     f"{_num(r['test_auc'])} | {r['train_seconds']:.0f} |")
    patient_rows = [r for r in summary["runs"] if r.get("test_patient_auc") is not None]
    if patient_rows:
        lines += ["", "Per-image runs scored per patient too (mean probability over a patient's test images, "
                      "same threshold):", "",
                  "| run | patients | test acc | F1 | test AUC |", "|---|---|---|---|---|"]
        lines += [f"| `{r['run']}` | {r['test_patients']} | {_num(r['test_patient_accuracy'])} | "
                  f"{_num(r['test_patient_f1'])} | {_num(r['test_patient_auc'])} |" for r in patient_rows]
    if summary.get("search"):
        lines += ["", "## One-at-a-time search", "",
                  "| model | step | parameter | values (val AUC) | picked |", "|---|---|---|---|---|"]
        for s in summary["search"]:
            tried = ", ".join(f"{_fmt(v)} ({_num(a, 3)})" for v, a in zip(s["values"], s["val_auc"]))
            lines.append(f"| {s['model']} | {s['step']} | {s['param']} | {tried} | **{_fmt(s['picked'])}** |")
    if summary.get("comparison"):
        lines += ["", "## Best models compared (thresholds chosen on validation, applied to test)", "",
                  summary["comparison"].get("table", "")]
    if summary.get("published"):
        lines += ["", "## Published", ""] + [f"- {k}: {v}" for k, v in summary["published"].items()]
    if summary.get("figures"):
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in summary["figures"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- figures
def _curves_figure(title: str, runs: Sequence[tuple[str, list[Mapping[str, Any]]]]):
    """Validation AUC and loss per epoch, one line per run (the report's per-step figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_auc, ax_loss = fig.subplots(1, 2)
    import matplotlib
    # ten distinct colours, then the same ten dashed: every run stays tellable apart in a long list
    colours = matplotlib.colormaps["tab10"].colors
    for i, (label, history) in enumerate(runs):
        ep = [h["epoch"] for h in history]
        style = {"color": colours[i % 10], "ls": "-" if i < 10 else "--", "marker": "o", "ms": 3, "label": label}
        ax_auc.plot(ep, [math.nan if h.get("val_auc") is None else h["val_auc"] for h in history], **style)
        ax_loss.plot(ep, [h["val_loss"] for h in history], **style)
    ax_auc.set(title="Validation AUC (picks the best epoch)", xlabel="epoch", ylabel="AUC")
    ax_loss.set(title="Validation loss", xlabel="epoch", ylabel="loss")
    ax_loss.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    from matplotlib.ticker import MaxNLocator
    for ax in (ax_auc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return fig


def _figures(out: Path, specs: Sequence[RunSpec], steps: Sequence[Mapping[str, Any]]) -> list[str]:
    from .metrics.plots import save_figure

    def history(name: str) -> list[Mapping[str, Any]]:
        return json.loads((out / name / "history.json").read_text())

    written = []
    if steps:
        for s in steps:
            runs = [(f"{s['param']} = {_fmt(v)}", history(r)) for v, r in zip(s["values"], s["runs"])]
            fname = f"search_{s['model']}_{s['step']}_{s['param']}.png"
            save_figure(_curves_figure(f"{s['model']}: step {s['step']}, {s['param']} "
                                       f"(picked {_fmt(s['picked'])})", runs), out / fname)
            written.append(fname)
    elif specs:
        save_figure(_curves_figure("All runs", [(s.name, history(s.name)) for s in specs]), out / "curves.png")
        written.append("curves.png")
    return written


def _compare(out: Path, best: Mapping[str, str]) -> dict[str, Any]:
    from .compare import compare_runs
    result = compare_runs({group: out / run for group, run in best.items()}, out / "comparison")
    result = dict(result)
    table = (out / "comparison" / "thresholds.md")
    result["table"] = table.read_text() if table.is_file() else ""
    return result


def _publish(out: Path, best: Mapping[str, str], owner: str, prefix: str, private: bool) -> dict[str, str]:
    """Push the best run of each group to ``owner/<prefix>-<group>`` when a token is present; else say so."""
    from huggingface_hub import get_token

    from .models import push_folder
    if not get_token():
        log.warning("no Hugging Face token (set HF_TOKEN or run `hf auth login`): the best runs were not pushed")
        return {group: "not pushed: no Hugging Face token" for group in best}
    pushed = {}
    for group, run in best.items():
        repo = f"{owner}/{prefix}" + ("" if len(best) == 1 else f"-{group}")
        repo = re.sub(r"[^A-Za-z0-9_./-]", "-", repo)
        pushed[group] = push_folder(out / run, repo, private=private, commit_message=f"{prefix}: best run {run}")
        log.info("pushed %s to %s", run, pushed[group])
    return pushed


def export_results(out: Path, dest: Path, summary: Mapping[str, Any], bundle: Sequence[str] = ()) -> list[Path]:
    """Copy the summary, figures and comparison (no weights) into ``dest``; and the best run of each model named
    in ``bundle`` (small models only: weights, config, card, metrics, plots — no checkpoint) into ``dest/best/``."""
    check_out_folder(dest, "sweep")  # a results folder of ours (summary, figures, best runs) or a new one
    if dest.resolve() == out.resolve():
        raise SweepError(f"{dest} is the sweep's own folder; copy the results to another folder (--results)")
    _refuse_own_file(Path(str(summary.get("source") or "")), dest / "sweep.yaml", "the sweep file", "--results")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ["summary.md", "summary.json", "sweep.yaml", *summary.get("figures", [])]:
        if (out / name).is_file():
            shutil.copy2(out / name, dest / name)
            copied.append(dest / name)
    if (out / "comparison").is_dir():
        shutil.copytree(out / "comparison", dest / "comparison", dirs_exist_ok=True)
        copied.append(dest / "comparison")
    for group, run in summary["best"].items():
        model = next(r["model"] for r in summary["runs"] if r["run"] == run)
        if model not in bundle:
            continue
        target = dest / "best" / group
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out / run, target, ignore=shutil.ignore_patterns(CHECKPOINT_DIR, "*.tmp", ".tmp*"))
        copied.append(target)
    return copied
