"""A Hugging Face dataset saved with ``save_to_disk``: Arrow files that are memory-mapped, never loaded whole. One
owner opens it for every reader (``sources.iter_text`` in one process, ``parallel`` in many), and turns what a
damaged or unfitting dataset raises into one line."""

from __future__ import annotations

from pathlib import Path

from .sources import DataError, is_hf_dataset

TEXT_TYPES = ("string", "large_string")


def open_dataset(path: str | Path, text_field: str):
    """The dataset saved at ``path`` (its ``train`` split, else its first, for a ``DatasetDict``), memory-mapped,
    with only ``text_field``; a one-line ``DataError`` when it is missing, not a dataset, cannot be read, lacks the
    column, holds no text in it or is empty."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"dataset {str(path)!r} does not exist")
    if not is_hf_dataset(folder):
        raise DataError(f"{path} is not a saved Hugging Face dataset (no dataset_info.json or dataset_dict.json)")
    datasets = _datasets()
    try:
        dataset = datasets.load_from_disk(str(folder))
    except IndexError:  # datasets saves no Arrow file for an empty split, then cannot read it back (5.2)
        raise DataError(f"dataset {path} has no rows") from None
    except (ValueError, OSError, KeyError, TypeError) as error:  # broken JSON, a cut Arrow file, a missing one
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"dataset {path} cannot be read: {first}") from None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if text_field not in dataset.column_names:
        raise DataError(f"dataset {path} has no column {text_field!r}; columns: {dataset.column_names}")
    kind = getattr(dataset.features[text_field], "dtype", None)
    if kind not in TEXT_TYPES:
        raise DataError(f"dataset {path}: column {text_field!r} holds {kind or dataset.features[text_field]}, not text")
    if len(dataset) == 0:
        raise DataError(f"dataset {path} has no rows")
    return dataset.select_columns([text_field])


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("reading a saved Hugging Face dataset needs `pip install scorediff[hf]` (datasets)") from None
    return datasets
