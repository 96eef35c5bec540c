"""Model loading for the job: a torchvision name, an ``nn.Module`` or a callable, on a device.

:func:`load_model` resolves what the caller gave into a :class:`LoadedModel`:
the forward function, its preprocessing and class names, and how to describe
it in the result. Pretrained torchvision weights are downloaded once into
``weights_dir`` (torch.hub's cache); when that fails the error says how to
proceed offline. torchvision is optional: it is needed only for a model given
by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .._errors import WeightsUnavailableError
from .._optional import require
from ..io import redact_text
from ._preprocess import ImageNetPreprocess

__all__ = ["DEFAULT_MODEL", "LoadedModel", "load_model", "logits_of", "resolve_device", "sync"]

DEFAULT_MODEL = "mobilenet_v3_small"
"""The torchvision classifier used when no model is given (2.5 M parameters)."""

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_HUB_LOCK = threading.Lock()


@dataclasses.dataclass
class LoadedModel:
    """A model ready to run: what to call, how to prepare its input, and how to name its outputs."""

    fn: Callable[[torch.Tensor], Any]
    """Takes the preprocessed float batch, returns logits (or an object holding them)."""
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    """uint8 ``N x 3 x H x W`` frames -> the float batch ``fn`` expects."""
    class_names: list[str] | None
    name: str
    """Reported as ``result["model"]``."""
    weights: str | None
    """Reported as ``result["weights"]``: the weights enum, the checkpoint path, or None."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA, then MPS, then CPU; ``"cuda"`` -> the current CUDA device."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return d


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that stage timings measure work and not queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def logits_of(output: Any) -> torch.Tensor:
    """The ``N x num_classes`` logits of a model's output (a tensor, ``.logits``, or a tuple's first item)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        logits: torch.Tensor = output.logits
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected a logits tensor N x num_classes")


@contextlib.contextmanager
def _hub_dir(weights_dir: str | None) -> Iterator[None]:
    """Point torch.hub's cache at ``weights_dir`` for the duration (restored after)."""
    if weights_dir is None:
        yield
        return
    with _HUB_LOCK:
        previous = getattr(torch.hub, "_hub_dir", None)
        torch.hub.set_dir(str(weights_dir))
        try:
            yield
        finally:
            torch.hub._hub_dir = previous  # set_dir(None) is refused: restore the private slot


def _torchvision_models() -> ModuleType:
    # An nn.Module or a plain callable as model= needs no torchvision.
    return require("torchvision.models", purpose="a torchvision model given by name")


def _resolve_weights_enum(tvm: ModuleType, model_name: str, weights: Any) -> Any:
    """``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"ResNet18_Weights.IMAGENET1K_V1"`` or a WeightsEnum -> WeightsEnum."""
    if not isinstance(weights, str):
        return weights
    if "." in weights and not weights.endswith(_CHECKPOINT_SUFFIXES):
        return tvm.get_weight(weights)
    enum = tvm.get_model_weights(model_name)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(
            f"{model_name}: unknown weights {weights!r}; choose one of {names}, None or a file path"
        ) from None


def _is_weights_path(weights: Any) -> bool:
    if isinstance(weights, Path):
        return True
    return isinstance(weights, str) and (
        os.sep in weights or weights.endswith(_CHECKPOINT_SUFFIXES) or os.path.exists(weights)
    )


def _load_checkpoint(module: torch.nn.Module, path: str | Path) -> None:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist; pass an existing checkpoint path, 'DEFAULT' or None"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    module.load_state_dict(state)


def _download_error(model_name: str, weights_enum: Any, weights_dir: str, e: BaseException) -> WeightsUnavailableError:
    url = getattr(weights_enum, "url", "?")
    fname = url.rsplit("/", 1)[-1]
    target = Path(weights_dir) / "checkpoints" / fname
    return WeightsUnavailableError(
        f"could not load the pretrained weights {weights_enum} for {model_name}: download of {url} "
        f"into {target.parent} failed ({type(e).__name__}: {redact_text(str(e))}). To proceed: run with weights=None "
        f"(`--weights none`, random init: fine for measuring I/O and decode, not for predictions); or "
        f"pass a local checkpoint with weights='/path/to/{fname}' (`--weights PATH`); or copy {fname} to "
        f"{target} (weights_dir / TORCH_HOME) on a machine with network access."
    )


def _load_by_name(
    model_name: str,
    weights: Any,
    device: torch.device,
    *,
    weights_dir: str | None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
    names: list[str] | None,
) -> LoadedModel:
    tvm = _torchvision_models()
    if model_name not in tvm.list_models():
        raise ValueError(
            f"unknown torchvision model {model_name!r}; e.g. resnet18, mobilenet_v3_small, efficientnet_b0"
        )
    try:
        default_enum = tvm.get_model_weights(model_name).DEFAULT
    except (ValueError, AttributeError):
        default_enum = None
    if weights is None or _is_weights_path(weights):
        module = tvm.get_model(model_name, weights=None)
        weights_desc = None
        if weights is not None:
            _load_checkpoint(module, weights)
            weights_desc = str(weights)
        enum = default_enum  # transforms only: same input conventions as the architecture's weights
    else:
        enum = _resolve_weights_enum(tvm, model_name, weights)
        hub = str(weights_dir) if weights_dir is not None else torch.hub.get_dir()
        try:
            with _hub_dir(weights_dir):
                module = tvm.get_model(model_name, weights=enum)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a corrupt download a RuntimeError
            # The cause is kept only when its message holds no URL secret (a proxy's credentials).
            raise _download_error(model_name, enum, hub, e) from (e if redact_text(str(e)) == str(e) else None)
        weights_desc = str(enum)
        if names is None:
            names = list(enum.meta.get("categories") or []) or None
    if preprocess is None:
        preprocess = enum.transforms() if enum is not None else ImageNetPreprocess()
    module.eval().to(device)
    return LoadedModel(module, preprocess, names, model_name, weights_desc)


def _load_module(
    model: torch.nn.Module,
    weights: Any,
    device: torch.device,
    *,
    weights_dir: str | None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
    names: list[str] | None,
) -> LoadedModel:
    weights_desc = None
    if weights is not None:
        if _is_weights_path(weights):
            _load_checkpoint(model, weights)
            weights_desc = str(weights)
        elif hasattr(weights, "get_state_dict"):  # a torchvision WeightsEnum
            with _hub_dir(weights_dir):
                model.load_state_dict(weights.get_state_dict(progress=False))
            weights_desc = str(weights)
            names = names or list(weights.meta.get("categories") or []) or None
            preprocess = preprocess or weights.transforms()
        else:
            raise ValueError(
                f"weights={weights!r} needs a torchvision model name; for an nn.Module pass "
                "weights=None (use it as it is) or a checkpoint path"
            )
    model.eval().to(device)
    return LoadedModel(model, preprocess or ImageNetPreprocess(), names, type(model).__name__, weights_desc)


def load_model(
    model: Any,
    weights: Any,
    device: torch.device,
    *,
    weights_dir: str | None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
    class_names: Sequence[str] | None,
) -> LoadedModel:
    """Build ``model`` with ``weights`` on ``device``.

    Args:
        model: a torchvision model name, an ``nn.Module`` or a callable.
        weights: ``"DEFAULT"``, a weights name or enum, a checkpoint path, or
            None / ``"none"`` (random init, or the module as given).
        device: where the model runs.
        weights_dir: torch.hub cache for downloaded weights (None: torch's default).
        preprocess: overrides the weights' own transforms.
        class_names: override the weights' categories.

    Raises:
        ValueError: unknown model or weights name; weights that cannot apply to ``model``.
        TypeError: ``model`` is none of the accepted kinds.
        WeightsUnavailableError: pretrained weights could not be downloaded, or
            the checkpoint file does not exist.
        MissingDependencyError: a model given by name without torchvision installed.
    """
    names = list(class_names) if class_names is not None else None
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if isinstance(model, str):
        return _load_by_name(model, weights, device, weights_dir=weights_dir, preprocess=preprocess, names=names)
    if isinstance(model, torch.nn.Module):
        return _load_module(model, weights, device, weights_dir=weights_dir, preprocess=preprocess, names=names)
    if callable(model):
        if weights is not None:
            raise ValueError(f"weights={weights!r} cannot be applied to a plain callable model; pass weights=None")
        name = getattr(model, "__name__", type(model).__name__)
        return LoadedModel(model, preprocess or ImageNetPreprocess(), names, name, None)
    raise TypeError(f"model must be a torchvision model name, an nn.Module or a callable, got {type(model).__name__}")
