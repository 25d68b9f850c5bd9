"""Datasets, catalogs, loaders, downloads and splits."""

from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_dataset

__all__ = ["Catalog", "Dataset", "load_dataset"]
