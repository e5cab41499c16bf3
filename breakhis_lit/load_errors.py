"""Why a file could not be loaded with ``torch.load(weights_only=True)``, said plainly.

PyTorch's own messages run to several lines and advise ``weights_only=False``, which would run whatever code the
file holds; the package never gives that advice. These say what the file is instead.
"""

from __future__ import annotations

import pickle
import re
import zipfile

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def describe_load_error(err: BaseException) -> str:
    """One clause saying what is wrong with a file ``torch.load(weights_only=True)`` refused.

    Args:
        err: The exception ``torch.load`` raised.

    Returns:
        E.g. ``"it names my_project.Trainer, which is neither a tensor nor a plain container: ..."`` (see
        :func:`holds_objects`) or
        ``"truncated or damaged: its zip archive has no central directory"``.
    """
    text = str(err)
    if "weights only load failed" in text.lower() or "weightsunpickler" in text.lower():
        found = _GLOBAL.search(text)
        what = found.group(1) if found else "Python objects"
        return f"it names {what}, which is neither a tensor nor a plain container: unpickling it could run code"
    if "failed finding central directory" in text or isinstance(err, zipfile.BadZipFile):
        return "truncated or damaged: its zip archive has no central directory"
    if "_use_new_zipfile_serialization" in text or isinstance(err, pickle.UnpicklingError):
        return "not a file written by torch.save (no zip archive of tensors)"
    if isinstance(err, EOFError):
        return "truncated: it ends early"
    if isinstance(err, OSError):
        return f"unreadable ({err.strerror or type(err).__name__})"
    return f"not a PyTorch file ({type(err).__name__})"


def holds_objects(err: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused the file for holding objects other than tensors."""
    return describe_load_error(err).startswith("it names ")
