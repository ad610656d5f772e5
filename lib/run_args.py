"""Reading what older versions wrote: ``train_args.json`` files, checkpoints and sweep files with renamed fields.

A field of :class:`lib.training.TrainConfig` that gets a new name is listed in :data:`RENAMED`; everything that
reads saved settings passes them through :func:`upgrade_args` first, so a run folder written before the rename
still resumes, compares and reports as before. (Its own module because the training loop, the model card writer,
the sweep runner and the run comparison all need it, and none of them should import another for it.)
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["RENAMED", "upgrade_args"]

#: Fields renamed since train_args.json files / checkpoints / sweep files were written: old name → new name.
RENAMED = {"patient_level": "decide_per_patient"}


def upgrade_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` (train_args.json, a checkpoint's or a sweep file's settings) with renamed fields' new names.

    The order of the keys is kept (a sweep's run names follow it); a value under the new name wins over one under
    the old name.

    Example:
        >>> upgrade_args({"patient_level": True, "lr": 0.01})
        {'decide_per_patient': True, 'lr': 0.01}
    """
    out: dict[str, Any] = {}
    for k, v in args.items():
        new = RENAMED.get(k)
        if new is None:
            out[k] = v
        elif new not in args:
            out[new] = v
    return out
