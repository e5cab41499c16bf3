"""Reading, checking, loading and saving network weights (local files and ImageNet downloads)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from torch import nn

from breakhis_lit.errors import BreakHisError
from breakhis_lit.load_errors import describe_load_error

#: File suffixes :func:`read_state_dict` understands (``.safetensors`` or a ``torch.save`` pickle).
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
#: Wrappers added by DataParallel/DDP (``module.``), wrapper modules (``model.``) and our LightningModule.
STRIP_PREFIXES = ("module.", "model.", "backbone.")
#: Keys under which training scripts nest the state dict inside a checkpoint.
NESTING_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
#: The command-line option that points a backbone at a local weights file.
WEIGHTS_OPTION = "--model.backbone.init_args.weights"


@dataclass
class LoadReport:
    """What loading a state dict into a network did.

    Attributes:
        source: The file or URL the tensors came from.
        loaded: Names of the tensors copied into the network.
        skipped_head: Classifier tensors of the source not used (other class count or other head).
        left_initialised: Tensors of the network the source does not provide (new layers, new head).
        ignored: Source tensors deliberately not used (parts of the source network this one drops,
            non-backbone entries of a training checkpoint).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    left_initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line describing the load."""
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.skipped_head:
            parts.append(f"skipped the source's classifier head ({_short_list(self.skipped_head)})")
        if self.left_initialised:
            parts.append(f"left randomly initialised: {_short_list(self.left_initialised)}")
        if self.ignored:
            parts.append(f"ignored source tensors: {_short_list(self.ignored)}")
        return "; ".join(parts)


def _short_list(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _one_line(text: object, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in tensor.shape)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.bin``/``.ckpt`` pickle or a ``.safetensors`` file.

    Pickles are read with ``torch.load(weights_only=True)``; a dict nesting the tensors under
    ``state_dict``, ``model``, ``model_state_dict``, ``module`` or ``net`` is unwrapped. Key prefixes are
    left alone (see :func:`load_checked`).

    Args:
        path: The file.

    Returns:
        Tensor name -> tensor, on the CPU.

    Raises:
        BreakHisError: The file is missing, has an unknown suffix, cannot be read or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise BreakHisError(f"{path}: weights file not found; pass an existing {', '.join(WEIGHT_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise BreakHisError(f"{path}: unknown weights file type {suffix!r}; use one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, safetensors and I/O errors all mean "not a readable file"
        raise BreakHisError(
            f"{path}: cannot read weights ({_load_error(exc, suffix)}); "
            "pass a state dict saved with torch.save or safetensors"
        ) from exc
    while isinstance(obj, Mapping):
        nested = next((k for k in NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, Mapping) or not obj:
        raise BreakHisError(f"{path}: holds no state dict ({type(obj).__name__}); pass a file of named tensors")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise BreakHisError(
            f"{path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; pass a plain state dict "
            "(or a checkpoint with it under 'state_dict' or 'model')"
        )
    return {str(k): v for k, v in obj.items()}


def _load_error(exc: Exception, suffix: str) -> str:
    if suffix == ".safetensors":
        return f"{type(exc).__name__}: {_one_line(exc)}"
    return describe_load_error(exc)


def strip_prefixes(
    state_dict: Mapping[str, torch.Tensor], target_keys: Iterable[str], prefixes: Iterable[str] = STRIP_PREFIXES
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes (``module.``, ``model.``, ``backbone.``) so names match ``target_keys``.

    Every combination of up to three prefix removals is tried; the one matching most target names
    wins (ties go to the one keeping most tensors). When a prefix is found on only some tensors (a
    training checkpoint holding the backbone beside a loss or metrics), the others are dropped and
    returned so the caller can report them.

    Args:
        state_dict: Tensors as read from a file.
        target_keys: Names the receiving module expects.
        prefixes: Prefixes that may be removed.

    Returns:
        The renamed tensors and the names of tensors dropped because they lacked the prefix.
    """
    # Not torch's consume_prefix_in_state_dict_if_present: stripping each prefix in turn keeps "loss.w" of
    # {"backbone.model.a", "loss.w"} and renames a network's own "model.a" to "a"; the best match is searched instead.
    target = set(target_keys)
    prefixes = tuple(prefixes)

    def score(sd: Mapping[str, torch.Tensor], dropped: list[str]) -> tuple[int, int]:
        return sum(k in target for k in sd), -len(dropped)

    best_sd, best_dropped = dict(state_dict), []
    best_score = score(best_sd, best_dropped)
    frontier: list[tuple[dict[str, torch.Tensor], list[str]]] = [(best_sd, best_dropped)]
    for _ in range(3):
        following = []
        for current, dropped in frontier:
            for prefix in prefixes:
                kept = {k[len(prefix) :]: v for k, v in current.items() if k.startswith(prefix)}
                if not kept:
                    continue
                now_dropped = dropped + [k for k in current if not k.startswith(prefix)]
                following.append((kept, now_dropped))
                candidate = score(kept, now_dropped)
                if candidate > best_score:
                    best_sd, best_dropped, best_score = kept, now_dropped, candidate
        frontier = following
    return best_sd, best_dropped


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(key, p) for p in patterns)


def load_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    model_name: str,
    head: Iterable[str] = (),
    optional: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> LoadReport:
    """Copy ``state_dict`` into ``module`` after checking every tensor.

    Patterns are :func:`fnmatch.fnmatchcase` patterns over tensor names (``*`` also matches dots).

    Args:
        module: The receiving network.
        state_dict: Source tensors; wrapper prefixes are stripped first (:func:`strip_prefixes`).
        source: The file or URL, named in messages.
        model_name: The receiving network's name, used in messages.
        head: Classifier tensors (of either side): used when names and shapes agree, otherwise
            skipped or left initialised and reported.
        optional: Each pattern names a block the source may lack entirely (e.g. an attention gate
            that an ImageNet trunk does not have); it is left initialised then. A source holding part
            of such a block must hold all of it.
        ignore: Source tensors to leave out (parts of the source network this one does not use).

    Returns:
        What was loaded, skipped and left initialised.

    Raises:
        BreakHisError: On the first tensor (in the network's order, then the file's) whose shape
            differs, that the source lacks or that the network has no place for; the message names
            the tensor, both shapes and the source.
    """
    head, optional, ignore = tuple(head), tuple(optional), tuple(ignore)
    own = module.state_dict()
    sd, dropped = strip_prefixes(state_dict, own.keys())
    present_blocks = {p for p in optional if any(fnmatchcase(k, p) for k in sd)}
    report = LoadReport(source=source, ignored=list(dropped))
    hint = (
        f"the file holds another architecture or other options; pass weights saved from {model_name} "
        "with the same options, or an ImageNet checkpoint of its trunk"
    )
    to_load: dict[str, torch.Tensor] = {}
    for key, own_tensor in own.items():
        if key in sd:
            if _shape(sd[key]) == _shape(own_tensor):
                to_load[key] = sd[key]
                report.loaded.append(key)
            elif _matches(key, head):
                report.skipped_head.append(key)
                report.left_initialised.append(key)
            else:
                raise BreakHisError(
                    f"{source}: tensor {key!r} has shape {_shape(sd[key])} in the file but "
                    f"{_shape(own_tensor)} in {model_name}; {hint}"
                )
        elif key.endswith("num_batches_tracked"):
            continue  # old BatchNorm checkpoints lack the counter; it is not a learned value
        elif _matches(key, head) or any(fnmatchcase(key, p) and p not in present_blocks for p in optional):
            report.left_initialised.append(key)
        else:
            raise BreakHisError(
                f"{source}: tensor {key!r} with shape {_shape(own_tensor)} in {model_name} is missing from "
                f"the file; {hint}"
            )
    for key, tensor in sd.items():
        if key in own:
            continue
        if _matches(key, head):
            report.skipped_head.append(key)
        elif _matches(key, ignore):
            report.ignored.append(key)
        else:
            raise BreakHisError(
                f"{source}: tensor {key!r} with shape {_shape(tensor)} in the file has no counterpart in "
                f"{model_name}; {hint}"
            )
    result = module.load_state_dict(to_load, strict=False)
    if result.unexpected_keys:  # cannot happen: every key was checked against module.state_dict()
        raise RuntimeError(f"unexpected keys after checking: {result.unexpected_keys}")
    return report


def save_weights(module: nn.Module, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``module.state_dict()`` to ``path`` (``.safetensors``, or a ``torch.save`` pickle otherwise).

    The file is written next to its final name and renamed, so an interrupted save leaves no partial file.

    Args:
        module: The network (a backbone, or a LightningModule holding one as ``backbone``).
        path: Destination ending in ``.pth``, ``.pt``, ``.bin`` or ``.safetensors``.
        overwrite: Replace an existing file.

    Returns:
        The path written.

    Raises:
        BreakHisError: Unknown suffix, or the file exists and ``overwrite`` is false.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES or suffix == ".ckpt":
        raise BreakHisError(f"{path}: unknown weights file type {suffix!r}; use .pth, .pt or .safetensors")
    if path.exists() and not overwrite:
        raise BreakHisError(f"{path}: already exists; remove it or choose another file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(partial))
    else:
        torch.save(state_dict, partial)
    partial.replace(path)
    return path


def download_error(name: str, exc: BaseException, where: str | None = None, suffix: str = ".pth") -> BreakHisError:
    """The one-line error for ImageNet weights that could not be fetched.

    Args:
        name: Architecture name (used in the suggested file name).
        exc: What the download raised.
        where: URL or hub page the weights come from, shown so they can be fetched elsewhere.
        suffix: Suffix of the suggested file name (the type the source serves).

    Returns:
        The error to raise.
    """
    from_where = f" (e.g. from {where})" if where else ""
    return BreakHisError(
        f"could not download ImageNet weights for {name} (no network? {type(exc).__name__}: {_one_line(exc, 120)}): "
        f"download them elsewhere{from_where} and pass {WEIGHTS_OPTION} /path/to/{name}{suffix}"
    )


def torchvision_imagenet_state_dict(weights: Any, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """Fetch torchvision ImageNet weights (from the torch hub cache, else by download).

    Args:
        weights: A torchvision ``WeightsEnum`` member, e.g. ``ResNet50_Weights.IMAGENET1K_V1``.
        name: Architecture name for messages.

    Returns:
        The state dict and its URL.

    Raises:
        BreakHisError: The download failed.
    """
    try:
        state_dict = weights.get_state_dict(progress=True)
    except Exception as exc:  # network, hash and cache errors all leave the user the same remedy
        raise download_error(name, exc, weights.url) from exc
    return dict(state_dict), str(weights.url)
