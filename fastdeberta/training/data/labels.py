"""Label maps: label name <-> class id, stored in config.json as ``id2label`` / ``label2id``.

A map is built once from the training data (names sorted, so the same data always gives the same
ids) and saved with the model; evaluation and prediction read it back from the model's config and
refuse labels the model was not trained on, naming the file and line where they appear.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .readers import DataError

__all__ = ["LabelMap", "label_name"]


def label_name(value: Any, where: str) -> str:
    """A label value from a file as the string used in the map (ints and strings; "1" == 1)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, float)):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        raise DataError(f"{where}: label {value!r} is not a class name; use a string or an integer")
    return str(value).strip()


@dataclass
class LabelMap:
    """Class names in id order."""

    names: list[str]

    @classmethod
    def from_values(cls, values: Iterable[str]) -> LabelMap:
        """Sorted unique names; integers sort numerically ("2" before "10") when all names are integers."""
        unique = set(values)
        if all(_is_int(v) for v in unique):
            return cls(sorted(unique, key=int))
        return cls(sorted(unique))

    @classmethod
    def from_config(cls, config: Any) -> LabelMap | None:
        """The map stored in a model config (``id2label``), or None when it holds none."""
        id2label = getattr(config, "id2label", None)
        if not id2label:
            return None
        return cls([str(id2label[i]) for i in sorted(id2label)])

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def config_fields(self) -> dict[str, Any]:
        return {"num_labels": len(self.names), "id2label": self.id2label, "label2id": self.label2id}

    def encode(self, name: str, where: str) -> int:
        index = self.label2id.get(name)
        if index is None:
            shown = self.names if len(self.names) <= 20 else self.names[:20] + ["..."]
            raise DataError(f"{where}: label {name!r} is not one the model knows ({shown}); the model was "
                            "trained with these labels only. Fix the label, or fine-tune a model that has it")
        return index


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
