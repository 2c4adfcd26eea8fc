"""``grad_norm``: the gradient norms Lightning's docs log in ``on_before_optimizer_step``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def grad_norm(module: nn.Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, Tensor]:
    """Each parameter's gradient p-norm, and their total as if all gradients were one vector.

    Keys are Lightning's (``grad_2.0_norm/layer.weight``, ``grad_2.0_norm_total``), so dashboards
    built on them keep working; ``group_separator`` puts the per-parameter norms in their own
    logger group. Parameters without a gradient are left out; no gradients at all gives ``{}``.
    """
    norm = float(norm_type)
    if norm <= 0:
        raise ValueError(f"`norm_type` must be a positive number or 'inf' (infinity norm). Got {norm}")
    norms = {
        f"grad_{norm}_norm{group_separator}{name}": param.grad.data.norm(norm)
        for name, param in module.named_parameters()
        if param.grad is not None
    }
    if norms:
        norms[f"grad_{norm}_norm_total"] = torch.tensor(list(norms.values())).norm(norm)
    return norms
