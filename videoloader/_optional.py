"""Optional dependencies, imported where they are used, with one way to say what is missing.

``import videoloader`` needs only the core dependencies; PyNvVideoCodec,
torchdata, torchvision, wandb, modal, pyarrow, torchcodec and decord are
imported on first use through :func:`require`, which names the extra to
install when one is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

# Distribution extra that installs each optional top-level module.
EXTRAS: dict[str, str] = {
    "PyNvVideoCodec": "nvdec",
    "torchdata": "data",
    "torchvision": "vision",
    "wandb": "wandb",
    "modal": "modal",
    "pyarrow": "data",
    "torchcodec": "bench",
    "decord": "bench",
    "matplotlib": "bench",
    "psutil": "bench",
}


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` (dotted names allowed), or explain how to get it.

    Args:
        module: the module to import, e.g. ``"torchdata.nodes"``.
        purpose: what needs it, for the message ("W&B logging").

    Raises:
        MissingDependencyError: the module (or its top-level package) is not
            installed; the message names the ``pip install`` to run.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        missing = (getattr(e, "name", None) or top).split(".")[0]
        if missing != top:
            raise  # the module is there but one of *its* imports failed: not ours to relabel
        extra = EXTRAS.get(top)
        how = f"pip install 'videoloader[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"{purpose} needs {top}, which is not installed: {how}") from None
