"""Batched percentiles of masked rows, with NumPy's default (linear) interpolation.

Written here because ``torch.nanquantile`` refuses inputs above 2**24 elements and torch has no masked quantile.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def masked_percentile(values: Tensor, q: Sequence[float], mask: Tensor | None = None) -> Tensor:
    """Percentiles of each row of ``values`` over the entries where ``mask`` is true.

    Matches ``numpy.percentile(row[mask_row], q)`` (method ``"linear"``) row by row, without host reads: rows
    of any count are handled by one sort of the whole tensor.

    Args:
        values: ``[..., N]`` floats.
        q: Percentiles in [0, 100].
        mask: Boolean ``[..., N]`` (default: every entry).

    Returns:
        ``[..., len(q)]`` in ``values``' dtype; rows without a masked entry give 0.
    """
    n_total = values.shape[-1]
    if mask is None:
        count = torch.full(values.shape[:-1], n_total, device=values.device, dtype=torch.long)
        ordered = values.sort(dim=-1).values
    else:
        count = mask.sum(-1)
        ordered = values.masked_fill(~mask, torch.inf).sort(dim=-1).values  # unmasked entries sort last
    last = (count - 1).clamp_min(0)
    qs = torch.tensor([float(p) / 100.0 for p in q], dtype=torch.float64, device=values.device)
    pos = last.unsqueeze(-1).double() * qs
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, last.unsqueeze(-1))
    frac = (pos - lo.double()).to(values.dtype)
    v_lo = ordered.gather(-1, lo)
    v_hi = ordered.gather(-1, hi)
    out = v_lo + frac * (v_hi - v_lo)
    return torch.where(count.unsqueeze(-1) > 0, out, torch.zeros_like(out))
