"""One model object, many threads: every explanation equals its serial result while other threads use the model.

The app serves a whole class with one model object. Before lib explained through a thread-private view
(:func:`lib.models.eval_view`), a Grad-CAM hook on the shared model also recorded the forward pass of another
thread, and ``gradcam()`` silently returned a map of *that* thread's image (15 of 200 maps in the reproduction of
issue #9); ``eval()`` flips were visible to other threads' forward passes. These tests run that reproduction —
threads of ``gradcam``, ``attribute`` (Captum, including its layer and ReLU hooks) and ``feature_maps``, next to
threads of plain ``model(x)`` on another image — and demand the serial answer every time.
"""
from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Callable

import torch

from lib.data import load_grey
from lib.explain import attribute, feature_maps, gradcam, prepare
from lib.models import create_model, load_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("**/*.jpeg"))


def _bundled_images(model: torch.nn.Module, n: int) -> torch.Tensor:
    size = model.xcxr_config["img_size"]
    grey = torch.stack([torch.from_numpy(load_grey(p, size)) for p in EXAMPLES[:: max(1, len(EXAMPLES) // n)][:n]])
    return prepare(model, grey[:, None])


def _tasks(model: torch.nn.Module, images: torch.Tensor) -> dict[str, Callable[[int], torch.Tensor]]:
    """Each task explains image ``i`` and returns a tensor; the same call must give the same tensor in any thread."""
    tasks = {
        "gradcam": lambda i: gradcam(model, images[i:i + 1]),
        "gradcam_backward": lambda i: gradcam(model, images[i:i + 1], layer=_inner_layer(model)),
        "reference": lambda i: gradcam(model, images[i:i + 1], fast=False),
        "saliency": lambda i: attribute(model, images[i:i + 1], [0, 1], method="saliency"),
        "layer_gradcam": lambda i: attribute(model, images[i:i + 1], [0, 1], method="layer_gradcam"),
        "guided_backprop": lambda i: attribute(model, images[i:i + 1], [1], method="guided_backprop"),
        "feature_maps": lambda i: torch.cat([s.maps.flatten() for s in feature_maps(model, images[i:i + 1])]),
    }
    return tasks


def _inner_layer(model: torch.nn.Module) -> str:
    # a layer that is not the CAM layer, so Grad-CAM takes the backward-pass path (its own hook + autograd.grad)
    return {"pneumonia_cnn": "features.1", "resnet18_scratch": "layer3"}[model.xcxr_config["architecture"]]


def _hammer(model: torch.nn.Module, images: torch.Tensor, other: torch.Tensor, rounds: int, workers: int = 3,
            forwarders: int = 2) -> list[str]:
    """Run random explanation tasks in ``workers`` threads while ``forwarders`` threads run plain forwards of
    ``other``; return a description of every result that differs from the serial one (empty = all equal)."""
    tasks = _tasks(model, images)
    serial = {(name, i): fn(i) for name, fn in tasks.items() for i in range(len(images))}
    with torch.no_grad():
        other_logits = model(other)
    wrong: list[str] = []
    stop = threading.Event()
    barrier = threading.Barrier(workers + forwarders)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(rounds):
            name, i = rng.choice(list(tasks)), rng.randrange(len(images))
            got = tasks[name](i)
            if not torch.allclose(got, serial[name, i], rtol=1e-5, atol=1e-6):
                wrong.append(f"{name} image {i}: max diff {float((got - serial[name, i]).abs().max()):.3g}")

    def forwarder() -> None:
        barrier.wait()
        while not stop.is_set():
            with torch.no_grad():  # a plain forward, as the app's /classify does, on the same model object
                out = model(other)
            if not torch.allclose(out, other_logits, rtol=1e-5, atol=1e-6):
                wrong.append("a plain forward of the shared model changed while explanations ran")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(workers)]
    fwd = [threading.Thread(target=forwarder) for _ in range(forwarders)]
    for t in threads + fwd:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in fwd:
        t.join()
    return wrong


def test_threaded_explanations_of_the_bundled_model_equal_the_serial_ones():
    model = load_model(ROOT / "models" / "pneumonia_cnn")
    images = _bundled_images(model, 4)
    other = _bundled_images(model, 9)[-1:]                       # another image, forwarded meanwhile
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    wrong = _hammer(model, images, other, rounds=70)
    assert not wrong, f"{len(wrong)} results differ from the serial ones: {wrong[:5]}"
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before   # nothing left behind
    assert not model.training                                                   # its mode untouched


def test_threaded_explanations_of_a_resnet_with_relu_hooks_equal_the_serial_ones():
    # Captum's GuidedBackprop hooks every ReLU module and LayerGradCam hooks layer4: on the shared model those
    # hooks would fire in the plain forwards of the other threads (and break them under no_grad).
    torch.manual_seed(0)
    model = create_model("resnet18_scratch", img_size=64).eval()
    images = torch.randn(3, 1, 64, 64)
    other = torch.randn(1, 1, 64, 64)
    wrong = _hammer(model, images, other, rounds=25)
    assert not wrong, f"{len(wrong)} results differ from the serial ones: {wrong[:5]}"


def test_explaining_a_model_in_train_mode_never_shows_eval_mode_to_other_threads():
    # The explanation runs in eval mode, but the shared model's flags are never written: a training loop (or any
    # thread) that reads them meanwhile sees the mode it set.
    torch.manual_seed(0)
    model = create_model("pneumonia_cnn", img_size=64).train()
    images = torch.randn(2, 1, 64, 64)
    stop, seen_eval = threading.Event(), []

    def watcher() -> None:
        while not stop.is_set():
            if not all(m.training for m in model.modules()):
                seen_eval.append(True)

    t = threading.Thread(target=watcher)
    t.start()
    try:
        for _ in range(30):
            gradcam(model, images)
            attribute(model, images, [1], method="saliency")
            feature_maps(model, images[:1])
    finally:
        stop.set()
        t.join()
    assert not seen_eval, "another thread saw the shared model switched to eval mode"
    assert all(m.training for m in model.modules())


def test_eval_view_shares_the_weights_and_keeps_its_own_hooks_and_modes():
    from lib.models import eval_view

    model = create_model("pneumonia_cnn", img_size=32).train()
    view = eval_view(model)
    assert view.features[0].conv1.weight is model.features[0].conv1.weight          # no copy of the weights
    assert view.features[0].bn1.running_mean is model.features[0].bn1.running_mean
    assert not any(m.training for m in view.modules()) and all(m.training for m in model.modules())
    calls = []
    handle = view.features[2].register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 1, 32, 32)
    model(x)
    assert calls == []                   # a forward of the shared model never reaches the view's hooks
    view(x)
    assert calls == [1]
    handle.remove()
    with torch.no_grad():                # the view computes what the model computes in eval mode
        expected = model.eval()(x)
        assert torch.equal(view(x), expected)


def test_capture_hooks_record_only_their_own_thread():
    from lib.explain import capture

    model = create_model("pneumonia_cnn", img_size=32).eval()
    x_own, x_other = torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32)
    with torch.no_grad(), capture({"features.0": model.features[0]}) as store:
        t = threading.Thread(target=lambda: model(x_other))
        t.start()
        t.join()
        assert "features.0" not in store          # the other thread's forward was not recorded
        model(x_own)
    expected = model.features[0](x_own)
    assert torch.equal(store["features.0"], expected)


def test_a_class_opening_outcomes_at_once_runs_the_split_through_the_model_once():
    # 12 threads ask for the same model and split at the same moment: one computes, the others wait for its result
    from lib.data import ImageSet
    from lib.explain import clear_prediction_cache, predict_split

    torch.manual_seed(0)
    model = create_model("pneumonia_cnn", img_size=16).eval()
    calls = []
    model.features[0].register_forward_pre_hook(lambda *_: calls.append(1))   # the views keep the model's hooks
    n = 40
    data = ImageSet(torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 2, (n,)),
                    ["NORMAL", "PNEUMONIA"], [f"img{i}.png" for i in range(n)], [None] * n)
    clear_prediction_cache()
    barrier, results = threading.Barrier(12), []

    def ask() -> None:
        barrier.wait()
        results.append(predict_split(model, data, batch_size=8))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and all(r.key == results[0].key for r in results)
    assert len(calls) == n // 8                                  # one pass over the split, in batches of 8
    assert all((r.probability == results[0].probability).all() for r in results)
