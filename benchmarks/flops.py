"""Model FLOPs of a training step, counted from the architecture (2 FLOPs per multiply-add).

Per token and layer the forward pass costs

    dense       2 · (4H² + 2HI)     query, key, value, output projections and the feed-forward
    attention   2 · 2LH             Q·Kᵀ and P·V over L keys

and the head 2H² + 2HC (pooler, classifier) once per sequence. A head that reads one token ([CLS], the
pooler) needs less of the last layer: its keys and values for every token (2 · 2H²), but its query,
output projection, feed-forward and attention for that one token per sequence; ftcore computes just
that (``first_token_only``), transformers the whole layer, so the count is the work the job needs. In
the backward pass, a layer that gradients flow through costs its dense part once more (input gradients)
plus twice its attention part (both operands of Q·Kᵀ and P·V come from activations); a layer whose
weights train adds its dense part again (weight gradients). Gradients flow down to the lowest layer
holding a trainable tensor; the lowest of those layers skips the input gradient of its query/key/value
projection when nothing below it trains (frozen embeddings, no soft prompt), as autograd does. So full
fine-tuning costs about 3× the forward pass and a frozen base with small adapters about 2× (adapter
matmuls are small and not counted).

Each side is counted for the work it does: ``first_token_head=True`` for ftcore's one-token last layer,
``False`` for transformers, which computes the whole last layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcore.model.bert import BertConfig


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per token of one training step."""

    forward: float
    backward: float

    @property
    def total(self) -> float:
        return self.forward + self.backward


# Methods under which something below the lowest encoder layer trains (so the gradient reaches its input):
# every weight, the bias of the embeddings' LayerNorm, a soft prompt at the input.
INPUT_TRAINS = ("full", "bitfit", "prompt")


def step_flops_per_token(
    cfg: BertConfig,
    seq_len: int,
    num_labels: int,
    method: str,
    freeze_layers: int = 0,
    first_token_head: bool = True,
) -> StepFlops:
    """FLOPs per token of one training step (forward + backward) for a fine-tuning ``method``."""
    N, H, ffn, L = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, seq_len
    qkv = [2 * 3 * H * H] * N  # per layer, bottom to top: query, key, value projections
    rest = [2 * (H * H + 2 * H * ffn)] * N  # attention output projection, feed-forward
    attention = [2 * 2 * L * H] * N
    if first_token_head and N:
        qkv[-1] = 2 * 2 * H * H + 2 * H * H / L  # keys and values of every token, the query of one
        rest[-1] /= L
        attention[-1] /= L
    dense = [a + b for a, b in zip(qkv, rest)]
    head = (2 * H * H + 2 * H * num_labels) / L
    if method == "full":
        through, trained = N, N
    elif method == "freeze":
        through = trained = N - freeze_layers
    else:  # a frozen base: gradients pass every layer, no base weight gets one
        through, trained = N, 0
    forward = sum(dense) + sum(attention) + head
    top = range(N - through, N)  # the layers gradients flow through
    backward = sum(dense[i] + 2 * attention[i] for i in top) + sum(dense[N - trained :]) + 2 * head
    if through and (method not in INPUT_TRAINS or through < N):
        backward -= qkv[N - through]  # nothing below needs the input gradient of the lowest such layer
    return StepFlops(forward, backward)
