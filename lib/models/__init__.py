"""The model zoo: ``create_model(name, **cfg)``, ``list_models()``, ``load_model(dir_or_repo_id)``.

See :mod:`lib.models.registry` for the config every model carries, and the model files for the
architectures: :mod:`~lib.models.pneumonia_cnn` (the course CNN), :mod:`~lib.models.report` (DNN1/2, CNN1/2),
:mod:`~lib.models.resnet` (ResNet18 variants from timm).

**Adding a model** = one file plus its registration, nothing else: write the architecture in its own module, end
it with a ``@register_model`` entry point (:func:`~lib.models.registry.register_model`; ``options=`` the class when
the entry point takes ``**cfg``), give the model an ``xcxr_config`` that names what the explainers need
(``target_layer``, ``cam_head``, ``feature_stages``, ``first_layer``, ``hub_format`` — subclass
:class:`~lib.models.base.XcxrModule` and call its ``_set_config``), and import the module once (add it to the
import line below to make it part of the zoo). Grad-CAM, saliency, filters, feature maps, saving,
:func:`load_model` and the app then work for it; ``tests/test_models.py`` has a toy model done exactly so.

Example:
    >>> from lib.models import create_model, list_models, load_model
    >>> m = create_model("pneumonia_cnn", widths=(16, 32, 64))
    >>> m = load_model("models/pneumonia_cnn")
"""
from . import pneumonia_cnn, report, resnet  # noqa: F401  (registers the models)
from .base import XcxrModule
from .hub import (MAX_WEIGHTS_BYTES, HubAuthError, ModelLoadError, check_model, download_model, folder_file,
                  load_model, model_file, push_folder, save_model)
from .layers import (conv_layers, count_parameters, first_layer, get_config, get_layer, model_fingerprint, target_layer,
                     weights_revision)
from .outputs import positive_probability, predict_proba
from .pneumonia_cnn import ConvBlock, PneumoniaCNN
from .registry import create_model, list_models, loading_overrides, model_options, register_model
from .resnet import PretrainedWeightsUnavailable
from .views import eval_view

__all__ = [
    "create_model", "list_models", "register_model", "model_options", "loading_overrides", "XcxrModule",
    "load_model", "check_model", "download_model", "MAX_WEIGHTS_BYTES", "folder_file", "model_file", "save_model",
    "push_folder", "ModelLoadError", "HubAuthError", "PretrainedWeightsUnavailable",
    "get_config", "get_layer", "target_layer", "first_layer", "conv_layers", "count_parameters", "eval_view",
    "positive_probability", "predict_proba", "ConvBlock", "PneumoniaCNN", "model_fingerprint", "weights_revision",
]
