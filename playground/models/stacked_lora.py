"""Mixed-adapter batches in two batched matmuls per layer, instead of PEFT's loop over adapters.

PEFT's `adapter_names` path loops over the adapters inside every LoRA layer (select rows, A, B, scale, scatter
back): on a CPU that per-op overhead, not arithmetic, is what a side-by-side step costs. As S-LoRA and Punica do,
we gather each row's A and B (scaling folded in) once per generate call into (batch, in, r) and (batch, r, out)
tensors; each layer then adds bmm(bmm(x, A_rows), B_rows) to the base layer's output. Rows on the bare base get
zeros. Same arithmetic as PEFT, in the adapter weights' dtype, as PEFT does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

BASE = "__base__"


def _lora_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    from peft.tuners.lora import Linear as LoraLinear

    return [m for m in model.modules() if isinstance(m, LoraLinear)]


def supported(model: torch.nn.Module) -> bool:
    """Plain LoRA on linear layers only; DoRA and other variants keep PEFT's own path."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora import Linear as LoraLinear

    for module in model.modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear) or module.lora_variant or module.fan_in_fan_out:
                return False
            if any(getattr(module, "lora_bias", {}).values()):
                return False
    return True


def _row_weights(layer, adapter_names: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(A_rows (batch, in, r), B_rows (batch, r, out)) for this layer, or None when no row uses an adapter here."""
    present = [name for name in adapter_names if name != BASE and name in layer.lora_A]
    if not present:
        return None
    rank = max(layer.lora_A[name].weight.shape[0] for name in present)
    reference = layer.lora_A[present[0]].weight
    batch = len(adapter_names)
    a_rows = torch.zeros(batch, layer.in_features, rank, dtype=reference.dtype, device=reference.device)
    b_rows = torch.zeros(batch, rank, layer.out_features, dtype=reference.dtype, device=reference.device)
    for row, name in enumerate(adapter_names):
        if name in present:
            a = layer.lora_A[name].weight  # (r, in)
            b = layer.lora_B[name].weight * layer.scaling[name]  # (out, r)
            a_rows[row, :, : a.shape[0]] = a.t()
            b_rows[row, : b.shape[1], :] = b.t()
    return a_rows, b_rows


def _stacked_forward(base_layer: torch.nn.Module, a_rows: torch.Tensor, b_rows: torch.Tensor):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = base_layer(x, *args, **kwargs)  # (B, T, out)
        delta = torch.bmm(torch.bmm(x.to(a_rows.dtype), a_rows), b_rows)  # (B, T, r) -> (B, T, out)
        return out.add_(delta.to(out.dtype))

    return forward


@contextmanager
def stacked_lora(model: torch.nn.Module, adapter_names: list[str]) -> Iterator[None]:
    """Within the block, the model's LoRA layers serve a batch whose row i uses adapter_names[i]."""
    patched = []
    try:
        for layer in _lora_linears(model):
            weights = _row_weights(layer, adapter_names)
            # Instance attributes shadow the class's forward; deleting them restores PEFT's.
            layer.forward = layer.base_layer.forward if weights is None else _stacked_forward(layer.base_layer, *weights)
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            del layer.forward
