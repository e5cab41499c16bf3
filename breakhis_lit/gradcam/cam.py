"""Grad-CAM heat maps of any backbone that follows the model contract, safe to call at any point of a run."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn


class PredictedClassTarget:
    """Grad-CAM target: the logit of the class the model predicts for the sample (its arg-max)."""

    def __call__(self, model_output: Tensor) -> Tensor:
        """Select the largest logit of one sample's output (``[C]``) or of each row of ``[B, C]``."""
        if model_output.ndim == 1:
            return model_output[model_output.argmax()]
        return model_output.gather(-1, model_output.argmax(-1, keepdim=True)).squeeze(-1)


class _GradCAM(GradCAM):
    """``GradCAM`` whose context manager releases its hooks without swallowing ``IndexError``.

    pytorch-grad-cam's ``__exit__`` prints and suppresses an ``IndexError`` (e.g. a target class out of
    range), which would leave the caller without a result and without an error.
    """

    def __exit__(self, exc_type: object, exc_value: object, exc_tb: object) -> bool:
        self.activations_and_grads.release()
        return False


def _as_float(transform: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    """Wrap a reshape transform so that activations and gradients reach numpy as float32 (not bf16/fp16)."""

    def apply(tensor: Tensor) -> Tensor:
        if transform is not None:
            tensor = transform(tensor)
        return tensor.float()

    return apply


@contextlib.contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Restore the model's train/eval modes, ``requires_grad`` flags and ``.grad`` tensors on exit.

    Inside, no parameter requires a gradient (the gradient flows from the input instead), so the
    backward pass neither writes into ``.grad`` nor fires gradient hooks (DDP's reducer, for one), and
    the gradients a training step has accumulated so far are set aside untouched (``GradCAM`` calls
    ``model.zero_grad()``).
    """
    modes = [(module, module.training) for module in model.modules()]
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    try:
        for p in params:
            p.grad = None
            p.requires_grad_(False)
        yield
    finally:
        for p, (requires_grad, grad) in zip(params, saved, strict=True):
            p.requires_grad_(requires_grad)
            p.grad = grad
        for module, training in modes:
            module.training = training


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast for ``device`` (mixed precision makes Grad-CAM gradients coarse and unstable)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _no_cudnn_autotuning() -> Iterator[None]:
    """Turn cuDNN benchmark off, restored on exit: Grad-CAM's few passes would autotune kernels for new shapes.

    Autotuning times every candidate kernel of each new input shape (its batch, its size), which costs more than
    the handful of passes it would speed up, and would add those shapes' choices to the training's cache.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _eager() -> contextlib.AbstractContextManager:
    """Run ``torch.compile``-d modules eagerly: hooks and a changed ``requires_grad`` would recompile them."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None or "torch._dynamo" not in sys.modules:
        return contextlib.nullcontext()  # nothing was compiled (and importing dynamo takes seconds)
    return set_stance("force_eager")


def compute_cams(
    model: nn.Module,
    images: Tensor,
    targets: Sequence[int] | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, Tensor]:
    """Grad-CAM heat maps and class probabilities of a batch of images.

    Uses the layers of ``model.gradcam_target_layers()`` and the transform of
    ``model.gradcam_reshape_transform()`` (token sequences to ``[B, C, h, w]``). Safe inside ``fit`` (the
    train/eval modes, ``requires_grad`` flags and accumulated ``.grad`` of the model are restored) and
    inside ``validate``/``test``/``predict`` (which run under ``torch.inference_mode``); autocast and cuDNN's
    autotuning (``torch.backends.cudnn.benchmark``) are off inside and restored after, and the inputs take the
    dtype of the model's parameters.

    Args:
        model: A backbone mapping normalised images ``[B, 3, H, W]`` to logits ``[B, C]``.
        images: Normalised float images ``[N, 3, H, W]`` on any device (moved to the model's).
        targets: Class index to explain for each image; ``None`` explains the predicted class.
        batch_size: Images per forward/backward pass.

    Returns:
        Heat maps ``[N, H, W]`` (float32 numpy, each scaled to ``[0, 1]``) and softmax probabilities
        ``[N, C]`` (float32, on the CPU).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be normalised float tensors, got {images.dtype}; normalise them first")
    if targets is not None:
        targets = [int(t) for t in targets]
        if len(targets) != len(images):
            raise ValueError(f"got {len(targets)} targets for {len(images)} images")
        num_classes = getattr(model, "num_classes", None)
        bad = [t for t in targets if t < 0 or (num_classes is not None and t >= num_classes)]
        if bad:
            raise ValueError(f"target classes {sorted(set(bad))} out of range for {num_classes} classes")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    height, width = images.shape[-2:]
    if len(images) == 0:
        return np.zeros((0, height, width), np.float32), torch.zeros(0, getattr(model, "num_classes", 0))

    cams: list[np.ndarray] = []
    probs: list[Tensor] = []
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        _no_autocast(device),
        _no_cudnn_autotuning(),
        _eager(),
        _preserved(model),
        _GradCAM(
            model=model,
            target_layers=model.gradcam_target_layers(),
            reshape_transform=_as_float(model.gradcam_reshape_transform()),
        ) as cam,
    ):
        for start in range(0, len(images), batch_size):
            # clone(): a copy made outside inference mode, so that autograd accepts it.
            x = images[start : start + batch_size].detach().to(device=device, dtype=dtype).clone()
            x.requires_grad_(True)
            if targets is None:
                batch_targets = [PredictedClassTarget()] * len(x)
            else:
                batch_targets = [ClassifierOutputTarget(t) for t in targets[start : start + len(x)]]
            cams.append(cam(input_tensor=x, targets=batch_targets))
            probs.append(cam.outputs.detach().float().softmax(dim=-1).cpu())
            cam.outputs = None  # frees the retained graph before the next batch
    heat = np.nan_to_num(np.concatenate(cams).astype(np.float32, copy=False), nan=0.0)
    return np.clip(heat, 0.0, 1.0), torch.cat(probs)
