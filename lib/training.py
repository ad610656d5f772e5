"""The training loop, in one readable place: ``fit(TrainConfig(...))``.

What it does, in order (nanoGPT style: read it top to bottom):

1. seed everything; load the splits once (decoded uint8 tensors, see :mod:`lib.data`);
2. build the model from the registry; class-weighted loss against the imbalance — cross-entropy with
   ``weight = N / (K·n_c)`` for two logits, ``BCEWithLogitsLoss(pos_weight = n_neg/n_pos)`` for one;
3. Adam with weight decay, ``ExponentialLR(gamma)`` stepped once per epoch (the report's "mp");
4. each epoch: shuffle with a generator seeded by ``(seed, epoch)``, index mini-batches straight out of the
   uint8 tensor (no DataLoader, no decoding), optional augmentation, forward/backward/step; then validation
   loss and AUC; keep the weights of the best validation AUC; write a checkpoint;
5. at the end: the best weights go into a Hub-ready folder with the operating threshold chosen on the
   validation split, test metrics at that threshold, ``history.json``, curves and the model card.

Per patient (CT: ``--data ct.yaml``, whose sets say ``ImageSet.labelled_per_patient``; or ``--patient-level``,
``TrainConfig.decide_per_patient``, for X-ray folders whose file names carry patient ids): the validation AUC that
picks the best epoch and the operating threshold are computed on the **per-patient mean probabilities**
(:func:`lib.metrics.patient_means`), and ``metrics["level"]`` is ``"patient"``; the ``"per_patient"`` sub-section
of ``metrics["val"]`` / ``metrics["test"]`` is then the result (:func:`lib.metrics.headline` picks it).

Output: on a terminal (or in a notebook) a progress bar per epoch and one summary line after it; anywhere else
(a log file, ``nohup``, CI, a pipe) only the summary line — epoch, losses, validation AUC, time — because every
redraw of a bar would stay in the file.

Reproducible resume: every random draw of epoch ``e`` comes from generators seeded with ``(seed, e)``, and the
checkpoint holds model, optimiser, scheduler, best weights and history, so ``--resume`` after a kill gives the
same weights as an uninterrupted run (tested). Checkpoints are safetensors + JSON — never pickle.

Scaling out: the loop goes through 🤗 Accelerate, so ``accelerate launch -m train MODEL …`` runs it data-parallel
on several GPUs (each process takes every ``world_size``-th batch of the same permutation); a plain
``python -m train`` is the single-process case.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

from .data import Augment, DataError, ImageSet, Preprocess, available_splits, load_split, patient_split
from .metrics import evaluate_predictions, optimal_thresholds, patient_means, roc_auc
from .models import create_model, get_config, positive_probability, save_model
from .errors import XcxrError, XcxrValueError
from .out_folders import check_out_folder
from .run_args import upgrade_args

__all__ = ["TrainConfig", "fit", "make_loss", "OneLogitBCE", "read_checkpoint_meta", "load_splits", "TrainingError",
           "CHECKPOINT_DIR", "AFFECTS", "fields_affecting", "upgrade_args"]

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.safetensors"

#: What changing a :class:`TrainConfig` field changes; every field says which in ``metadata["affects"]``, and the
#: sets that resume, sweeps and comparisons use are derived from it (:func:`fields_affecting`).
AFFECTS: dict[str, str] = {
    "split": "which images are in the train/validation/test splits (and so the result)",
    "result": "the trained weights and metrics, on the same splits",
    "length": "how many epochs run: a run may be resumed with more, a finished run counts whatever its length",
    "machine": "where it runs (CPU/GPU): the same numbers up to floating-point noise",
    "folder": "where the run is written",
    "runner": "how the run is driven and published (resume, overwrite, progress bars, Hub upload), nothing else",
}


def _affects(kind: str) -> dict[str, str]:
    """``field(metadata=…)`` of a TrainConfig field of the given :data:`AFFECTS` kind."""
    if kind not in AFFECTS:
        raise KeyError(kind)
    return {"affects": kind}


class TrainingError(XcxrError, RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclass
class TrainConfig:
    """Every option of a training run; saved as ``train_args.json`` beside the weights.

    Each field's ``metadata["affects"]`` says what changing it changes (:data:`AFFECTS`): ``"split"``,
    ``"result"``, ``"length"``, ``"machine"``, ``"folder"`` or ``"runner"``. ``decide_per_patient`` (CLI
    ``--patient-level``) picks the best epoch and the threshold on per-patient mean probabilities.
    """

    model: str = field(metadata=_affects("result"))
    data: str = field(metadata=_affects("split"))
    out: str = field(metadata=_affects("folder"))
    epochs: int = field(default=15, metadata=_affects("length"))
    batch_size: int = field(default=32, metadata=_affects("result"))
    lr: float = field(default=1e-3, metadata=_affects("result"))
    weight_decay: float = field(default=1e-4, metadata=_affects("result"))
    gamma: float = field(default=1.0, metadata=_affects("result"))
    # the decoded tensors (and so the split cache of lib.compare) depend on the size
    img_size: int | None = field(default=None, metadata=_affects("split"))
    seed: int = field(default=0, metadata=_affects("split"))  # also carves the validation split
    device: str = field(default="auto", metadata=_affects("machine"))
    augment: bool = field(default=False, metadata=_affects("result"))
    hflip: float = field(default=0.0, metadata=_affects("result"))
    val_fraction: float = field(default=0.1, metadata=_affects("split"))
    max_images: int | None = field(default=None, metadata=_affects("split"))
    threshold_rule: str = field(default="youden", metadata=_affects("result"))
    decide_per_patient: bool = field(default=False, metadata=_affects("result"))
    pretrained_file: str | None = field(default=None, metadata=_affects("result"))
    model_options: dict[str, Any] = field(default_factory=dict, metadata=_affects("result"))
    resume: bool = field(default=False, metadata=_affects("runner"))
    overwrite: bool = field(default=False, metadata=_affects("runner"))
    push_to_hub: str | None = field(default=None, metadata=_affects("runner"))
    private: bool = field(default=False, metadata=_affects("runner"))
    progress: bool = field(default=True, metadata=_affects("runner"))

    def __post_init__(self) -> None:
        checks = [(self.epochs >= 1, "epochs must be ≥ 1"), (self.batch_size >= 2, "batch_size must be ≥ 2"),
                  (self.lr > 0, "lr must be > 0"), (self.weight_decay >= 0, "weight_decay must be ≥ 0"),
                  (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
                  (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
                  (0 <= self.hflip <= 1, "hflip must be in [0, 1]"),
                  (self.threshold_rule in ("youden", "f1", "gmean", "0.5"),
                   "threshold_rule must be one of youden, f1, gmean, 0.5")]
        for ok, message in checks:
            if not ok:
                raise XcxrValueError(message)

    @property
    def patient_level(self) -> bool:
        """Deprecated name of :attr:`decide_per_patient` (read-only)."""
        warnings.warn("TrainConfig.patient_level is deprecated: it is now TrainConfig.decide_per_patient",
                      DeprecationWarning, stacklevel=2)
        return self.decide_per_patient


def fields_affecting(*kinds: str) -> frozenset[str]:
    """Names of the :class:`TrainConfig` fields whose ``metadata["affects"]`` is one of ``kinds``.

    Example:
        >>> sorted(fields_affecting("split"))
        ['data', 'img_size', 'max_images', 'seed', 'val_fraction']
    """
    unknown = set(kinds) - set(AFFECTS)
    if unknown:
        raise XcxrValueError(f"unknown kind(s) {sorted(unknown)}; allowed: {list(AFFECTS)}")
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("affects") in kinds)


# Every field must say what it affects: a field without it would silently fall out of every derived set below
# (an unclassified field is a programming error, found at import).
_unclassified = [f.name for f in fields(TrainConfig) if f.metadata.get("affects") not in AFFECTS]
if _unclassified:
    raise TypeError(f"TrainConfig fields without metadata['affects']: {_unclassified}")
# Arguments that may differ between a run and its --resume without changing the result. The folder is not among
# them: a checkpoint is continued in the folder it was written for.
_RESUMABLE = fields_affecting("length", "machine", "runner")


def _seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _progress_bars(progress: bool) -> bool:
    """Whether to draw progress bars: asked for, and shown where a redraw replaces the previous one.

    That is a terminal or a notebook (tqdm's widget). In a log file, under ``nohup``, in CI or a pipe every redraw
    stays in the output (an 8-epoch run wrote about 1 MB of them), so there :func:`fit` prints one line per epoch.
    """
    if not progress:
        return False
    from tqdm.auto import tqdm
    if any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__):  # tqdm.auto chose the notebook widget
        return True
    isatty = getattr(sys.stderr, "isatty", None)  # the bars are drawn on stderr
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def load_splits(cfg: TrainConfig, img_size: int) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """``(train, val, test)``; without a ``val`` split, a patient-disjoint ``val_fraction`` of train."""
    present = available_splits(cfg.data)
    if present and "train" not in present:
        raise DataError(f"{cfg.data}: no 'train' split; found {present}")
    bars = _progress_bars(cfg.progress)
    train = load_split(cfg.data, "train" if present else None, img_size, progress=bars)
    if "val" in present:
        val = load_split(cfg.data, "val", img_size, progress=bars)
    else:
        tr_idx, va_idx = patient_split(train.paths, (1 - cfg.val_fraction, cfg.val_fraction), seed=cfg.seed)
        log.info("no 'val' split in %s: using a patient-disjoint %.0f%% of train", cfg.data, 100 * cfg.val_fraction)
        train, val = train.subset(tr_idx), train.subset(va_idx)
    test = load_split(cfg.data, "test", img_size, progress=bars) if "test" in present else None
    if cfg.max_images:
        def cap(ds: ImageSet) -> ImageSet:
            if len(ds) <= cfg.max_images:
                return ds
            g = torch.Generator().manual_seed(cfg.seed)
            return ds.subset(sorted(torch.randperm(len(ds), generator=g)[: cfg.max_images].tolist()))
        train, val, test = cap(train), cap(val), (cap(test) if test is not None else None)
    for name, ds in (("train", train), ("val", val)):
        if min(ds.class_counts()) == 0:
            raise DataError(f"{cfg.data}: the {name} split has no images of class "
                            f"{ds.classes[ds.class_counts().index(0)]}; both classes are needed")
    return train, val, test


class OneLogitBCE(nn.Module):
    """``BCEWithLogitsLoss(pos_weight)`` for a model with one output logit and integer labels."""

    def __init__(self, pos_weight: torch.Tensor) -> None:
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bce(logits[:, 0], y.float())


def make_loss(model: nn.Module, train: ImageSet) -> nn.Module:
    """Class-weighted loss for the model's output: CE for two logits, BCE with ``pos_weight`` for one."""
    if get_config(model)["num_classes"] == 2:
        return nn.CrossEntropyLoss(weight=train.class_weights())
    return OneLogitBCE(train.pos_weight())


@torch.no_grad()
def _evaluate(model: nn.Module, ds: ImageSet, pre: Preprocess, loss_fn: nn.Module, device: torch.device,
              batch_size: int) -> tuple[float, np.ndarray]:
    """Mean loss and positive-class probabilities over a split (eval mode)."""
    model.eval()
    losses, probs = [], []
    for i in range(0, len(ds), batch_size * 2):
        x = pre(ds.images[i:i + batch_size * 2].to(device)).contiguous(memory_format=torch.channels_last)
        y = ds.labels[i:i + batch_size * 2].to(device)
        logits = model(x)
        losses.append(float(loss_fn(logits, y)) * len(y))
        probs.append(positive_probability(logits).float().cpu())
    return sum(losses) / len(ds), torch.cat(probs).numpy()


def _selection_scores(ds: ImageSet, prob: np.ndarray, patient: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities the best epoch and the threshold are chosen on: per image, or per patient (mean)."""
    y = ds.labels.numpy()
    if not patient:
        return y, prob
    # the metrics library owns the averaging (and refuses a patient with two labels); images without an id are
    # their own patient
    y_p, p_p, _ = patient_means(y, prob, ds.patient_ids)
    return y_p, p_p


# ----------------------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     best_state: dict[str, torch.Tensor] | None, meta: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {**meta, "param_groups": opt_state["param_groups"], "scheduler": sched.state_dict()}
    # One file, tensors and metadata together, written under a temporary name and renamed: a kill at any moment
    # leaves either the previous checkpoint or the new one, never a mix of two epochs.
    safetensors.torch.save_file(tensors, path / (CHECKPOINT_FILE + ".tmp"), metadata={"meta": json.dumps(meta)})
    os.replace(path / (CHECKPOINT_FILE + ".tmp"), path / CHECKPOINT_FILE)


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The JSON metadata of the checkpoint in ``path`` (args, history, epoch, best epoch, optimiser groups…)."""
    with safetensors.safe_open(str(path / CHECKPOINT_FILE), framework="pt") as f:
        return json.loads(f.metadata()["meta"])


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any
                     ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    meta = read_checkpoint_meta(path)
    tensors = safetensors.torch.load_file(path / CHECKPOINT_FILE)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    sched.load_state_dict(meta.pop("scheduler"))
    return best, meta


# ------------------------------------------------------------------------------------------------------ fit
def fit(cfg: TrainConfig, on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` and write a Hub-ready folder to ``cfg.out``. Returns metrics.json."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    ckpt = out / CHECKPOINT_DIR
    args = asdict(cfg)
    # Before anything is read or written: --out is absent, empty or a run folder of ours (never a folder with other
    # files, never a symbolic link), and one of ours is only continued or replaced when asked to.
    if check_out_folder(out, "run") == "ours" and not cfg.resume and not cfg.overwrite:
        if ckpt.exists():
            raise TrainingError(f"{out} already holds a training checkpoint; pass --resume to continue it, "
                                "--overwrite to start again, or choose another --out")
        raise TrainingError(f"{out} already holds a training run; pass --overwrite to replace it, or choose "
                            "another --out")

    # 1. seed, data ---------------------------------------------------------------------------------------
    _seed_everything(cfg.seed)
    options = dict(cfg.model_options)
    if cfg.img_size:
        options["img_size"] = cfg.img_size
    if cfg.pretrained_file:
        options["pretrained_file"] = cfg.pretrained_file
    # 2. model, loss ---------------------------------------------------------------------------------------
    model = create_model(cfg.model, **options)
    mcfg = get_config(model)
    train, val, test = load_splits(cfg, mcfg["img_size"])
    mcfg["labels"] = list(train.classes)
    loss_fn = make_loss(model, train)
    # 3. optimiser, schedule, accelerator ------------------------------------------------------------------
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda, but no CUDA GPU is visible; use --device auto or --device cpu")
    acc = Accelerator(cpu=cfg.device == "cpu")
    device = acc.device
    model = model.to(memory_format=torch.channels_last)  # ~2× faster convolutions on CPU, neutral on GPU
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    model, opt = acc.prepare(model, opt)
    raw_model = acc.unwrap_model(model)
    loss_fn = loss_fn.to(device)
    pre = Preprocess.from_config(mcfg)
    # The unit of every headline number: the patient when asked for, or when the data say so (CT slices).
    patient = cfg.decide_per_patient or val.labelled_per_patient
    if patient and all(pid is None for pid in val.patient_ids):
        log.warning("patient-level metrics asked for, but no validation image carries a patient id "
                    "(see lib.data.patients): every image counts as its own patient")
    augment = Augment(hflip=cfg.hflip) if cfg.augment else None
    images, labels = train.images.to(device), train.labels.to(device)  # uint8: 50 KB per 224² image

    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_auc, best_epoch, start = -math.inf, -1, 0
    if cfg.resume and (ckpt / CHECKPOINT_FILE).exists():
        best_state, meta = _load_checkpoint(ckpt, raw_model, opt, sched)
        # an option added after the checkpoint was written counts as its default (e.g. decide_per_patient=False);
        # one renamed since is read under its new name
        defaults = asdict(TrainConfig(model=cfg.model, data=cfg.data, out=cfg.out))
        was = upgrade_args(meta["args"])
        changed = {k: (was.get(k, defaults.get(k)), v) for k, v in args.items()
                   if k not in _RESUMABLE and was.get(k, defaults.get(k)) != v}
        if changed:
            raise TrainingError(f"--resume with different settings than the checkpoint in {ckpt}: " + ", ".join(
                f"{k}: was {a!r}, now {b!r}" for k, (a, b) in changed.items()) + "; use the original settings")
        history, best_auc, best_epoch, start = meta["history"], meta["best_auc"], meta["best_epoch"], meta["epoch"]
        log.info("resuming %s after epoch %d", out, start)
    elif cfg.resume:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", out)

    # 4. epochs --------------------------------------------------------------------------------------------
    n, bs, world, rank = len(train), cfg.batch_size, acc.num_processes, acc.process_index
    bars = _progress_bars(cfg.progress)
    for epoch in range(start, cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout draws: identical with or without a resume
        perm = torch.randperm(n, generator=g)
        batches = [perm[i:i + bs] for i in range(0, n, bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches = batches[:-1]  # BatchNorm cannot train on a single image
        batches = batches[rank::world]
        model.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not bars or not acc.is_local_main_process)
        for idx in bar:
            idx = idx.to(device)
            x = images[idx]
            if augment is not None:
                x = augment(x.float() / 255.0, generator=g)
            x = pre(x).contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        train_seconds = time.perf_counter() - t0
        lr = opt.param_groups[0]["lr"]
        sched.step()
        val_loss, val_prob = _evaluate(raw_model, val, pre, loss_fn, device, bs)
        val_auc = roc_auc(*_selection_scores(val, val_prob, patient))
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_auc": val_auc,
               "lr": lr, "train_seconds": train_seconds, "train_images_per_s": seen * world / train_seconds}
        if patient:  # val_auc (which picks the best epoch) is per patient; keep the per-image one for comparison
            row["val_auc_image"] = roc_auc(val.labels.numpy(), val_prob)
        history.append(row)
        if val_auc is not None and val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch + 1
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in raw_model.state_dict().items()})
        if acc.is_main_process:
            _save_checkpoint(ckpt, raw_model, opt, sched, best_state, {
                "args": args, "history": history, "best_auc": best_auc, "best_epoch": best_epoch,
                "epoch": epoch + 1})
        if acc.is_local_main_process:
            summary = (f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}"
                       f"  val AUC {val_auc if val_auc is None else round(val_auc, 4)}  lr {lr:.2e}"
                       f"  {row['train_images_per_s']:.0f} img/s  {time.perf_counter() - t0:.1f} s")
            if bars:
                tqdm.write(summary)  # above the bar, which is redrawn below it
            elif cfg.progress:
                print(summary, flush=True)  # no bar (not a terminal): one plain line per epoch
            else:
                log.info(summary)
        if on_epoch_end is not None:
            on_epoch_end(row)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return {}

    # 5. best weights → Hub-ready folder ------------------------------------------------------------------
    if best_state is not None:
        raw_model.load_state_dict(best_state)
    raw_model = raw_model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    pre_cpu = Preprocess.from_config(mcfg)
    cpu = torch.device("cpu")
    loss_fn = loss_fn.to(cpu)
    _, val_prob = _evaluate(raw_model, val, pre_cpu, loss_fn, cpu, bs)
    y_val = val.labels.numpy()
    thresholds = optimal_thresholds(*_selection_scores(val, val_prob, patient))
    threshold = 0.5 if cfg.threshold_rule == "0.5" else float(thresholds[cfg.threshold_rule])
    level = "patient" if patient else "image"
    rule = ("fixed 0.5 (the argmax of the class probabilities)" if cfg.threshold_rule == "0.5" else
            f"{cfg.threshold_rule} on the validation split" + (" (per-patient mean probabilities)" if patient else ""))
    mcfg.update(threshold=threshold, threshold_rule=rule)
    metrics: dict[str, Any] = {
        "model": cfg.model, "best_epoch": best_epoch, "threshold": threshold, "threshold_rule": cfg.threshold_rule,
        "level": level,
        "val": evaluate_predictions(y_val, val_prob, threshold, val.patient_ids),
        "test": None,
    }
    if test is not None:
        _, test_prob = _evaluate(raw_model, test, pre_cpu, loss_fn, cpu, bs)
        metrics["test"] = evaluate_predictions(test.labels.numpy(), test_prob, threshold, test.patient_ids)
    check_out_folder(out, "run")  # again: nothing foreign (a symbolic link…) may have appeared during training
    save_model(raw_model, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    (out / "train_args.json").write_text(json.dumps(args, indent=1))
    from .reporting import write_run_report
    write_run_report(out, raw_model, metrics, history, args, test if test is not None else val,
                     test_prob if test is not None else val_prob)
    if cfg.push_to_hub:
        from .models import push_folder
        url = push_folder(out, cfg.push_to_hub, private=cfg.private)
        metrics["pushed_to"] = url
        log.info("pushed %s to %s", out, url)
    return metrics
