"""Data: what a run trains and evaluates on.

- `config`: `DataConfig`, the `DATASETS` registry, shapes and layouts (no data read)
- `datasets`: the `Dataset` interface, in memory (batch augmentation) or streamed
- `jpeg`: the batched ImageNet JPEG pipeline (``--decoder torchvision``)
- `files`: cache, zips, ImageFolder scanning and decoding
- `augment`: crop/flip/normalise on whole uint8 batches
- `sources`: the registered datasets and `load_dataset` (a new dataset goes here)
"""
from harness.data.config import DATASETS, DataConfig, dataset_shape
from harness.data.datasets import Dataset, subset_indices
from harness.data.files import REPO_ROOT, extract_zip, find_imagefolder, resolve_root
from harness.data.sources import load_dataset

__all__ = ["DATASETS", "DataConfig", "Dataset", "REPO_ROOT", "dataset_shape", "extract_zip", "find_imagefolder",
           "load_dataset", "resolve_root", "subset_indices"]
