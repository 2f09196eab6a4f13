"""The torch side of the encoder: padded windows -> transformer -> one vector
per spaCy token.

`EncoderInputs` is the one object that crosses from thinc to torch: the
layout of pieces.py (numpy) as tensors on the encoder's device.
`PieceEncoder` runs the transformer call by call, keeps the rows the layout
asks for and pools them into tokens.
"""
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch

from .pieces import PieceLayout


@dataclass
class EncoderInputs:
    """One batch of docs, laid out for the transformer (see pieces.layout_pieces).

    H is the transformer's hidden size, R the number of rows the layout reads
    (one per token with pooling "first", one per word piece with "mean").

    batches: per encoder call, (input ids [B, L], attention mask [B, L]), int64.
    selections: per call, the rows of its hidden states [B * L, H] to keep
        (int64), so that each call's full states can be dropped as it returns.
    gather [R]: for each output row, its index into the concatenation of the
        calls' selected rows.
    token_index [R] or None: the output token of each row (pooling "mean";
        tokens numbered across the batch of docs); None for pooling "first",
        where R == n_tokens.
    n_tokens: spaCy tokens in the batch of docs.
    """

    batches: List[Tuple[torch.Tensor, torch.Tensor]]
    selections: List[torch.Tensor]
    gather: torch.Tensor
    token_index: Optional[torch.Tensor]
    n_tokens: int

    @classmethod
    def from_layout(cls, layout: PieceLayout, device: torch.device) -> "EncoderInputs":
        """The layout's arrays as tensors on `device` (no copy on the CPU)."""

        def as_tensor(array) -> torch.Tensor:
            return torch.from_numpy(array).to(device)

        return cls(
            batches=[(as_tensor(ids), as_tensor(mask)) for ids, mask in layout.batches],
            selections=[as_tensor(rows) for rows in layout.selections],
            gather=as_tensor(layout.gather),
            token_index=None if layout.token_index is None else as_tensor(layout.token_index),
            n_tokens=layout.n_tokens,
        )


class PieceEncoder(torch.nn.Module):
    """Transformer over padded windows, pooled to one vector per spaCy token."""

    # A transformers PreTrainedModel (AutoModel). Typed Any: the fields of its
    # config (hidden_size) are not known to a type checker.
    transformer: Any

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, inputs: EncoderInputs) -> torch.Tensor:
        """RETURNS [inputs.n_tokens, H]: one vector per spaCy token. Without
        gradients (prediction), in torch's inference mode."""
        with torch.inference_mode(not torch.is_grad_enabled()):
            return self._forward(inputs)

    def _forward(self, inputs: EncoderInputs) -> torch.Tensor:
        hidden_size = self.transformer.config.hidden_size
        n_tokens = inputs.n_tokens
        # Each call's full hidden states are dropped as soon as its rows are
        # read: holding them all until the end made every call allocate fresh
        # memory, which cost about a tenth of the encoder's time on CPU.
        parts = [
            self.transformer(input_ids=ids, attention_mask=mask)
            .last_hidden_state.reshape(-1, hidden_size)
            .index_select(0, rows)
            for (ids, mask), rows in zip(inputs.batches, inputs.selections)
        ]
        if not parts:
            return self.transformer.get_input_embeddings().weight.new_zeros((n_tokens, hidden_size))
        rows = (torch.cat(parts) if len(parts) != 1 else parts[0]).index_select(0, inputs.gather)
        token_index = inputs.token_index
        if token_index is None:
            return rows
        summed = rows.new_zeros((n_tokens, rows.shape[1])).index_add_(0, token_index, rows)
        counts = torch.bincount(token_index, minlength=n_tokens).clamp_(min=1)
        return summed / counts.unsqueeze(1).to(summed.dtype)
