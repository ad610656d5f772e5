"""What a finished run leaves beside its weights: plots and the model card (``README.md``).

The card's YAML front matter follows the Hugging Face model-card spec (license, library_name, tags, datasets,
metrics, a ``model-index`` with the test results), so the Hub shows the numbers; the body states the metrics
table, the thresholds, the exact training command, the data and its licence, and what the model is *not* for.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch.nn as nn

from .data import ImageSet
from .metrics.summary import SPLIT_NAMES, headline
from .models import count_parameters, get_config
from .run_args import upgrade_args

__all__ = ["write_run_report", "command_line", "write_model_card", "metrics_table", "usage_snippet",
           "MODEL_REPO_PLACEHOLDER", "CODE_REPO_PLACEHOLDER"]

_DEFAULTS = {"epochs": 15, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4, "gamma": 1.0, "img_size": None,
             "seed": 0, "augment": False, "hflip": 0.0, "val_fraction": 0.1, "max_images": None,
             "threshold_rule": "youden", "decide_per_patient": False, "pretrained_file": None}
# Options whose command-line flag is not the field name with dashes (the flag kept its name for users).
_FLAGS = {"decide_per_patient": "--patient-level"}


def command_line(args: Mapping[str, Any]) -> str:
    """The ``python -m train …`` command that reproduces a run (non-default options only)."""
    args = upgrade_args(args)  # a train_args.json written before a field was renamed
    parts = ["python", "-m", "train", args["model"], "--data", str(args["data"]), "--out", str(args["out"])]
    for key, default in _DEFAULTS.items():
        value = args.get(key, default)
        if value == default:
            continue
        flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
        parts += [flag] if value is True else [flag, str(value)]
    for key, value in (args.get("model_options") or {}).items():
        value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        parts += ["--option", f"{key}={value}"]
    return " ".join(shlex.quote(p) for p in parts)


def metrics_table(section: Mapping[str, Any]) -> str:
    """A markdown table of one ``evaluate_predictions`` result: the operating threshold and the optimal ones."""
    # The optimal thresholds are found on the very data they are scored on: an optimistic "oracle" reference.
    # The honest operating point is the first row, whose threshold was chosen on the validation split.
    names = {"f1": "F1-optimal here", "gmean": "G-mean-optimal here", "youden": "Youden-optimal here"}
    rows = [("operating", section)] + [(names[k], section["thresholds"].get(k)) for k in names]
    lines = ["| threshold | value | accuracy | precision | recall | specificity | F1 | AUC |",
             "|---|---|---|---|---|---|---|---|"]
    auc = "–" if section.get("auc") is None else f"{section['auc']:.4f}"
    for name, m in rows:
        if not m:
            continue
        lines.append(f"| {name} | {m['threshold']:.4f} | {m['accuracy']:.4f} | {m['precision']:.4f} | "
                     f"{m['recall']:.4f} | {m['specificity']:.4f} | {m['f1']:.4f} | {auc} |")
    return "\n".join(lines)


def _threshold_origin(rule: str, unit: str) -> str:
    """How the operating threshold was set, in words for the card."""
    if rule == "0.5":
        return "fixed at 0.5 (the argmax of the class probabilities, as in MedMNIST), not tuned on validation"
    return f"chosen by `{rule}` on the validation split, {unit}"


def _is_ct(args: Mapping[str, Any]) -> bool:
    return str(args.get("data", "")).lower().endswith((".yaml", ".yml"))


def _data_note(args: Mapping[str, Any]) -> str:
    """Where the training data came from, and its licence (CT descriptions name their own source)."""
    if _is_ct(args):
        return (f"`{args['data']}` — a CT description (per-patient volumes, see `docs/ct.md` of the project): trained "
                "on the central axial slice of each patient, validated and tested on the central slices averaged per "
                "patient. The volumes' source and licence are those of the data set the description points to; "
                "check them before sharing this model.")
    return (f"`{args['data']}` — Kermany, Zhang, Goldbaum (2018), *Labeled Optical Coherence Tomography (OCT) and "
            "Chest X-Ray\nImages for Classification*, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0 "
            "(MedMNIST v2 for `.npz` files:\nYang et al., Scientific Data 10, 41 (2023), CC BY 4.0). Paediatric "
            "patients from one centre: expect a drop on\nadult or other-site X-rays.")


#: Placeholders a card is written with; ``python -m space.deploy`` replaces them with the published repo ids.
MODEL_REPO_PLACEHOLDER = "OWNER/NAME"
CODE_REPO_PLACEHOLDER = "OWNER/SPACE"


def usage_snippet(cfg: Mapping[str, Any]) -> str:
    """The model card's "Use" section: Markdown with code that works in a fresh environment, without a clone.

    ResNet18s load with timm alone (``timm.create_model("hf-hub:…", pretrained=True)``), with the preprocessing
    written out from the config; the custom models with this project's library, installed as the package ``xcxr``
    (``pyproject.toml``; import name ``xcxr``, so it never collides with a user's own ``lib``).
    ``tests/test_from_pretrained.py`` runs both literally against the Hub emulator.
    """
    size, mean, std = int(cfg["img_size"]), list(cfg["mean"]), list(cfg["std"])
    pos = cfg["labels"][1]
    if cfg.get("hub_format") == "timm":
        steps = ["x = x.repeat(1, 3, 1, 1)                       # the grey image on all 3 input channels"] \
            if cfg["in_chans"] == 3 else []
        if len(set(mean)) == 1 and len(set(std)) == 1:
            steps.append(f"x = (x - {mean[0]}) / {std[0]}                           # mean and std of config.json")
        else:
            steps.append(f"x = (x - torch.tensor({mean})[:, None, None]) / torch.tensor({std})[:, None, None]")
        norm = "\n".join(steps)
        return f"""No code of this project is needed (`pip install timm pillow`):

```python
import numpy as np, timm, torch
from PIL import Image

model = timm.create_model("hf-hub:{MODEL_REPO_PLACEHOLDER}", pretrained=True).eval()
img = Image.open("xray.png").convert("L").resize(({size}, {size}), Image.BILINEAR)   # grey, {size}×{size}
x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None, None]   # (1, 1, H, W) in [0, 1]
{norm}
with torch.no_grad():
    p = torch.sigmoid(model(x))[0, 0].item() if model.num_classes == 1 else \\
        torch.softmax(model(x), 1)[0, 1].item()
print(f"P({pos}) = {{p:.3f}}")
```"""
    return f"""Install this project's library (import name `xcxr`), then:

```bash
pip install "xcxr @ git+https://huggingface.co/spaces/{CODE_REPO_PLACEHOLDER}"
```

```python
import torch
from xcxr.data import load_grey
from xcxr.explain import gradcam, prepare
from xcxr.models import load_model, predict_proba

model = load_model("{MODEL_REPO_PLACEHOLDER}")                # config.json + model.safetensors from the Hub
grey = torch.from_numpy(load_grey("xray.png", size=model.xcxr_config["img_size"]))[None, None]   # uint8
p = predict_proba(model, grey)[0].item()                # with the preprocessing of config.json
maps = gradcam(model, prepare(model, grey))             # (1, 2, H, W): Grad-CAM of both classes
print(f"P({pos}) = {{p:.3f}}")
```"""


def write_model_card(out: Path, model: nn.Module, metrics: Mapping[str, Any], args: Mapping[str, Any]) -> Path:
    """Write ``out/README.md``: YAML metadata + human-readable card."""
    from huggingface_hub import EvalResult, ModelCardData

    cfg = get_config(model)
    is_timm = cfg.get("hub_format") == "timm"
    # Test (else validation); per patient in a patient-level run (CT slices, --patient-level): the threshold was
    # chosen on per-patient mean probabilities, so the per-patient numbers are the result and the per-image ones
    # the secondary table. An image-level run shows its per-patient numbers second, when patients have two images.
    head = headline(metrics)
    section, split = head.section, SPLIT_NAMES[head.split]
    per_patient = head.level == "patient"
    dataset = Path(str(args["data"]).rstrip("/")).name
    results = [EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=dataset,
                          dataset_split=split, metric_type=key, metric_name=name, metric_value=round(value, 4))
               for key, name, value in (("accuracy", "Accuracy", section["accuracy"]),
                                        ("roc_auc", "ROC AUC", section["auc"]),
                                        ("f1", "F1", section["f1"]), ("precision", "Precision", section["precision"]),
                                        ("recall", "Recall (sensitivity)", section["recall"]))
               if value is not None]
    data = ModelCardData(
        license="cc-by-4.0", library_name="timm" if is_timm else "pytorch",
        tags=["image-classification", "medical-imaging", "ct" if _is_ct(args) else "chest-x-ray", "explainability", "xcxr", cfg["architecture"]],
        datasets=[dataset], metrics=["accuracy", "roc_auc", "f1", "precision", "recall"],
        model_name=f"{cfg['architecture']} ({dataset})", eval_results=results, pipeline_tag="image-classification")
    load = usage_snippet(cfg)
    patient = None if per_patient else head.per_patient
    patient_md = (f"\n### Per patient ({split}; mean probability over a patient's images)\n\n{metrics_table(patient)}\n"
                  if patient else "")
    if per_patient:
        patient_md = (f"\n### Per image ({split}; every slice/image on its own, same threshold)\n\n"
                      f"{metrics_table(head.per_image)}\n")
    unit = "per patient (mean probability over each patient's images)" if per_patient else "per image"
    pos, neg = cfg["labels"][1], cfg["labels"][0]
    body = f"""
# {cfg['architecture']} — {neg} vs {pos}

A teaching model of the *explainable chest X-ray (and CT) classification* course app: `{cfg['architecture']}` with
{count_parameters(model):,} trainable parameters, {cfg['num_classes']} output logit(s)
({'softmax over two classes' if cfg['num_classes'] == 2 else f'sigmoid: logit > 0 means {pos}'}).

**Not a medical device.** Trained on a small public paediatric data set for teaching; do not use it for diagnosis.

## Results on the {split} split, {unit}

Operating threshold **{metrics['threshold']:.4f}**, {_threshold_origin(metrics['threshold_rule'], unit)}
(positive = {pos} when P({pos}) ≥ threshold). Best epoch by validation AUC ({unit}): {metrics['best_epoch']}.

{metrics_table(section)}

The "optimal here" rows use thresholds optimised on this same split: an optimistic reference, not a result.
Confusion matrix at the operating threshold (rows true {neg}/{pos}, columns predicted): `{section['confusion_matrix']}`
{patient_md}
![ROC](roc.png) ![Confusion matrix](confusion_matrix.png) ![Training curves](training_curves.png)

## Preprocessing (read it from `config.json`, never copy by hand)

Grey image → resize to {cfg['img_size']}×{cfg['img_size']} (bilinear) → scale to [0, 1]
{'→ repeat on 3 channels ' if cfg['in_chans'] == 3 else ''}→ subtract mean {cfg['mean']} → divide by std {cfg['std']}.
Default Grad-CAM layer: `{cfg['target_layer']}`; first layer: `{cfg['first_layer']}`.

## Use

{load}

## Training

```bash
{command_line(args)}
```

Adam (lr {args['lr']}, weight decay {args['weight_decay']}), ExponentialLR gamma {args['gamma']},
batch size {args['batch_size']}, {args['epochs']} epochs, seed {args['seed']}, class-weighted
{'cross-entropy' if cfg['num_classes'] == 2 else 'BCE (pos_weight)'}; augmentation {'on' if args['augment'] else 'off'}.
Full arguments: `train_args.json`; per-epoch losses and AUC: `history.json`; all metrics: `metrics.json`.

## Data

{_data_note(args)}
"""
    card = f"---\n{data.to_yaml()}\n---\n{body}"
    path = out / "README.md"
    path.write_text(card)
    return path


def write_run_report(out: Path, model: nn.Module, metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                     args: Mapping[str, Any], eval_set: ImageSet, eval_prob: np.ndarray) -> None:
    """Plots (training curves, ROC, confusion matrix) and the model card for a finished run."""
    from .metrics.plots import plot_confusion_matrix, plot_roc, plot_training_curves, save_figure

    head = headline(metrics)  # eval_set / eval_prob are the headline split's
    section = head.section
    y, p = eval_set.labels.numpy(), eval_prob
    if head.level == "patient" and head.per_patient:
        # the headline unit is the patient: plot the per-patient mean probabilities, as the metrics are
        from .metrics import patient_means
        y, p, _ = patient_means(y, p, eval_set.patient_ids)
    save_figure(plot_training_curves(list(history)), out / "training_curves.png")
    save_figure(plot_roc(y, p, label=get_config(model)["architecture"]
                         + (" (per patient)" if metrics.get("level") == "patient" else "")), out / "roc.png")
    save_figure(plot_confusion_matrix(section["confusion_matrix"], class_names=tuple(eval_set.classes),
                                      title=f"threshold {metrics['threshold']:.3f}"), out / "confusion_matrix.png")
    write_model_card(out, model, metrics, args)
