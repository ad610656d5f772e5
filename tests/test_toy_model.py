"""Adding a model = one file plus its registration: a toy model defined only here gets every lib feature.

Nothing outside this file knows the toy: Grad-CAM (its declared CAM head and the backward path, both equal to the
seven steps), Captum saliency, filters, feature maps, saving and ``load_model`` all work from the registry entry and
the config the model declares (``target_layer``, ``cam_head``, ``feature_stages``, ``first_layer``, ``hub_format``).
"""
from __future__ import annotations

from typing import Sequence

import pytest
import torch
import torch.nn as nn

from lib.explain import attribute, feature_maps, filter_grid, gradcam, gradcam_reference, prepare
from lib.explain.filters import filter_weights
from lib.models import XcxrModule, create_model, get_config, list_models, load_model, register_model, save_model
from lib.models.registry import unregister_model


class ToyNet(XcxrModule):
    """conv 3×3 → ReLU → conv 3×3 → ReLU → global average pooling → Linear: the smallest CAM-able CNN."""

    def __init__(self, width: int = 4, num_classes: int = 2, in_chans: int = 1, img_size: int = 16,
                 mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,),
                 labels: Sequence[str] = ("NORMAL", "PNEUMONIA")) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width, num_classes)
        self._set_config(num_classes, labels, in_chans, img_size, mean, std, architecture="toy_net",
                         first_layer="stem.0", target_layer="body", cam_head="head",
                         feature_stages=["stem", "body"], width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture
def toy():
    @register_model(options=ToyNet)
    def toy_net(**cfg) -> ToyNet:
        return ToyNet(**cfg)

    try:
        torch.manual_seed(0)
        yield create_model("toy_net", width=5)
    finally:
        unregister_model("toy_net")
    assert "toy_net" not in list_models()


def test_a_toy_model_gets_gradcam_saliency_filters_feature_maps_saving_and_loading(toy, tmp_path):
    x = prepare(toy, torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8))
    # Grad-CAM: the declared CAM head (no backward pass) gives the seven steps' maps; another layer, the backward
    fast = gradcam(toy, x)
    assert fast.shape == (3, 2, 16, 16) and torch.allclose(fast, gradcam_reference(toy, x), atol=1e-5)
    stem = gradcam(toy, x, layer="stem")
    assert torch.allclose(stem, gradcam_reference(toy, x, layer="stem"), atol=1e-5)
    assert attribute(toy, x, [0, 1], method="saliency").shape == (3, 2, 16, 16)
    # filters: the declared first layer; feature maps: the declared stages
    name, w = filter_weights(toy)
    assert name == "stem.0" and w.shape == (5, 1, 3, 3)
    assert filter_grid(toy).ndim == 3
    stages = feature_maps(toy, x[:1], top_k=2)
    assert [s.name for s in stages] == ["stem", "body"] and stages[1].maps.shape == (2, 16, 16)
    # saving and loading: built again through the registry, same logits, same config
    save_model(toy, tmp_path / "toy")
    back = load_model(tmp_path / "toy")
    assert isinstance(back, ToyNet) and get_config(back) == get_config(toy)
    with torch.no_grad():
        assert torch.equal(back(x), toy.eval()(x))


def test_a_toy_model_refuses_options_it_does_not_have_listing_the_real_ones(toy):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['widht'\]; accepted options: .*'width'"):
        create_model("toy_net", widht=3)
