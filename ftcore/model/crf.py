"""Linear-chain conditional random field over the tags of token positions (Lafferty et al., 2001).

A tag sequence y = (y_1 .. y_n) of a sentence with emission scores E (n, T) from the encoder scores

    s(y) = start[y_1] + Σ_t E[t, y_t] + Σ_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

and has probability p(y) = exp(s(y)) / Z with Z = Σ_{y'} exp(s(y')) over all T^n sequences. The forward
algorithm computes log Z in O(n·T²) by the recursion α_1 = start + E[1],
α_t[j] = logsumexp_i(α_{t-1}[i] + transitions[i, j]) + E[t, j], log Z = logsumexp_j(α_n[j] + end[j]);
Viterbi replaces logsumexp by max and keeps back-pointers to recover the best sequence.

Everything runs in fp32 (bf16 emissions are cast first): log Z of a long sentence is a large number that
bf16's 8-bit mantissa cannot hold to the precision the loss needs.
"""

from __future__ import annotations

import torch
from torch import nn

# Score added to a forbidden move. Large enough that a forbidden path never wins and its probability
# underflows to zero in fp32 (exp(-1e4) = 0), yet finite: -inf turns logsumexp's gradient into NaN
# wherever every term is forbidden.
FORBIDDEN = -1e4


class CRF(nn.Module):
    """Linear-chain CRF with learned transition, start and end scores, optionally constrained.

    Args:
        num_tags: T.
        allowed: ``(T, T)`` bool, ``allowed[i, j]`` says whether tag j may follow tag i; None allows all.
        allowed_start: ``(T,)`` bool, the tags a sentence may start with; None allows all.
        allowed_end: ``(T,)`` bool, the tags a sentence may end with; None allows all.

    Forbidden moves get the fixed score :data:`FORBIDDEN` on top of the learned one, so that neither the
    likelihood nor :meth:`decode` gives an invalid path any weight (see :func:`bio_constraints`,
    :func:`bmes_constraints`). Gold sequences must obey them too, or their log-likelihood is about
    −1e4: IOB1 data (CoNLL-2003 as released, where I-X may open an entity) needs converting to BIO. The constraints are non-persistent buffers: they follow from the tag
    names, which the run keeps, so checkpoints hold the learned scores only.

    Parameters start at zero, so an untrained CRF decodes to the per-position argmax of the emissions
    (among valid paths).

    Shapes of the inputs of every method: ``emissions (B, L, T)`` (any float dtype), ``tags (B, L)``
    int64, ``mask (B, L)`` bool, True on each row's real positions, a non-empty prefix.

    A row may be a piece of a longer sentence (a window): ``begins (B,)`` / ``ends (B,)`` bool say
    which rows start / end their sentence. The start (end) scores and constraints apply to those rows
    only; another row's first tag may be anything that can follow some tag, such as I-X. None: every
    row is a whole sentence.
    """

    def __init__(
        self,
        num_tags: int,
        allowed: torch.Tensor | None = None,
        allowed_start: torch.Tensor | None = None,
        allowed_end: torch.Tensor | None = None,
    ):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # (from, to)
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        for name, rule, shape in (
            ("transition_penalty", allowed, (num_tags, num_tags)),
            ("start_penalty", allowed_start, (num_tags,)),
            ("end_penalty", allowed_end, (num_tags,)),
        ):
            if rule is None:
                rule = torch.ones(shape, dtype=torch.bool)
            if rule.shape != shape or rule.dtype != torch.bool:
                raise ValueError(
                    f"{name} needs a bool tensor of shape {shape}, got {rule.dtype} {tuple(rule.shape)}"
                )
            self.register_buffer(name, torch.where(rule, 0.0, FORBIDDEN), persistent=False)

    def _scores(
        self, batch: int, begins: torch.Tensor | None, ends: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition (T, T), start (B, T) and end (B, T) scores with the constraints applied; rows that do
        not begin (end) their sentence get zero start (end) scores."""
        start = (self.start + self.start_penalty).expand(batch, -1)
        end = (self.end + self.end_penalty).expand(batch, -1)
        if begins is not None:
            start = torch.where(begins.bool().unsqueeze(1), start, 0.0)
        if ends is not None:
            end = torch.where(ends.bool().unsqueeze(1), end, 0.0)
        return self.transitions + self.transition_penalty, start, end

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
        begins: torch.Tensor | None = None, ends: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """s(y) of the given tag sequences, ``(B,)``. Tags at padded positions are ignored (any value)."""
        emissions, mask = _checked(emissions, mask)
        transitions, start, end = self._scores(len(emissions), begins, ends)
        tags = tags.masked_fill(~mask, 0)  # padding may hold an ignore index such as -100
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, L)
        moved = transitions[tags[:, :-1], tags[:, 1:]]  # (B, L-1): score of reaching position t >= 1
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)  # (B,)
        return (
            start.gather(1, tags[:, :1]).squeeze(1)
            + emitted.masked_fill(~mask, 0.0).sum(dim=1)
            + moved.masked_fill(~mask[:, 1:], 0.0).sum(dim=1)
            + end.gather(1, last.unsqueeze(1)).squeeze(1)
        )

    def log_partition(
        self, emissions: torch.Tensor, mask: torch.Tensor,
        begins: torch.Tensor | None = None, ends: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """log Z by the forward algorithm, ``(B,)``."""
        emissions, mask = _checked(emissions, mask)
        transitions, start, end = self._scores(len(emissions), begins, ends)
        alpha = start + emissions[:, 0]  # (B, T)
        for t in range(1, emissions.shape[1]):
            # (B, T_from, 1) + (T_from, T_to) -> logsumexp over T_from -> (B, T_to)
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)  # finished rows keep their α
        return torch.logsumexp(alpha + end, dim=1)

    def log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
        begins: torch.Tensor | None = None, ends: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """log p(tags) = s(tags) − log Z, ``(B,)``; the training loss is its negated mean (or sum)."""
        return self.score(emissions, tags, mask, begins, ends) - self.log_partition(
            emissions, mask, begins, ends
        )

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag sequence of each row (Viterbi), as B lists of their real length.

        Returns Python lists because what follows (tag names, metrics) works on variable-length
        sequences.
        """
        emissions, mask = _checked(emissions, mask)
        transitions, start, end = self._scores(len(emissions), None, None)
        best = start + emissions[:, 0]  # (B, T): best score of a path ending in each tag
        back = []  # back[t-1][b, j]: the tag at t-1 on the best path that reaches tag j at t
        for t in range(1, emissions.shape[1]):
            step, came_from = (best.unsqueeze(2) + transitions).max(dim=1)  # (B, T_to)
            best = torch.where(mask[:, t : t + 1], step + emissions[:, t], best)
            back.append(came_from)
        lengths = mask.sum(dim=1)
        tag = (best + end).argmax(dim=1)  # (B,): the last tag of each best path
        path = torch.zeros_like(mask, dtype=torch.long)
        for t in range(emissions.shape[1] - 1, 0, -1):
            real = t < lengths  # rows still inside their sentence at t; the others keep their last tag
            path[:, t] = tag
            tag = torch.where(real, back[t - 1].gather(1, tag.unsqueeze(1)).squeeze(1), tag)
        path[:, 0] = tag
        return [row[:n] for row, n in zip(path.tolist(), lengths.tolist())]


def _checked(emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Emissions in at least fp32 and the mask as bool; each row's mask must be a non-empty prefix."""
    if emissions.ndim != 3 or mask.shape != emissions.shape[:2]:
        raise ValueError(
            f"emissions (B, L, T) and mask (B, L) disagree: {tuple(emissions.shape)}, {tuple(mask.shape)}"
        )
    mask = mask.bool()
    if not (mask[:, 0].all() and (mask[:, 1:] <= mask[:, :-1]).all()):
        raise ValueError("each row of the CRF mask must be True on a non-empty prefix and False after it")
    return emissions.to(torch.promote_types(emissions.dtype, torch.float32)), mask  # bf16/fp16 -> fp32


# ---------------------------------------------------------------------------------------------------
# constraints from tag names


def bio_constraints(tag_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(allowed, allowed_start, allowed_end)`` for BIO (IOB2) tags: ``O``, ``B-X``, ``I-X``.

    I-X may only follow B-X or I-X of the same type X, so a sentence cannot start with I-X; everything
    else is allowed. Raises ValueError for any other tag name.
    """
    kinds = []  # (prefix, type) per tag
    for name in tag_names:
        prefix, dash, kind = name.partition("-")
        if name != "O" and not (prefix in ("B", "I") and dash and kind):
            raise ValueError(f"BIO tag names are O, B-<type> or I-<type>, got {name!r}")
        kinds.append((prefix, kind))

    def may_follow(prev: tuple[str, str] | None, tag: tuple[str, str]) -> bool:
        return tag[0] != "I" or (prev is not None and prev[0] in ("B", "I") and prev[1] == tag[1])

    return _constraints(kinds, may_follow, may_end=lambda tag: True)


def bmes_constraints(tag_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(allowed, allowed_start, allowed_end)`` for word-segmentation tags BMES (or BIES, I for M).

    B begins a word, M continues it, E ends it, S is a one-character word: B → M|E, M → M|E, E → B|S,
    S → B|S; a sentence starts with B|S and ends with E|S. Raises ValueError for any other tag name.
    """
    kinds = []
    for name in tag_names:
        if name not in ("B", "M", "I", "E", "S"):
            raise ValueError(f"segmentation tag names are B, M (or I), E and S, got {name!r}")
        kinds.append("M" if name == "I" else name)

    def may_follow(prev: str | None, tag: str) -> bool:
        inside = prev in ("B", "M")  # a word is open
        return tag in ("M", "E") if inside else tag in ("B", "S")

    return _constraints(kinds, may_follow, may_end=lambda tag: tag in ("E", "S"))


def _constraints(kinds: list, may_follow, may_end) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three masks from ``may_follow(prev, tag)`` (prev None at the start) and ``may_end(tag)``."""
    if not kinds:
        raise ValueError("constraints need at least one tag name")
    allowed = torch.tensor([[may_follow(prev, tag) for tag in kinds] for prev in kinds], dtype=torch.bool)
    allowed_start = torch.tensor([may_follow(None, tag) for tag in kinds], dtype=torch.bool)
    allowed_end = torch.tensor([may_end(tag) for tag in kinds], dtype=torch.bool)
    return allowed, allowed_start, allowed_end


def crf_for_tags(tag_names: list[str], scheme: str | None) -> CRF:
    """A CRF over ``tag_names`` with the moves of ``scheme`` ruled out: ``bio`` (:func:`bio_constraints`),
    ``bmes`` (:func:`bmes_constraints`), or None / ``none`` for a tag set without a scheme (any move)."""
    constraints = {"bio": bio_constraints, "bmes": bmes_constraints}.get(scheme or "none")
    return CRF(len(tag_names), *(constraints(tag_names) if constraints else ()))
