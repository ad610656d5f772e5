"""Train a zoo model and write a Hub-ready folder.

    python -m train pneumonia_cnn --data ../shared/data/chest_xray --out runs/cnn
    python -m train pneumonia_cnn --data ../shared/data/chest_xray --out runs/cnn --resume      # after a kill
    python -m train cnn1 --data ../shared/data/chest_xray --out runs/cnn1 --lr 3e-4 --gamma 0.9
    python -m train pneumonia_cnn --data ../shared/data/pneumoniamnist.npz --img-size 28 --out runs/mnist
    python -m train pneumonia_cnn --option widths=16,32,64 --option dropout=0.3 --data … --out …
    accelerate launch -m train resnet18_scratch --data … --out …      # several GPUs, data-parallel

The output folder holds config.json, model.safetensors, README.md (model card), metrics.json, history.json,
train_args.json and plots; ``checkpoint/`` holds the resumable training state (not uploaded by --push-to-hub).
``--out`` must be new, empty or a run folder of ours (``--resume`` continues it, ``--overwrite`` starts it again); a
folder with any other file, or a symbolic link, is refused before anything is written (:mod:`lib.out_folders`).

A problem with the input (:class:`lib.errors.XcxrError`: bad data, options, model, a checkpoint with other
settings) ends with ``error: …`` and exit status 2; anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

import yaml

from lib.errors import XcxrError
from lib.metrics import headline
from lib.models import list_models
from lib.training import TrainConfig, fit

_D = TrainConfig(model="", data="", out="")


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` → (key, parsed value); ``a,b,c`` becomes a list; numbers and booleans are typed."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    items = [yaml.safe_load(v) for v in value.split(",")] if "," in value else yaml.safe_load(value)
    return key.strip().replace("-", "_"), items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", choices=list_models(), metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--data", required=True, help="folder with train/val/test class folders, one class-folder "
                   "split, a MedMNIST .npz, or a CT description .yaml (docs/ct.md)")
    p.add_argument("--out", required=True, help="output folder (Hub-ready): new, empty or a run folder of ours; a "
                   "folder with other files or a symbolic link is refused, --overwrite or not")
    p.add_argument("--epochs", type=int, default=_D.epochs, help="number of epochs")
    p.add_argument("--batch-size", type=int, default=_D.batch_size, help="mini-batch size")
    p.add_argument("--lr", type=float, default=_D.lr, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay, help="Adam weight decay (L2)")
    p.add_argument("--gamma", type=float, default=_D.gamma,
                   help="ExponentialLR factor per epoch (the report's 'mp'); 1 keeps the lr constant")
    p.add_argument("--img-size", type=int, default=None, help="input side in pixels (default: the model's, 224)")
    p.add_argument("--seed", type=int, default=_D.seed, help="random seed (init, shuffling, augmentation)")
    p.add_argument("--device", default=_D.device, choices=["auto", "cpu", "cuda"],
                   help="auto = GPU when present")
    p.add_argument("--augment", action="store_true", help="small random affine + brightness/contrast jitter")
    p.add_argument("--hflip", type=float, default=_D.hflip,
                   help="horizontal flip probability with --augment (0: X-rays are not left-right symmetric)")
    p.add_argument("--val-fraction", type=float, default=_D.val_fraction,
                   help="patient-disjoint share of train used for validation when the data has no val split")
    p.add_argument("--max-images", type=int, default=None, help="use at most N images per split (quick runs)")
    p.add_argument("--threshold-rule", default=_D.threshold_rule, choices=["youden", "f1", "gmean", "0.5"],
                   help="how the operating threshold is chosen on the validation split")
    p.add_argument("--patient-level", dest="decide_per_patient", action="store_true",
                   help="pick the best epoch and the threshold on per-patient mean probabilities (patient ids "
                   "from the file names); always on for a CT description (.yaml)")
    p.add_argument("--pretrained-file", default=None,
                   help="local ImageNet resnet18 weights (.safetensors/.pth) for the pretrained ResNets, offline")
    p.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="model option, repeatable: widths=16,32,64 dropout=0.3 num_classes=2 …")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint after an interruption")
    p.add_argument("--overwrite", action="store_true",
                   help="start again when OUT holds a run of ours (only ever a run folder of this project)")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", default=None,
                   help="upload the finished folder (token from HF_TOKEN or `hf auth login`)")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(model=a.model, data=a.data, out=a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                       weight_decay=a.weight_decay, gamma=a.gamma, img_size=a.img_size, seed=a.seed, device=a.device,
                       augment=a.augment, hflip=a.hflip, val_fraction=a.val_fraction, max_images=a.max_images,
                       threshold_rule=a.threshold_rule, decide_per_patient=a.decide_per_patient,
                       pretrained_file=a.pretrained_file,
                       model_options=dict(a.option), resume=a.resume, overwrite=a.overwrite,
                       push_to_hub=a.push_to_hub, private=a.private, progress=not a.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = config_from_args(a)
        metrics = fit(cfg)
    except XcxrError as e:  # the input: its message says what to change. Anything else is a bug: traceback.
        parser.exit(2, f"error: {e}\n")
    except PermissionError as e:  # the machine: an output folder or cache this user may not write
        parser.exit(2, f"error: {e}\n")
    head = headline(metrics)  # test (else val); per patient in a patient-level run. None on non-main processes
    if head:
        split = head.split
        print(json.dumps({"out": cfg.out, "best_epoch": metrics["best_epoch"], "threshold": metrics["threshold"],
                          "level": metrics.get("level", "image"), f"{split}_accuracy": head.section["accuracy"],
                          f"{split}_auc": head.section["auc"], f"{split}_f1": head.section["f1"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
