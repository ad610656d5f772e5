"""lib.data.cache (the bounded LRU of decoded pixels) and lib.data.common (the one list of image suffixes)."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import make_xray_folder
from lib.data import (DICOM_SUFFIXES, IMAGE_SUFFIXES, clear_memory_cache, clear_volume_cache, load_grey,
                      load_split, memory_cache_info)
from lib.data import cache as cache_module
from lib.data.cache import MEMORY, ByteLRU, set_memory_cache_limit
from lib.data.common import RASTER_SUFFIXES
from lib.errors import XcxrValueError


def _arr(n: int) -> np.ndarray:
    return np.zeros(n, np.uint8)


# ---------------------------------------------------------------------------------------------- ByteLRU
def test_lru_evicts_the_least_recently_used_and_stays_within_the_bound():
    lru = ByteLRU(max_bytes=100)
    for k in "abcd":
        assert lru.put(k, _arr(30))
    # 4 × 30 > 100: the oldest ("a") went, the total fits
    assert lru.keys() == ["b", "c", "d"] and lru.nbytes == 90 <= lru.max_bytes
    assert lru.get("b") is not None          # "b" is now the most recently used …
    lru.put("e", _arr(30))                   # … so "c" goes, not "b"
    assert lru.keys() == ["d", "b", "e"] and lru.get("c") is None
    lru.put("big", _arr(70))                 # room for 70 needs two evictions
    assert lru.keys() == ["e", "big"] and lru.nbytes == 100
    assert lru.info() == {"entries": 2, "nbytes": 100, "max_bytes": 100}


def test_lru_does_not_keep_an_entry_larger_than_the_bound_nor_a_stale_one():
    lru = ByteLRU(max_bytes=50)
    lru.put("k", _arr(10))
    lru.put("other", _arr(10))
    assert lru.put("k", _arr(51)) is False   # too large: not kept …
    assert lru.get("k") is None              # … and the old value under the same key is not served either
    assert lru.keys() == ["other"] and lru.nbytes == 10
    assert ByteLRU(0).put("x", _arr(1)) is False   # a bound of 0 turns the cache off


def test_lru_replacing_a_key_counts_its_bytes_once_and_shrinking_evicts():
    lru = ByteLRU(max_bytes=100)
    lru.put("a", _arr(40))
    lru.put("a", _arr(60))
    assert len(lru) == 1 and lru.nbytes == 60
    lru.put("b", (["slice ids"], _arr(30)))  # tuples are measured by their arrays
    assert lru.nbytes == 90
    lru.max_bytes = 35
    assert lru.keys() == ["b"] and lru.nbytes == 30
    assert lru.discard(lambda k: k == "b") == 1 and lru.nbytes == 0
    with pytest.raises(XcxrValueError):
        ByteLRU(-1)


def test_lru_is_consistent_under_concurrent_use():
    lru = ByteLRU(max_bytes=1000)
    errors = []

    def work(t: int) -> None:
        try:
            for i in range(300):
                lru.put((t, i % 17), _arr(7 + (i % 5) * 20))
                lru.get((t - 1, i % 17))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    held = sum(lru.get(k).nbytes for k in lru.keys())
    assert lru.nbytes == held <= lru.max_bytes


# ---------------------------------------------------------------------------------------------- the shared cache
@pytest.fixture
def small_budget():
    before = MEMORY.max_bytes
    clear_memory_cache()
    yield
    MEMORY.max_bytes = before
    clear_memory_cache()


def test_decoded_splits_obey_the_global_bound_and_come_back_from_disk(tmp_path, monkeypatch, small_budget):
    monkeypatch.setenv("XCXR_CACHE_DIR", str(tmp_path / "cache"))
    root = make_xray_folder(tmp_path / "d", n_per_class=3, splits=None)   # 6 images
    one_split = 6 * 16 * 16
    set_memory_cache_limit(1.5 * one_split / 2**20)                        # room for one 16 px split only
    first = load_split(root, None, img_size=16)
    assert memory_cache_info() == {"entries": 1, "nbytes": one_split, "max_bytes": int(1.5 * one_split)}
    load_split(root, None, img_size=17)                                    # another size evicts the first
    info = memory_cache_info()
    assert info["entries"] == 1 and info["nbytes"] <= info["max_bytes"]
    calls = []
    from lib.data import datasets
    monkeypatch.setattr(datasets, "load_grey", lambda p, s: calls.append(p) or load_grey(p, s))
    again = load_split(root, None, img_size=16)                            # evicted → the disk cache, no decode
    assert calls == [] and np.array_equal(again.images.numpy(), first.images.numpy())
    set_memory_cache_limit(0)                                              # off: nothing kept, still correct
    assert memory_cache_info()["nbytes"] == 0
    assert np.array_equal(load_split(root, None, img_size=16).images.numpy(), first.images.numpy())
    assert memory_cache_info()["entries"] == 0
    with pytest.raises(XcxrValueError, match="megabytes"):
        set_memory_cache_limit(-1)


def test_clear_volume_cache_drops_only_ct_slices(small_budget):
    MEMORY.put(("decoded", "x"), _arr(10))
    MEMORY.put(("ct", "patient"), ([0], _arr(10)))
    clear_volume_cache()
    assert MEMORY.keys() == [("decoded", "x")]


@pytest.mark.parametrize("value, expected_mb", [("64", 64), ("0", 0), ("0.5", 0.5), ("", 512), ("lots", 512),
                                                ("-3", 512)])
def test_the_bound_comes_from_the_environment(monkeypatch, caplog, value, expected_mb):
    monkeypatch.setenv("XCXR_MEMORY_CACHE_MB", value)
    with caplog.at_level(logging.WARNING, logger="lib.data.cache"):
        assert cache_module._budget_from_env() == int(expected_mb * 2**20)
    assert ("XCXR_MEMORY_CACHE_MB" in caplog.text) == (value in ("lots", "-3"))


# ---------------------------------------------------------------------------------------------- suffixes
def test_one_list_of_image_suffixes():
    assert len(set(IMAGE_SUFFIXES)) == len(IMAGE_SUFFIXES)
    assert all(s.startswith(".") and s == s.lower() for s in IMAGE_SUFFIXES)
    assert set(DICOM_SUFFIXES) <= set(IMAGE_SUFFIXES) and set(RASTER_SUFFIXES) | set(DICOM_SUFFIXES) == set(
        IMAGE_SUFFIXES)
    # every raster suffix is one Pillow can open here (the documented promise of lib.data.common)
    Image.init()
    assert set(RASTER_SUFFIXES) <= set(Image.registered_extensions())
    from lib.data import images
    assert images.DICOM_SUFFIXES is DICOM_SUFFIXES


@pytest.mark.parametrize("suffix, fmt", [(".webp", "WEBP"), (".gif", "GIF"), (".pgm", "PPM")])
def test_every_raster_suffix_is_found_by_a_folder_scan_and_decoded(tmp_path, suffix, fmt):
    root = tmp_path / "d"
    for cls, value in (("NORMAL", 40), ("PNEUMONIA", 200)):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((12, 12), value, np.uint8)).save(root / cls / f"a{suffix}", format=fmt)
    ds = load_split(root, None, img_size=12, cache=False)
    assert len(ds) == 2 and ds.images[1].float().mean() > ds.images[0].float().mean()
