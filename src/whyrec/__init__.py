"""whyrec: a recommender system that talks and explains."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("whyrec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
