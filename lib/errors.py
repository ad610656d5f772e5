"""One base for every error the library raises on purpose: :class:`XcxrError`.

An ``XcxrError`` means *the input was wrong or something outside the code is missing* (a bad argument, a file that
is not an image, a model folder without weights, no network for pretrained weights). Its message names the problem
and what to do, so a command-line tool or the app may show it as it is. Anything else that escapes from ``lib`` is
a bug: callers log it with its traceback and show the user a short generic message instead of its text.

Every subclass keeps the built-in parent it had before (``ValueError``, ``TypeError`` or ``RuntimeError``), so code
that catches those keeps working:

==================================  ==================================  ===================================================
class                               parents                             raised for
==================================  ==================================  ===================================================
:class:`XcxrValueError`             ``XcxrError``, ``ValueError``       an argument or option value outside what is allowed
:class:`XcxrTypeError`              ``XcxrError``, ``TypeError``        an argument of the wrong type, an unknown option
:class:`XcxrKeyError`               ``XcxrError``, ``KeyError``         a name that is not among the allowed ones
``lib.data.DataError``              ``XcxrValueError``                  a data folder / split / CT description problem
``lib.data.ImageError``             ``XcxrValueError``                  a file that cannot be decoded as a usable image
``lib.sweep.SweepError``            ``XcxrValueError``                  a bad sweep file
``lib.out_folders.OutFolderError``  ``XcxrValueError``                  an output folder that is not one of ours
``lib.models.ModelLoadError``       ``XcxrError``, ``RuntimeError``     a model folder or Hub repo that cannot be loaded
``lib.models.HubAuthError``         ``XcxrError``, ``PermissionError``  no Hugging Face token where one is needed
``PretrainedWeightsUnavailable``    ``XcxrError``, ``RuntimeError``     ImageNet weights that cannot be had (offline)
``lib.training.TrainingError``      ``XcxrError``, ``RuntimeError``     a training run that cannot start or continue
==================================  ==================================  ===================================================

Example:
    >>> from lib.errors import XcxrError
    >>> try:
    ...     create_model("pneumonia_cnn", dropout=2.0)
    ... except XcxrError as e:      # an input problem: show the message
    ...     print(e)
    pneumonia_cnn: dropout must be in [0, 1), got 2.0
"""
from __future__ import annotations

__all__ = ["XcxrError", "XcxrValueError", "XcxrTypeError", "XcxrKeyError"]


class XcxrError(Exception):
    """Base of the library's deliberate errors: the message says what was wrong and what to do."""


class XcxrValueError(XcxrError, ValueError):
    """An argument, option or input value outside what the function accepts."""


class XcxrTypeError(XcxrError, TypeError):
    """An argument of the wrong type, or an option the function does not have."""


class XcxrKeyError(XcxrError, KeyError):
    """A name (an outcome group, a split…) that is not among the allowed ones."""

    def __str__(self) -> str:  # KeyError's own str() adds quotes around the message
        return str(self.args[0]) if self.args else ""
