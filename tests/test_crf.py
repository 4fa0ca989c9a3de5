"""ftcore.model.crf against brute-force enumeration of every tag path of tiny sentences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ftcore.model.crf import CRF, FORBIDDEN, bio_constraints, bmes_constraints

BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BMES_TAGS = ["B", "M", "E", "S"]


def random_crf(num_tags: int, generator: torch.Generator, constraints=()) -> CRF:
    crf = CRF(num_tags, *constraints)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return crf


def random_batch(num_tags: int, lengths: list[int], generator: torch.Generator, scale: float = 1.0):
    """Emissions (B, L, T), gold tags (B, L) with -100 on padding, mask (B, L)."""
    batch, max_len = len(lengths), max(lengths)
    emissions = scale * torch.randn(batch, max_len, num_tags, generator=generator)
    mask = torch.arange(max_len) < torch.tensor(lengths)[:, None]
    tags = torch.randint(num_tags, (batch, max_len), generator=generator).masked_fill(~mask, -100)
    return emissions, tags, mask


def path_score(
    crf: CRF, emissions: torch.Tensor, path: tuple[int, ...], begins: bool = True, ends: bool = True
) -> float:
    """s(y) of one sentence ``emissions (n, T)``, written out term by term in float64; a window that does
    not begin (end) its sentence has no start (end) term."""
    with torch.no_grad():
        transitions, start, end = (s.double() for s in crf._scores(1, None, None))
    score = (start[0, path[0]] if begins else 0.0) + (end[0, path[-1]] if ends else 0.0)
    score += sum(emissions[t, tag].double() for t, tag in enumerate(path))
    score += sum(transitions[a, b] for a, b in itertools.pairwise(path))
    return float(score)


def all_paths(
    crf: CRF, emissions: torch.Tensor, length: int, begins: bool = True, ends: bool = True
) -> dict[tuple[int, ...], float]:
    """Every one of the T^length paths of a sentence and its score."""
    return {
        path: path_score(crf, emissions[:length], path, begins, ends)
        for path in itertools.product(range(crf.num_tags), repeat=length)
    }


def log_sum_exp(values) -> float:
    values = list(values)
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@pytest.mark.parametrize("num_tags", [3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_log_partition_and_gold_score_equal_enumeration(num_tags, seed):
    g = torch.Generator().manual_seed(seed)
    crf = random_crf(num_tags, g)
    lengths = [4, 1, 3, 2]
    emissions, tags, mask = random_batch(num_tags, lengths, g, scale=2.0)

    log_z, score = crf.log_partition(emissions, mask), crf.score(emissions, tags, mask)
    for b, n in enumerate(lengths):
        paths = all_paths(crf, emissions[b], n)
        assert log_z[b].item() == pytest.approx(log_sum_exp(paths.values()), abs=1e-5)
        assert score[b].item() == pytest.approx(paths[tuple(tags[b, :n].tolist())], abs=1e-5)
    expected = score - log_z
    torch.testing.assert_close(crf.log_likelihood(emissions, tags, mask), expected)


def test_windows_that_do_not_begin_or_end_a_sentence_drop_those_scores_and_constraints():
    """A window in the middle of a long sentence may start with I-X: with ``begins`` False the start
    scores and the start constraint do not apply, with ``ends`` False neither do the end ones."""
    g = torch.Generator().manual_seed(7)
    names = ["O", "B-PER", "I-PER"]
    crf = CRF(3, *bio_constraints(names))
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.copy_(torch.randn(p.shape, generator=g))
    lengths = [3, 2, 3, 1]
    emissions, _, mask = random_batch(3, lengths, g, scale=2.0)
    tags = torch.tensor([[2, 2, 0], [2, 1, 0], [0, 1, 2], [2, 0, 0]])  # rows 0, 1 and 3 start with I-PER
    begins = torch.tensor([False, False, True, False])
    ends = torch.tensor([True, False, False, False])
    log_z = crf.log_partition(emissions, mask, begins, ends)
    likelihood = crf.log_likelihood(emissions, tags, mask, begins, ends)
    for b, n in enumerate(lengths):
        paths = all_paths(crf, emissions[b], n, bool(begins[b]), bool(ends[b]))
        assert log_z[b].item() == pytest.approx(log_sum_exp(paths.values()), abs=1e-4)
        gold = paths[tuple(tags[b, :n].tolist())]
        assert likelihood[b].item() == pytest.approx(gold - log_sum_exp(paths.values()), abs=1e-4)
    assert (likelihood > -100).all()  # an I-PER opening a window is a valid path there
    assert crf.log_likelihood(emissions, tags, mask)[0] < -1000  # but not at a sentence's start


@pytest.mark.parametrize("num_tags", [3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_viterbi_equals_the_brute_force_argmax(num_tags, seed):
    g = torch.Generator().manual_seed(100 + seed)
    crf = random_crf(num_tags, g)
    lengths = [2, 4, 1, 3, 4]
    emissions, _, mask = random_batch(num_tags, lengths, g, scale=2.0)

    decoded = crf.decode(emissions, mask)
    assert [len(path) for path in decoded] == lengths
    for b, n in enumerate(lengths):
        paths = all_paths(crf, emissions[b], n)
        assert tuple(decoded[b]) == max(paths, key=paths.get)


def test_an_untrained_crf_decodes_to_the_per_position_argmax():
    emissions, _, mask = random_batch(5, [6, 3], torch.Generator().manual_seed(0))
    decoded = CRF(5).decode(emissions, mask)
    assert decoded == [emissions[0].argmax(-1).tolist(), emissions[1, :3].argmax(-1).tolist()]


# ---------------------------------------------------------------------------------------------------
# constraints


def valid_bio(path: list[str]) -> bool:
    """I-X only after B-X or I-X."""
    previous = "O"
    for tag in path:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def bmes_is_well_formed(path: list[str]) -> bool:
    """B M* E and S words back to back: read the string with a tiny state machine."""
    open_word = False
    for tag in path:
        if tag in ("B", "S") and open_word or tag in ("M", "E") and not open_word:
            return False
        open_word = tag in ("B", "M")
    return not open_word


def test_bio_constraints_by_hand():
    allowed, start, end = bio_constraints(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    #                      to:  O  B-P  I-P  B-L  I-L
    assert allowed.int().tolist() == [
        [1, 1, 0, 1, 0],  # from O
        [1, 1, 1, 1, 0],  # from B-PER
        [1, 1, 1, 1, 0],  # from I-PER
        [1, 1, 0, 1, 1],  # from B-LOC
        [1, 1, 0, 1, 1],  # from I-LOC
    ]
    assert start.int().tolist() == [1, 1, 0, 1, 0]
    assert end.all()


def test_bmes_constraints_by_hand():
    allowed, start, end = bmes_constraints(["S", "B", "I", "E"])  # BIES, any order
    #                      to:  S  B  I  E
    assert allowed.int().tolist() == [
        [1, 1, 0, 0],  # from S
        [0, 0, 1, 1],  # from B
        [0, 0, 1, 1],  # from I (= M)
        [1, 1, 0, 0],  # from E
    ]
    assert start.int().tolist() == [1, 1, 0, 0]
    assert end.int().tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize(
    "make, names",
    [
        (bio_constraints, ["O", "B-PER", "PER"]),
        (bio_constraints, ["O", "B-"]),
        (bio_constraints, ["O", "E-PER"]),
        (bio_constraints, ["o"]),
        (bio_constraints, []),
        (bmes_constraints, ["B", "M", "E", "S", "O"]),
        (bmes_constraints, ["B-PER"]),
    ],
)
def test_unknown_tag_names_are_refused_in_one_line(make, names):
    with pytest.raises(ValueError) as error:
        make(names)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "names, make, is_valid",
    [(BIO_TAGS, bio_constraints, valid_bio), (BMES_TAGS, bmes_constraints, bmes_is_well_formed)],
)
def test_constrained_crf_gives_invalid_paths_no_probability(names, make, is_valid):
    num_tags = len(names)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        crf = random_crf(num_tags, g, make(names))
        emissions, _, mask = random_batch(num_tags, [4, 3, 1], g, scale=3.0)
        log_z = crf.log_partition(emissions, mask)
        for b, n in enumerate([4, 3, 1]):
            paths = all_paths(crf, emissions[b], n)
            valid = {p: s for p, s in paths.items() if is_valid([names[t] for t in p])}
            assert valid  # a valid path of every length exists
            # the valid paths carry all the probability; the largest invalid one is below e^-9000
            assert log_z[b].item() == pytest.approx(log_sum_exp(valid.values()), abs=1e-5)
            worst_invalid = max((s for p, s in paths.items() if p not in valid), default=-math.inf)
            assert worst_invalid - log_z[b].item() < FORBIDDEN * 0.9


@pytest.mark.parametrize(
    "names, make, is_valid",
    [(BIO_TAGS, bio_constraints, valid_bio), (BMES_TAGS, bmes_constraints, bmes_is_well_formed)],
)
def test_constrained_viterbi_never_returns_an_invalid_path(names, make, is_valid):
    num_tags = len(names)
    unconstrained_invalid = 0
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(1, 12, (16,), generator=g).tolist()
        emissions, _, mask = random_batch(num_tags, lengths, g, scale=5.0)
        constrained = random_crf(num_tags, g, make(names))
        for path in constrained.decode(emissions, mask):
            assert is_valid([names[t] for t in path]), [names[t] for t in path]
        unconstrained = CRF(num_tags)
        unconstrained.load_state_dict(constrained.state_dict())
        unconstrained_invalid += sum(
            not is_valid([names[t] for t in path]) for path in unconstrained.decode(emissions, mask)
        )
    assert unconstrained_invalid > 100  # the emissions alone would have produced invalid paths


def test_constraints_are_not_part_of_the_state_dict():
    crf = CRF(len(BIO_TAGS), *bio_constraints(BIO_TAGS))
    assert sorted(crf.state_dict()) == ["end", "start", "transitions"]


# ---------------------------------------------------------------------------------------------------
# training


def test_gradients_flow_and_padding_gets_none():
    g = torch.Generator().manual_seed(0)
    crf = random_crf(len(BIO_TAGS), g, bio_constraints(BIO_TAGS))
    emissions, tags, mask = random_batch(len(BIO_TAGS), [5, 2, 7], g)
    emissions.requires_grad_(True)
    loss = -crf.log_likelihood(emissions, tags, mask).mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in crf.named_parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(emissions.grad).all()
    assert (emissions.grad[~mask] == 0).all() and (emissions.grad[mask].abs().sum(-1) > 0).all()


def test_the_emission_gradient_is_marginal_minus_gold():
    """∂ log p(y) / ∂E[t, j] = 1[y_t = j] − p(y_t = j): the marginals, from the enumeration."""
    g = torch.Generator().manual_seed(3)
    crf = random_crf(3, g)
    emissions, tags, mask = random_batch(3, [4], g)
    emissions.requires_grad_(True)
    crf.log_likelihood(emissions, tags, mask).sum().backward()
    paths = all_paths(crf, emissions[0].detach(), 4)
    log_z = log_sum_exp(paths.values())
    marginals = torch.zeros(4, 3, dtype=torch.float64)
    for path, score in paths.items():
        marginals[range(4), list(path)] += math.exp(score - log_z)
    gold = torch.nn.functional.one_hot(tags[0], 3).double()
    torch.testing.assert_close(emissions.grad[0].double(), gold - marginals, atol=1e-5, rtol=0)


def test_bf16_emissions_are_computed_in_fp32():
    g = torch.Generator().manual_seed(0)
    crf = random_crf(len(BIO_TAGS), g, bio_constraints(BIO_TAGS))
    emissions, tags, mask = random_batch(len(BIO_TAGS), [30, 17], g, scale=3.0)
    half = emissions.bfloat16().requires_grad_(True)
    likelihood = crf.log_likelihood(half, tags, mask)
    assert likelihood.dtype == torch.float32
    torch.testing.assert_close(likelihood, crf.log_likelihood(half.detach().float(), tags, mask))
    likelihood.sum().backward()
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad.float()).all()
    assert crf.decode(half, mask) == crf.decode(half.detach().float(), mask)


def test_a_mask_that_is_not_a_prefix_is_refused():
    emissions, tags, mask = random_batch(3, [3, 3], torch.Generator().manual_seed(0))
    holes = mask.clone()
    holes[0, 1] = False
    empty = mask.clone()
    empty[1] = False
    for bad in (holes, empty):
        with pytest.raises(ValueError, match="prefix"):
            CRF(3).log_likelihood(emissions, tags, bad)
