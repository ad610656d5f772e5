"""The model zoo: ``create_model(name, **cfg)``, ``list_models()``, ``load_model(dir_or_repo_id)``.

See :mod:`lib.models.registry` for the config every model carries, and the model files for the
architectures: :mod:`~lib.models.pneumonia_cnn` (the course CNN), :mod:`~lib.models.report` (DNN1/2, CNN1/2),
:mod:`~lib.models.resnet` (ResNet18 variants from timm).
"""
from . import pneumonia_cnn, report, resnet  # noqa: F401  (registers the models)
from .hub import ModelLoadError, load_model, push_folder, save_model
from .layers import conv_layers, count_parameters, first_layer, get_config, get_layer, target_layer
from .outputs import positive_probability, predict_proba
from .pneumonia_cnn import ConvBlock, PneumoniaCNN
from .registry import create_model, list_models, register_model
from .resnet import PretrainedWeightsUnavailable

__all__ = [
    "create_model", "list_models", "register_model", "load_model", "save_model", "push_folder", "ModelLoadError",
    "PretrainedWeightsUnavailable", "get_config", "get_layer", "target_layer", "first_layer", "conv_layers",
    "count_parameters", "positive_probability", "predict_proba", "ConvBlock", "PneumoniaCNN",
]
