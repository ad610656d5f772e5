"""Explanations: Grad-CAM in seven steps (and all classes in one pass), post-processing, and the other methods.

Every function takes model-ready images and class indices, and follows the conventions of :mod:`lib.explain.core`.

Example:
    >>> from lib.explain import gradcam, prepare
    >>> maps = gradcam(model, prepare(model, uint8_images))     # (B, 2, H, W), ReLU'd, bilinear, unnormalised
"""
from .core import capture, class_scores, explaining, prepare, resolve_classes, resolve_layer
from .gradcam import METHODS, cam_head, gradcam, gradcam_reference
from .postprocess import NORMALISE_MODES, UPSAMPLE_MODES, normalise, postprocess, upsample
from .attribution import attribute, list_methods
from .feature_maps import FeatureStage, default_stages, feature_map_grid, feature_maps, feature_maps_figure
from .figures import gradcam_figure, saliency_outcomes_figure
from .filters import filter_grid, filter_summary, filter_weights
from .overlay import DIVERGING, colorize, overlay, overlay_figure, symmetric_limits, to_png_bytes, with_colorbar
from .outcomes import (Outcomes, Predictions, clear_prediction_cache, image_ids, outcomes, predict_split,
                       ship_predictions, threshold_presets)
from .trust import (PerturbationResult, curve_auc, deletion_insertion, model_randomisation, perturbation_curves,
                    randomisation_blocks, rank_correlation)

__all__ = [
    # core conventions
    "explaining", "capture", "resolve_layer", "resolve_classes", "class_scores", "prepare",
    # Grad-CAM
    "gradcam", "gradcam_reference", "cam_head", "METHODS",
    # post-processing
    "postprocess", "normalise", "upsample", "UPSAMPLE_MODES", "NORMALISE_MODES",
    # Captum methods, one calling convention (attribution.py)
    "attribute", "list_methods",
    # overlays and figures
    "overlay", "overlay_figure", "colorize", "to_png_bytes", "with_colorbar", "symmetric_limits", "DIVERGING",
    "gradcam_figure", "saliency_outcomes_figure",
    # filters and feature maps
    "filter_grid", "filter_summary", "filter_weights", "feature_maps", "feature_map_grid", "feature_maps_figure",
    "default_stages", "FeatureStage",
    # outcomes: one cached pass over a split, TP/TN/FP/FN at a threshold (outcomes.py)
    "predict_split", "outcomes", "threshold_presets", "clear_prediction_cache", "Predictions", "Outcomes",
    "ship_predictions", "image_ids",
    # trust checks: model randomisation, deletion/insertion (trust.py)
    "model_randomisation", "randomisation_blocks", "rank_correlation", "deletion_insertion", "perturbation_curves",
    "curve_auc", "PerturbationResult",
]
