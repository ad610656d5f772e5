"""``python -m benchmarks --json --quick`` runs end to end and reports every figure as a positive finite number.

Speed goals are not asserted here (CI machines are shared and noisy); the full run reports them.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

TRAINING_FIGURES = {
    "loop_real_images_per_s", "loop_bare_images_per_s", "loop_ratio", "loop_img_size", "loop_images_per_epoch",
    "loop_repeats", "threads",
    "fullres_ours_seconds", "fullres_ours_images_per_s",
    "fullres_naive_w0_seconds", "fullres_naive_w0_images_per_s",
    "fullres_naive_w2_seconds", "fullres_naive_w2_images_per_s",
    "fullres_speedup_vs_naive_w0", "fullres_speedup_vs_naive_w2",
    "fullres_train_images", "fullres_epochs", "fullres_repeats",
}
APP_FIGURES = {
    "classify_app_ms", "classify_lib_ms", "classify_noop_ms", "classify_ratio",
    "heatmaps_app_ms", "heatmaps_lib_ms", "heatmaps_noop_ms", "heatmaps_ratio", "repeats",
    "concurrent_clients", "concurrent_requests", "concurrent_p50_ms", "concurrent_p95_ms", "concurrent_p95_over_p50",
    "concurrent_errors", "concurrent_requests_per_s",
    "cold_first_page_seconds", "outcomes_ready_seconds", "outcomes_call_seconds",
    "outcomes_precomputed_at_start", "outcomes_from_disk_cache",
}
LOAD_FIGURES = {"phase_seconds"} | {
    f"n2_{k}" for k in (
        "idle_rss_mb", "ratio_p50", "ratio_p95", "ratio_classify_p95", "ratio_rss_peak",
        "flood_refused", "flood_refusal_names_limit", "flood_unread_accepted", "flood_trust_completed",
        "after_flood_classify_ms",
        *(f"{phase}_{k}" for phase in ("alone", "flood")
          for k in ("p50_ms", "p95_ms", "classify_p95_ms", "errors", "calls", "rss_peak_mb")))}
#: counts and 0/1 flags: zero is a valid (for the errors, the wanted) value
MAY_BE_ZERO = {"app.concurrent_errors", "app.outcomes_precomputed_at_start", "app.outcomes_from_disk_cache",
               "load.n2_alone_errors", "load.n2_flood_errors", "load.n2_flood_trust_completed",
               "load.n2_flood_unread_accepted", "load.n2_flood_refused", "load.n2_flood_refusal_names_limit"}


@pytest.mark.skipif(not (DATA / "chest_xray").is_dir() or not (DATA / "chest_xray_fullres").is_dir(),
                    reason="needs ../shared/data/chest_xray and chest_xray_fullres")
def test_benchmarks_quick_json(tmp_path):
    env = {**os.environ, "XCXR_CACHE_DIR": str(tmp_path / "decode_cache"), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--json", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    figures = json.loads(proc.stdout)
    assert isinstance(figures, dict)
    missing = ({f"training.{k}" for k in TRAINING_FIGURES} | {f"app.{k}" for k in APP_FIGURES}
               | {f"load.{k}" for k in LOAD_FIGURES}) - set(figures)
    assert not missing, missing
    for key, value in figures.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value) and (value >= 0 if key in MAY_BE_ZERO else value > 0), (key, value)


def test_benchmarks_list_and_unknown_family():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "training" in out.stdout and "app" in out.stdout and "load" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "no_such_family"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no_such_family" in bad.stderr
