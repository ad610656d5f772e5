"""Benchmark family ``training``: how close the real training loop gets to the hardware, and what decode-once buys.

Figures (every speed claim is a ratio of two sides measured side by side in this run, interleaved, median over
repeats; the absolute images/s are reported for context only — they depend on the machine and its load):

``loop_*`` — the real loop vs a bare step loop, ``pneumonia_cnn`` at its default 224 px, batch size 32.
    *real*: :func:`lib.training.fit` on ``chest_xray`` capped to ``max_images`` per split; ``train_images_per_s``
    of its epochs ≥ 2 (the decoded uint8 tensors are in memory; the one-off first decode and epoch 1 are not
    counted). *bare*: forward + backward + Adam step over pre-normalised float batches already in memory — same
    model config, batch size and batch count, channels_last like the real loop, same thread count, same device.
    The bare epochs run inside ``fit``'s ``on_epoch_end`` hook, so real and bare epochs alternate.
    ``loop_ratio`` = median over real epochs k ≥ 2 of real_k / geometric mean of the bare epochs just before and
    just after it (goal ≥ 0.9).

``fullres_*`` — the 200 original-resolution JPEGs of ``chest_xray_fullres`` (one class-folder split; ``fit`` carves a
    patient-disjoint validation split), 5 epochs, batch size 32, same model.
    *ours*: ``fit`` with an EMPTY decode cache (fresh ``XCXR_CACHE_DIR``, memory cache cleared): decode once, then
    train; timed from the call to the end of epoch 5 (model and accelerator set-up, decode, 5 × (train epoch,
    validation, checkpoint)). *naive*: ``torchvision.datasets.ImageFolder`` + PIL transforms (Grayscale,
    Resize((224, 224)), ToTensor, Normalize with the model's mean/std) + a standard ``DataLoader`` with
    ``num_workers`` 0 and 2, decoding every image every epoch; the same train/val files, the same model (also
    channels_last, so only the data pipeline differs), class-weighted loss, Adam settings, the same number of
    optimiser steps, and a validation pass per epoch like ``fit``. The three set-ups run in rotating order
    within each repeat. ``fullres_speedup_vs_naive_wN`` = median over repeats of naive_time / ours_time.
    ``Resize((224, 224))`` rather than ``Resize(224)``: the latter keeps the aspect ratio, so the batches of
    non-square X-rays could not be stacked; the former squashes like our decoder does.

``--quick``: tiny symlinked copies of the data (64 images per split), img_size 64, 1 measured epoch, 1 repeat —
a smoke test; its numbers mean nothing.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from .registry import benchmark, median

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHEST_XRAY = Path(os.environ.get("XCXR_BENCH_DATA", DATA_ROOT / "chest_xray"))
FULLRES = Path(os.environ.get("XCXR_BENCH_FULLRES", DATA_ROOT / "chest_xray_fullres"))
MODEL = "pneumonia_cnn"
BATCH_SIZE = 32


def _device() -> torch.device:
    # the device Accelerate picks for fit(device="auto") in a single process
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(n: int, bs: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The real loop's batching: a permutation cut into ``bs`` chunks; a last chunk of 1 image is dropped."""
    perm = torch.randperm(n, generator=generator)
    batches = [perm[i:i + bs] for i in range(0, n, bs)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches = batches[:-1]
    return batches


class _Stop(Exception):
    """Raised from ``on_epoch_end`` after the last timed epoch: skips fit's final report (not benchmarked)."""


def _fit_until(cfg: Any, on_epoch: Callable[[dict[str, Any]], None]) -> None:
    """``fit(cfg)`` calling ``on_epoch(row)`` after every epoch; stops right after the last one."""
    from lib.training import fit

    def hook(row: dict[str, Any]) -> None:
        on_epoch(row)
        if row["epoch"] == cfg.epochs:
            raise _Stop

    try:
        fit(cfg, on_epoch_end=hook)
    except _Stop:
        pass


# ------------------------------------------------------------------------------------ 1. real loop vs bare loop
def _loop_figures(quick: bool) -> dict[str, float]:
    from lib.data import Preprocess
    from lib.models import create_model, get_config
    from lib.training import TrainConfig, load_splits, make_loss

    img_size = 64 if quick else None  # None: the model's default (224 for pneumonia_cnn)
    max_images = 64 if quick else 320
    repeats = 1 if quick else 9
    device = _device()
    tmp = Path(tempfile.mkdtemp(prefix="xcxr-bench-loop-"))
    try:
        data = CHEST_XRAY
        if quick:  # a tiny train/val copy (symlinks): no need to decode the 5,000 images of the real folder
            data = tmp / "data"
            for split in ("train", "val"):
                _quick_folder(CHEST_XRAY / split, 32, data / split)
        cfg = TrainConfig(model=MODEL, data=str(data), out=str(tmp / "run"), epochs=repeats + 1,
                          batch_size=BATCH_SIZE, img_size=img_size, max_images=max_images, progress=False)
        options = {"img_size": img_size} if img_size else {}
        # --- the bare side: same model config, optimiser, loss and batches, pre-normalised in memory -----------
        model = create_model(MODEL, **options)
        mcfg = get_config(model)
        train, _, _ = load_splits(cfg, mcfg["img_size"])  # also warms the decode cache fit() reads next
        model = model.to(device, memory_format=torch.channels_last).train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                               weight_decay=cfg.weight_decay)
        loss_fn = make_loss(model, train)  # the real loop's class-weighted loss
        loss_fn = loss_fn.to(device) if isinstance(loss_fn, nn.Module) else loss_fn
        pre = Preprocess.from_config(mcfg)
        batches = _batches(len(train), BATCH_SIZE, torch.Generator().manual_seed(0))
        batches_x = [(pre(train.images[i]).contiguous(memory_format=torch.channels_last).to(device),
                 train.labels[i].to(device)) for i in batches]
        n_images = sum(len(i) for i in batches)

        def bare_epoch() -> float:
            _sync(device)
            t0 = time.perf_counter()
            for x, y in batches_x:
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            _sync(device)
            return n_images / (time.perf_counter() - t0)

        # --- alternate: real epoch k (inside fit), then a bare epoch, then real epoch k+1, … ---------------------
        real, bare, threads = [], [], []

        def on_epoch(row: dict[str, Any]) -> None:
            threads.append(torch.get_num_threads())
            real.append(row["train_images_per_s"])
            bare.append(bare_epoch())

        threads_bare = torch.get_num_threads()
        bare_epoch()  # warm-up of the bare side, not counted
        _fit_until(cfg, on_epoch)
        if set(threads) != {threads_bare}:
            raise RuntimeError(f"thread counts differ: real loop {threads}, bare loop {threads_bare}")
        # real epoch k ≥ 2 ran between bare epochs k-1 and k: compare it with their geometric mean (cancels drift)
        ratios = [real[k] / math.sqrt(bare[k - 1] * bare[k]) for k in range(1, len(real))]
        real, bare = real[1:], bare[1:]  # real epoch 1 is warm-up (first touch of everything), not counted
        return {
            "loop_real_images_per_s": median(real),
            "loop_bare_images_per_s": median(bare),
            "loop_ratio": median(ratios),
            "loop_img_size": float(mcfg["img_size"]),
            "loop_images_per_epoch": float(n_images),
            "loop_repeats": float(len(real)),
            "threads": float(threads_bare),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------ 2. original resolution: ours vs naive
def _quick_folder(root: Path, per_class: int, into: Path) -> Path:
    """A class-folder copy (symlinks) of the first ``per_class`` files of each class of ``root``."""
    for cls in sorted(d.name for d in root.iterdir() if d.is_dir()):
        (into / cls).mkdir(parents=True)
        for f in sorted((root / cls).iterdir())[:per_class]:
            (into / cls / f.name).symlink_to(f)
    return into


def _run_ours(root: Path, img_size: int, epochs: int, val_fraction: float, work: Path) -> float:
    """Seconds from ``fit()`` to the end of epoch ``epochs``, decoding from an empty cache."""
    from lib.data import cache_dir, clear_memory_cache
    from lib.training import TrainConfig

    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
    old = os.environ.get("XCXR_CACHE_DIR")
    os.environ["XCXR_CACHE_DIR"] = str(cache)
    try:
        clear_memory_cache()
        if cache_dir() != cache or any(cache.iterdir()):
            raise RuntimeError(f"the decode cache {cache_dir()} must start empty")
        cfg = TrainConfig(model=MODEL, data=str(root), out=str(Path(tempfile.mkdtemp(dir=work)) / "run"),
                          epochs=epochs, batch_size=BATCH_SIZE, img_size=img_size, val_fraction=val_fraction,
                          progress=False)
        ends: list[float] = []
        t0 = time.perf_counter()
        _fit_until(cfg, lambda row: ends.append(time.perf_counter()))
        if not any(cache.glob("*.npy")):
            raise RuntimeError("fit() did not write the decode cache: it was not the pipeline measured")
        return ends[-1] - t0
    finally:
        clear_memory_cache()
        if old is None:
            os.environ.pop("XCXR_CACHE_DIR", None)
        else:
            os.environ["XCXR_CACHE_DIR"] = old


def _split_files(root: Path, val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """The same patient-disjoint train/val files as ``fit`` (``load_splits``) picks."""
    from lib.data import patient_split, scan_folder

    paths, _, _ = scan_folder(root)
    tr, va = patient_split(paths, (1 - val_fraction, val_fraction), seed=seed)
    return [paths[i] for i in tr], [paths[i] for i in va]


def _run_naive(root: Path, img_size: int, epochs: int, val_fraction: float, workers: int) -> tuple[float, int]:
    """Seconds for a textbook ImageFolder + PIL transforms + DataLoader loop. Returns ``(seconds, train steps)``."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from lib.models import create_model, get_config
    from lib.training import TrainConfig

    defaults = TrainConfig(model=MODEL, data=str(root), out="")  # lr and weight decay as in fit
    device = _device()
    t0 = time.perf_counter()
    train_files, val_files = _split_files(root, val_fraction)
    model = create_model(MODEL, img_size=img_size)
    mcfg = get_config(model)
    tf = transforms.Compose([transforms.Grayscale(num_output_channels=1), transforms.Resize((img_size, img_size)),
                             transforms.ToTensor(), transforms.Normalize(mcfg["mean"], mcfg["std"])])
    ds = datasets.ImageFolder(str(root), transform=tf)
    index = {os.path.abspath(p): i for i, (p, _) in enumerate(ds.samples)}
    train_set = Subset(ds, [index[os.path.abspath(p)] for p in train_files])
    val_set = Subset(ds, [index[os.path.abspath(p)] for p in val_files])
    targets = torch.tensor([ds.targets[i] for i in train_set.indices])
    counts = torch.bincount(targets, minlength=len(ds.classes)).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(counts) * counts)).to(device)  # as fit's make_loss
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
    n = len(train_set)
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers,
                              drop_last=n % BATCH_SIZE == 1)  # fit drops a last batch of one image too
    val_loader = DataLoader(val_set, batch_size=2 * BATCH_SIZE, num_workers=workers)
    steps = 0
    for _ in range(epochs):
        model.train()
        total = 0.0
        for x, y in train_loader:
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            steps += 1
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                logits = model(x.to(device).contiguous(memory_format=torch.channels_last))
                float(loss_fn(logits, y.to(device)))
                logits.softmax(1)[:, 1].cpu()
    _sync(device)
    return time.perf_counter() - t0, steps


def _fullres_figures(quick: bool) -> dict[str, float]:
    img_size = 64 if quick else 224
    epochs = 1 if quick else 5
    repeats = 1 if quick else 3
    val_fraction = 0.25 if quick else 0.1  # fit's default; a larger share keeps both classes in the tiny val split
    work = Path(tempfile.mkdtemp(prefix="xcxr-bench-fullres-"))
    try:
        root = _quick_folder(FULLRES, 32, work / "data") if quick else FULLRES
        train_files, _ = _split_files(root, val_fraction)
        n_train = len(train_files)
        expected_steps = epochs * len(_batches(n_train, BATCH_SIZE, torch.Generator()))
        setups: dict[str, Callable[[], float]] = {"ours": lambda: _run_ours(root, img_size, epochs, val_fraction, work)}
        for w in (0, 2):
            def naive(w: int = w) -> float:
                seconds, steps = _run_naive(root, img_size, epochs, val_fraction, w)
                if steps != expected_steps:
                    raise RuntimeError(f"naive loop made {steps} optimiser steps, fit makes {expected_steps}")
                return seconds
            setups[f"naive_w{w}"] = naive
        times: dict[str, list[float]] = {k: [] for k in setups}
        names = list(setups)
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order every repeat
                times[name].append(setups[name]())
        out: dict[str, float] = {}
        for name in names:
            out[f"fullres_{name}_seconds"] = median(times[name])
            out[f"fullres_{name}_images_per_s"] = median([n_train * epochs / t for t in times[name]])
        for w in (0, 2):
            out[f"fullres_speedup_vs_naive_w{w}"] = median(
                [a / b for a, b in zip(times[f"naive_w{w}"], times["ours"])])
        out.update({"fullres_train_images": float(n_train), "fullres_epochs": float(epochs),
                    "fullres_repeats": float(repeats)})
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


@benchmark("training", "real training loop vs a bare step loop; decode-once vs a naive DataLoader at full resolution")
def run(quick: bool) -> dict[str, float]:
    return {**_loop_figures(quick), **_fullres_figures(quick)}
