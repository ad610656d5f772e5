"""The bundled example X-rays (``examples/chest_xray_test/{NORMAL,PNEUMONIA}/*``), addressed by stable ids.

An id is the path below the examples folder, e.g. ``"PNEUMONIA/person1071_virus_1774.jpeg"``; the folder is the
true label.
"""
from __future__ import annotations

import os
from pathlib import Path

from lib.data import IMAGE_SUFFIXES

__all__ = ["ExampleSet", "EXAMPLES_DIR"]

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples" / "chest_xray_test"
_SUFFIXES = frozenset(IMAGE_SUFFIXES)  # the one list of decodable suffixes (lib.data.common)


class ExampleSet(list):
    """A list of example ids (sorted: class folder, then name) with :meth:`path` and :meth:`label`."""

    def __init__(self, root: str | os.PathLike = EXAMPLES_DIR) -> None:
        self.root = Path(root)
        ids = []
        if self.root.is_dir():
            for p in sorted(self.root.rglob("*")):
                if p.is_file() and p.suffix.lower() in _SUFFIXES:
                    ids.append(p.relative_to(self.root).as_posix())
        super().__init__(ids)

    def path(self, example_id: str) -> Path:
        """The file of ``example_id``; ``KeyError`` for an id that is not in the set (no path tricks)."""
        if example_id not in self:
            raise KeyError(f"unknown example {example_id!r}")
        return self.root / example_id

    def label(self, example_id: str) -> str:
        """The true class (the folder name)."""
        return example_id.split("/", 1)[0] if "/" in example_id else ""

    def first(self, label: str | None = None) -> str | None:
        """The first example (of ``label`` if given), or ``None``."""
        for e in self:
            if label is None or self.label(e) == label:
                return e
        return None
