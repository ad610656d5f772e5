"""The caches of decoded pixels: one bounded in-memory LRU shared by all loaders, and the disk cache folder.

Decoding a JPEG or a gzipped CT volume costs far more than a forward pass of a small CNN, so decoded, resized
uint8 pixels are kept:

* **in memory**, in :data:`MEMORY`, a least-recently-used cache **bounded by bytes**: at most
  ``$XCXR_MEMORY_CACHE_MB`` megabytes (default **512 MB**; ``0`` turns the memory cache off) of decoded X-ray
  splits (:mod:`lib.data.datasets`) and CT slices (:mod:`lib.data.volumes`) together. Adding an entry evicts the
  least recently used ones until the total fits; an entry larger than the whole bound is not kept at all. The bound
  counts what the cache keeps alive: an :class:`~lib.data.common.ImageSet` still in use keeps its own pixels after
  their cache entry is evicted. A public app with many models and data sets therefore cannot grow without limit.
* **on disk** (X-ray splits only), one ``.npy`` per file list and size in :func:`cache_dir`
  (``$XCXR_CACHE_DIR``, default ``~/.cache/xcxr/decoded``); it is never evicted automatically — delete the folder
  to reclaim the space.

See how full the memory cache is with :func:`memory_cache_info`, empty it with :func:`clear_memory_cache`, change
the bound at run time with :func:`set_memory_cache_limit`.

Example:
    >>> lru = ByteLRU(max_bytes=100)
    >>> lru.put("a", np.zeros(60, np.uint8)), lru.put("b", np.zeros(60, np.uint8))   # "b" evicts "a"
    (True, True)
    >>> lru.get("a") is None, lru.nbytes, len(lru)
    (True, 60, 1)
    >>> memory_cache_info()["max_bytes"] == int(float(os.environ.get("XCXR_MEMORY_CACHE_MB", 512)) * 2**20)
    True
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np
import torch

from ..errors import XcxrValueError

__all__ = [
    "ByteLRU", "MEMORY", "DEFAULT_MEMORY_CACHE_MB", "cache_dir", "memory_cache_info", "clear_memory_cache",
    "set_memory_cache_limit", "nbytes_of",
]

log = logging.getLogger(__name__)

#: The memory cache's bound when ``$XCXR_MEMORY_CACHE_MB`` is not set: the 224 px Kermany set (5,856 images,
#: 294 MB decoded) fits with room for a CT set, and a free Space (16 GB) keeps plenty for the models.
DEFAULT_MEMORY_CACHE_MB = 512.0


def nbytes_of(value: Any) -> int:
    """The bytes of the arrays and tensors in ``value`` (nested tuples/lists/dicts summed; anything else counts 0).

    Example:
        >>> nbytes_of(([1, 2], np.zeros((2, 3), np.uint8)))
        6
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    if isinstance(value, (tuple, list)):
        return sum(nbytes_of(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    return 0


class ByteLRU:
    """A thread-safe least-recently-used mapping bounded by the total size of its values in bytes.

    Args:
        max_bytes: the bound; ``0`` keeps nothing.
        sizeof: how to measure a value (default :func:`nbytes_of`: numpy arrays and torch tensors).

    Example:
        >>> lru = ByteLRU(max_bytes=10)
        >>> lru.put(1, np.zeros(4, np.uint8)), lru.put(2, np.zeros(4, np.uint8)), lru.get(1) is not None
        (True, True, True)
        >>> lru.put(3, np.zeros(4, np.uint8)), sorted(lru.keys())     # 2 was the least recently used
        (True, [1, 3])
        >>> lru.put(4, np.zeros(11, np.uint8)), lru.nbytes            # larger than the bound: not kept
        (False, 8)
    """

    def __init__(self, max_bytes: int, sizeof: Callable[[Any], int] = nbytes_of) -> None:
        if max_bytes < 0:
            raise XcxrValueError(f"max_bytes must be ≥ 0, got {max_bytes}")
        self._max = int(max_bytes)
        self._sizeof = sizeof
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        # loaders call in from thread pools (and the app from many request threads): every access is locked
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The bound in bytes; setting it evicts at once what no longer fits."""
        return self._max

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        if value < 0:
            raise XcxrValueError(f"max_bytes must be ≥ 0, got {value}")
        with self._lock:
            self._max = int(value)
            self._evict()

    @property
    def nbytes(self) -> int:
        """The bytes held now (always ≤ :attr:`max_bytes`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Hashable]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return default
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> bool:
        """Keep ``value`` under ``key``, evicting the least recently used entries until the total fits.

        Args:
            nbytes: the value's size; default ``sizeof(value)``.

        Returns:
            Whether the value is kept: ``False`` when it alone is larger than :attr:`max_bytes` (then any older
            entry under ``key`` is dropped too, so a stale value is never served).
        """
        size = self._sizeof(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self._max:
                return False
            self._items[key] = (value, size)
            self._bytes += size
            self._evict()
            return True

    def discard(self, predicate: Callable[[Hashable], bool] | None = None) -> int:
        """Drop every entry (or those whose key matches ``predicate``); returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._items if predicate is None or predicate(k)]
            for k in doomed:
                self._bytes -= self._items.pop(k)[1]
            return len(doomed)

    def clear(self) -> None:
        """Drop every entry."""
        self.discard()

    def info(self) -> dict[str, int]:
        """``{"entries", "nbytes", "max_bytes"}``: how full the cache is."""
        with self._lock:
            return {"entries": len(self._items), "nbytes": self._bytes, "max_bytes": self._max}

    def _evict(self) -> None:  # caller holds the lock
        while self._bytes > self._max and self._items:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size


def _budget_from_env() -> int:
    raw = os.environ.get("XCXR_MEMORY_CACHE_MB", "").strip()
    if not raw:
        return int(DEFAULT_MEMORY_CACHE_MB * 2**20)
    try:
        mb = float(raw)
        if not mb >= 0 or mb == float("inf"):
            raise ValueError
    except ValueError:
        # a typo in an environment variable must not stop the app or a training run: say so and go on
        log.warning("XCXR_MEMORY_CACHE_MB=%r is not a number of megabytes ≥ 0; using the default %g MB", raw,
                    DEFAULT_MEMORY_CACHE_MB)
        mb = DEFAULT_MEMORY_CACHE_MB
    return int(mb * 2**20)


#: The one in-memory cache of decoded pixels. Keys are tuples whose first item names the loader
#: (``"decoded"`` for X-ray splits, ``"ct"`` for CT slices), so each loader can clear its own entries.
MEMORY = ByteLRU(_budget_from_env())


def cache_dir() -> Path:
    """Where decoded images are cached on disk: ``$XCXR_CACHE_DIR`` or ``~/.cache/xcxr/decoded``."""
    return Path(os.environ.get("XCXR_CACHE_DIR") or Path.home() / ".cache" / "xcxr" / "decoded")


def memory_cache_info() -> dict[str, int]:
    """How full the in-memory decode cache is: ``{"entries", "nbytes", "max_bytes"}``.

    Example:
        >>> info = memory_cache_info()
        >>> 0 <= info["nbytes"] <= info["max_bytes"]
        True
    """
    return MEMORY.info()


def clear_memory_cache() -> None:
    """Forget the decoded images held in memory, CT slices included (the disk cache stays)."""
    MEMORY.clear()


def set_memory_cache_limit(megabytes: float) -> None:
    """Change the memory cache's bound (what ``$XCXR_MEMORY_CACHE_MB`` sets at start); evicts what no longer fits.

    Raises:
        XcxrValueError: ``megabytes`` is negative or not finite.

    Example:
        >>> set_memory_cache_limit(256)      # doctest: +SKIP
    """
    if not (isinstance(megabytes, (int, float)) and 0 <= megabytes < float("inf")):
        raise XcxrValueError(f"megabytes must be a finite number ≥ 0, got {megabytes!r}")
    MEMORY.max_bytes = int(megabytes * 2**20)
