"""Token classification: sentences as rows with one prediction per word, the head and its CRF loss,
whole-sentence decoding across windows, training end to end with every method, scripts and HF parity."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FILLER, NEGATIVE, POSITIVE, run_script

from ftcore.config import (
    Config,
    ConfigError,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    TrainerConfig,
)
from ftcore.data.long_text import window_starts
from ftcore.data.tagging import TagSpace, collate_rows, encode_sentences, row_labels
from ftcore.data.tokenizer import TextTokenizer
from ftcore.model import BertModel
from ftcore.model.crf import crf_for_tags
from ftcore.model.heads import IGNORE_INDEX, TokenClassifier, labelled_positions
from ftcore.train.experiment import train
from ftcore.train.task import predict_tags

WORDS = [
    "unaffable",
    "running",
    "x",
    "Zürich",
    "tokenization",
    "a",
    "co-operate",
    "42",
    "the",
    "hyperparameters",
]


def random_sentences(n: int, seed: int, longest: int = 30) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.choices(WORDS, k=rng.randint(1, longest)) for _ in range(n)]


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_dir) -> TextTokenizer:
    return TextTokenizer.from_dir(minilm_dir)


# ---------------------------------------------------------------------------------------------------
# rows


@pytest.mark.parametrize("max_length, stride", [(8, None), (8, 1), (8, 6), (16, 5), (512, None)])
def test_every_word_is_predicted_once_at_its_first_sub_token(minilm_tokenizer, max_length, stride):
    sentences = random_sentences(40, seed=max_length + (stride or 0))
    rows = encode_sentences(minilm_tokenizer, sentences, max_length, stride)
    whole = minilm_tokenizer.encode_words(sentences)
    assert rows.encoded.lengths.max() <= max_length
    assert (np.diff(rows.sentence) >= 0).all() and set(rows.sentence) == set(range(len(sentences)))
    for s, (ids, word_of) in enumerate(whole):
        mine = np.flatnonzero(rows.sentence == s)
        predicted = []
        for r in mine:
            row_ids, _ = rows.encoded[r]
            words = rows.word[rows.encoded.offsets[r] : rows.encoded.offsets[r + 1]]
            assert row_ids[0] == minilm_tokenizer.cls_id and row_ids[-1] == minilm_tokenizer.sep_id
            assert words[0] == -1 and words[-1] == -1
            for p in np.flatnonzero(words >= 0):
                first = int(np.flatnonzero(word_of == words[p])[0])  # the word's first sub-token
                assert row_ids[p] == ids[first]
                predicted.append(int(words[p]))
        assert sorted(predicted) == list(range(len(sentences[s])))  # each word once, none lost
        assert rows.begins[mine].tolist() == [True] + [False] * (len(mine) - 1)
        assert rows.ends[mine].tolist() == [False] * (len(mine) - 1) + [True]
    if max_length == 512:
        assert len(rows) == len(sentences)  # everything fits: one row per sentence


def test_a_word_is_predicted_where_it_has_the_most_context(minilm_tokenizer):
    """Windows overlap; the one that predicts a token is, up to rounding, the one where it sits furthest
    from a cut edge (a sentence's own start and end are no cut)."""
    sentences = random_sentences(30, seed=3, longest=60)
    budget, stride = 10, 4
    rows = encode_sentences(minilm_tokenizer, sentences, budget + 2, stride)
    for s, (ids, _) in enumerate(minilm_tokenizer.encode_words(sentences)):
        n = len(ids)
        starts = window_starts(n, budget, stride)
        mine = np.flatnonzero(rows.sentence == s)
        assert len(mine) == len(starts)

        def margin(position: int, start: int, n: int = n) -> float:
            left = np.inf if start == 0 else position - start
            right = np.inf if start + budget >= n else start + budget - 1 - position
            return min(left, right)

        for start, r in zip(starts, mine):
            words = rows.word[rows.encoded.offsets[r] + 1 : rows.encoded.offsets[r + 1] - 1]
            assert (rows.encoded[r][0][1:-1] == ids[start : start + budget]).all()
            for position in start + np.flatnonzero(words >= 0):
                best = max(margin(position, other) for other in starts if other <= position < other + budget)
                assert margin(position, start) >= best - 1


def test_row_labels_put_each_tag_at_its_word(minilm_tokenizer):
    sentences = random_sentences(20, seed=5)
    tags = [np.arange(len(s), dtype=np.int64) % 3 for s in sentences]
    rows = encode_sentences(minilm_tokenizer, sentences, 10)
    labels = row_labels(rows, tags)
    sentence_of = np.repeat(rows.sentence, rows.encoded.lengths)
    predicts = rows.word >= 0
    assert (labels[~predicts] == IGNORE_INDEX).all()
    expected = [tags[s][w] for s, w in zip(sentence_of[predicts], rows.word[predicts])]
    assert labels[predicts].tolist() == expected
    batch = collate_rows(rows, np.arange(len(rows)), labels, pad_to_multiple=8)
    assert batch["labels"].shape == batch["input_ids"].shape == batch["words"].shape
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == sum(len(s) for s in sentences)


def test_a_word_that_yields_no_token_is_read_as_unk(minilm_tokenizer):
    ((ids, words),) = minilm_tokenizer.encode_words([["running", "\x00", "\u200b", "x"]])
    assert words.tolist() == [0, 1, 2, 3]
    assert ids[1] == ids[2] == minilm_tokenizer.unk_id


# ---------------------------------------------------------------------------------------------------
# the head


def test_logits_equal_transformers_bert_for_token_classification(minilm_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    from ftcore.model.checkpoint_io import export_hf_token_classifier

    model = TokenClassifier.from_pretrained(minilm_dir, num_tags=5).eval()
    model.encoder.add_tokens(3, init="random")
    export_hf_token_classifier(model, tmp_path, {i: f"T{i}" for i in range(5)})
    theirs = transformers.BertForTokenClassification.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, model.encoder.config.vocab_size, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        ours, reference = model(ids, mask), theirs(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=1e-5)
    assert theirs.config.id2label[4] == "T4"


def test_crf_loss_is_the_sentence_likelihood_per_labelled_word(tiny_config):
    names = ["O", "B-X", "I-X"]
    model = TokenClassifier(BertModel(tiny_config), 3, crf=crf_for_tags(names, "bio"))
    with torch.no_grad():
        for p in model.head.crf.parameters():
            p.normal_()
    logits = torch.randn(2, 7, 3)
    labels = torch.full((2, 7), IGNORE_INDEX)
    labels[0, [1, 2, 4]] = torch.tensor([1, 2, 0])  # positions 3 and 5 are later sub-tokens
    labels[1, [1, 2]] = torch.tensor([2, 2])  # a window that opens inside an entity
    begins, ends = torch.tensor([True, False]), torch.tensor([True, True])
    loss = model.loss(logits, labels, begins, ends)
    crf = model.head.crf
    first = crf.log_likelihood(
        logits[0:1, [1, 2, 4]], torch.tensor([[1, 2, 0]]), torch.ones(1, 3, dtype=torch.bool)
    )
    second = crf.log_likelihood(
        logits[1:2, [1, 2]], torch.tensor([[2, 2]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([False])
    )
    torch.testing.assert_close(loss, -(first + second).sum() / 5)
    assert loss.item() < 50  # I-X opening a window is allowed there
    gathered, mask, tags = labelled_positions(logits, labels != IGNORE_INDEX, labels)
    assert mask.sum(1).tolist() == [3, 2] and tags[0].tolist() == [1, 2, 0]
    torch.testing.assert_close(gathered[0], logits[0, [1, 2, 4]])


def test_cross_entropy_loss_reads_labelled_positions_only(tiny_config):
    model = TokenClassifier(BertModel(tiny_config), 4)
    logits = torch.randn(2, 5, 4)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, IGNORE_INDEX, 3], [IGNORE_INDEX, 0] + [IGNORE_INDEX] * 3])
    expected = torch.nn.functional.cross_entropy(
        logits[labels != IGNORE_INDEX], labels[labels != IGNORE_INDEX]
    )
    torch.testing.assert_close(model.loss(logits, labels), expected)


@pytest.mark.parametrize("crf", [False, True])
def test_a_batch_with_nothing_to_predict_has_zero_loss_and_a_graph(tiny_config, crf):
    model = TokenClassifier(
        BertModel(tiny_config), 3, crf=crf_for_tags(["O", "B-X", "I-X"], "bio") if crf else None
    )
    logits = torch.randn(2, 4, 3, requires_grad=True)
    loss = model.loss(logits, torch.full((2, 4), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


class IdTagger(TokenClassifier):
    """Logits that depend on the token id alone: tag = id mod num_tags, whatever the window."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return 10.0 * torch.nn.functional.one_hot(input_ids % self.num_labels, self.num_labels).float()


@pytest.mark.parametrize("crf", [False, True])
def test_long_sentences_are_decoded_whole_across_windows(minilm_tokenizer, tiny_config, crf):
    sentences = random_sentences(25, seed=9, longest=80)
    rows = encode_sentences(minilm_tokenizer, sentences, max_length=10, stride=3)
    assert np.bincount(rows.sentence).max() > 5  # long sentences really are cut
    model = IdTagger(
        BertModel(tiny_config), 5, crf=crf_for_tags([str(i) for i in range(5)], None) if crf else None
    )
    predicted, loss = predict_tags(model, rows, batch_size=7, device=torch.device("cpu"), precision="fp32")
    assert loss is None
    for (ids, word_of), tags in zip(minilm_tokenizer.encode_words(sentences), predicted):
        firsts = ids[np.r_[0, np.flatnonzero(np.diff(word_of)) + 1]]
        assert tags == (firsts % 5).tolist()


# ---------------------------------------------------------------------------------------------------
# training end to end on a synthetic CoNLL corpus


def write_conll(path: Path, n: int, seed: int, tag_of_unknown: str | None = None) -> Path:
    """POS entities: "very <positive>" is one two-word entity, a positive word alone a one-word one;
    NEG: every negative word; filler is O. Entity boundaries need the left context."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.2:
                lines += ["very B-POS", f"{rng.choice(POSITIVE)} I-POS"]
            elif r < 0.35:
                lines.append(f"{rng.choice(POSITIVE)} B-POS")
            elif r < 0.5:
                lines.append(f"{rng.choice(NEGATIVE)} B-NEG")
            else:
                lines.append(f"{rng.choice([w for w in FILLER if w != 'very'])} O")
        blocks.append("\n".join(lines))
    if tag_of_unknown:
        blocks.append(f"good {tag_of_unknown}")
    path.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(blocks) + "\n")
    return path


@pytest.fixture(scope="module")
def conll_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conll")
    return {
        "train": write_conll(root / "train.txt", 160, seed=1),
        "validation": write_conll(root / "dev.txt", 40, seed=2),
        "test": write_conll(root / "test.txt", 40, seed=3),
    }


def tagging_config(model_dir, data, **changes) -> Config:
    cfg = Config(
        model=ModelConfig(path=str(model_dir)),
        data=DataConfig(name="conll", problem="token_classification", train_file=str(data["train"]),
                        validation_file=str(data["validation"]), test_file=str(data["test"]), max_length=16),
        optim=OptimConfig(lr=1e-2, warmup_ratio=0.1),
        trainer=TrainerConfig(epochs=8, batch_size=8, eval_batch_size=16, precision="fp32", device="cpu",
                              progress=False, log_every=50),
    )  # fmt: skip
    for key, value in changes.items():
        group, name = key.split("__")
        setattr(getattr(cfg, group), name, value)
    return cfg


@pytest.mark.parametrize("crf", [False, True])
def test_a_tagger_learns_the_entities_of_a_synthetic_corpus(tiny_model_dir, conll_data, tmp_path, crf):
    """Far above chance either way (all-O scores 0). Whether a positive word begins an entity or continues
    one after "very" needs the word before it, which the tiny random encoder learns slowly on its own;
    the CRF's BIO constraints settle it (I-POS cannot follow O), so with them the score is near perfect."""
    cfg = tagging_config(tiny_model_dir, conll_data, model__crf=crf)
    metrics = train(cfg, tmp_path / "run")
    assert metrics["metric"] == "entity_f1"
    test = metrics["test"]
    assert test["entity_f1"] > (0.9 if crf else 0.75) and test["token_accuracy"] > (0.9 if crf else 0.8)
    assert set(test["per_type"]) == {"NEG", "POS"} and test["per_type"]["POS"]["support"] > 0
    tags = TagSpace.load(tmp_path / "run" / "labels.json")
    assert tags.scheme == "bio" and tags.names[0] == "O"


@pytest.mark.parametrize("method", ["full", "freeze", "bitfit", "lora", "dora", "prefix", "prompt"])
def test_every_method_trains_a_tagger(tiny_model_dir, conll_data, tmp_path, method):
    cfg = tagging_config(tiny_model_dir, conll_data, trainer__epochs=1, data__max_train_samples=40,
                         method__name=method)  # fmt: skip
    cfg.method = MethodConfig(name=method, num_virtual_tokens=4)
    metrics = train(cfg, tmp_path / "run")
    assert 0.0 <= metrics["test"]["entity_f1"] <= 1.0 and np.isfinite(metrics["test"]["loss"])
    assert metrics["test"]["entity_support"] > 0


def test_tagging_config_errors_name_the_key(tiny_model_dir, conll_data):
    with pytest.raises(ConfigError, match="data.problem=token_classification"):
        DataConfig(name="peoples_daily_ner").validate()
    with pytest.raises(ConfigError, match="data.long_text"):
        DataConfig(
            name="conll", problem="token_classification", train_file="x", long_text="windows"
        ).validate()
    with pytest.raises(ConfigError, match="data.problem=token_classification reads"):
        DataConfig(name="csv", problem="token_classification", train_file="x").validate()


def test_scripts_predict_evaluate_and_export_a_tagger(tiny_model_dir, conll_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    run_dir = tmp_path / "run"
    train(tagging_config(tiny_model_dir, conll_data, model__crf=True), run_dir)

    source = tmp_path / "in.txt"
    source.write_text("it was very good and the phone is bad\n\nawful   screen\n")
    done = run_script("predict.py", f"run_dir={run_dir}", f"input={source}", "trainer.threads=1")
    assert done.returncode == 0, done.stderr
    first, empty, last = (json.loads(line) for line in done.stdout.splitlines())
    text = first["text"]
    assert first["tokens"] == text.split() and len(first["tags"]) == len(first["tokens"])
    assert {(e["type"], text[e["start"] : e["end"]]) for e in first["entities"]} == {
        ("POS", "very good"),
        ("NEG", "bad"),
    }
    assert all(e["text"] == text[e["start"] : e["end"]] for e in first["entities"])
    assert empty["tags"] == [] and last["entities"] == [
        {"text": "awful", "type": "NEG", "start": 0, "end": 5}
    ]
    lines = tmp_path / "in.jsonl"
    records = [{"tokens": ["the", "phone", "is", "bad"]}, {"text": "very nice"}]
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = run_script("predict.py", f"run_dir={run_dir}", f"input={lines}", "trainer.threads=1")
    assert done.returncode == 0, done.stderr
    given, text = (json.loads(line) for line in done.stdout.splitlines())
    assert given["text"] == "the phone is bad"
    assert given["entities"] == [{"text": "bad", "type": "NEG", "start": 13, "end": 16}]
    assert text["tokens"] == ["very", "nice"] and text["entities"][0]["text"] == "very nice"
    lines.write_text(json.dumps({"tokens": "not a list"}) + "\n")
    done = run_script("predict.py", f"run_dir={run_dir}", f"input={lines}")
    assert done.returncode == 2 and f"{lines}:1" in done.stderr and "'tokens'" in done.stderr

    done = run_script("evaluate.py", f"run_dir={run_dir}", f"file={conll_data['test']}", "format=conll",
                      "trainer.threads=1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entity_f1"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["test"]["entity_f1"]
    )

    out = tmp_path / "hf"
    done = run_script("export.py", f"run_dir={run_dir}", "format=hf", f"out={out}")
    assert done.returncode == 0, done.stderr
    assert "crf.safetensors" in done.stdout and (out / "crf.safetensors").is_file()
    theirs = transformers.BertForTokenClassification.from_pretrained(out).eval()
    from ftcore.train.experiment import load_run

    ours = load_run(run_dir).model.eval()
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask)[mask.bool()], theirs(input_ids=ids, attention_mask=mask).logits[mask.bool()],
                                   atol=1e-5, rtol=1e-5)  # fmt: skip

    done = run_script("export.py", f"run_dir={run_dir}", "format=ftcore", f"out={tmp_path / 'ftcore'}")
    assert done.returncode == 0, done.stderr
    from ftcore.methods.adapters import load_classifier

    standalone = load_classifier(tmp_path / "ftcore").eval()
    assert isinstance(standalone, TokenClassifier) and standalone.head.crf is not None
    for name, tensor in ours.head.crf.named_buffers():  # the BIO constraints, rebuilt from labels.json
        torch.testing.assert_close(dict(standalone.head.crf.named_buffers())[name], tensor)
    torch.testing.assert_close(standalone.head.crf.transitions, ours.head.crf.transitions)
    with torch.no_grad():
        torch.testing.assert_close(standalone(ids, mask), ours(ids, mask))

    done = run_script("export.py", f"run_dir={run_dir}", "format=peft", f"out={tmp_path / 'peft'}")
    assert done.returncode == 2 and "token classifier" in done.stderr and "Traceback" not in done.stderr


def test_a_tagger_with_bigram_embeddings_trains_reloads_and_exports_as_ftcore_only(
    tiny_model_dir, conll_data, tmp_path
):
    from ftcore.methods.adapters import load_classifier
    from ftcore.train.experiment import load_run

    run_dir = tmp_path / "run"
    cfg = tagging_config(tiny_model_dir, conll_data, model__bigrams=True, model__bigram_min_freq=2,
                         model__bigram_dim=8, model__crf=True)  # fmt: skip
    cfg.method = MethodConfig(name="lora", r=4)
    metrics = train(cfg, run_dir)
    assert metrics["test"]["entity_f1"] > 0.9
    log = (run_dir / "train.log").read_text()
    assert "bigram embeddings: " in log and "token bigrams seen at least 2 times" in log
    run = load_run(run_dir)
    bigrams = run.model.encoder.embeddings.bigrams
    tokenizer = run.tokenizer
    very, good = tokenizer.token_id("very"), tokenizer.token_id("good")
    assert int(bigrams.rows(torch.tensor([[very, good]]))[0, 0]) > 0  # "very good" is a frequent pair
    assert bigrams.project.weight.abs().sum() > 0  # it trained (it starts at zero), under lora
    assert run.model.encoder.embeddings.word.weight.requires_grad is False

    ids = torch.tensor([[2, very, good, 5, 3], [2, good, very, 3, 0]])
    mask = (ids != 0).long()
    done = run_script("export.py", f"run_dir={run_dir}", "format=ftcore", f"out={tmp_path / 'ftcore'}")
    assert done.returncode == 0, done.stderr
    standalone = load_classifier(tmp_path / "ftcore").eval()
    with torch.no_grad():
        torch.testing.assert_close(standalone(ids, mask), run.model(ids, mask))
        without = run.model.encoder.embeddings.bigrams
        run.model.encoder.embeddings.bigrams = None
        assert not torch.allclose(standalone(ids, mask), run.model(ids, mask))  # they count
        run.model.encoder.embeddings.bigrams = without
    done = run_script("export.py", f"run_dir={run_dir}", "format=hf", f"out={tmp_path / 'hf'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr and not (tmp_path / "hf").exists()
    assert "format=hf has no place for the run's bigram embeddings" in done.stderr.strip().splitlines()[-1]

    source = tmp_path / "in.txt"
    source.write_text("it was very good and the phone is bad\n")
    done = run_script("predict.py", f"run_dir={run_dir}", f"input={source}", "trainer.threads=1")
    assert done.returncode == 0, done.stderr
    assert {e["text"] for e in json.loads(done.stdout)["entities"]} >= {"very good", "bad"}


@pytest.mark.parametrize("classifier_dropout", [None, 0.2])
def test_model_dropout_keys_reach_the_encoder_and_the_head_unless_its_own_is_given(
    tiny_model_dir, conll_data, classifier_dropout
):
    from ftcore.train.experiment import build_model

    cfg = tagging_config(tiny_model_dir, conll_data, model__hidden_dropout=0.0, model__attention_dropout=0.05,
                         model__classifier_dropout=classifier_dropout)  # fmt: skip
    tags = TagSpace("bio", ["O", "B-POS", "I-POS"])
    model = build_model(cfg, tiny_model_dir, tags, TextTokenizer.from_dir(tiny_model_dir))
    encoder = model.encoder
    assert encoder.config.hidden_dropout_prob == 0.0 and encoder.config.attention_probs_dropout_prob == 0.05
    assert {layer.dropout.p for layer in encoder.layers} | {encoder.embeddings.dropout.p} == {0.0}
    assert {layer.attention.dropout_p for layer in encoder.layers} == {0.05}
    assert model.head.dropout.p == (0.0 if classifier_dropout is None else classifier_dropout)
    cfg.model.hidden_dropout = None
    kept = build_model(cfg, tiny_model_dir, tags, TextTokenizer.from_dir(tiny_model_dir))
    assert kept.encoder.config.hidden_dropout_prob == 0.1  # the file's


def test_an_unknown_tag_in_the_test_file_is_one_line_naming_file_and_line(
    tiny_model_dir, conll_data, tmp_path
):
    bad = write_conll(tmp_path / "test.txt", 5, seed=4, tag_of_unknown="B-MISC")
    done = run_script(
        "train.py", f"model.path={tiny_model_dir}", "data=conll", f"data.train_file={conll_data['train']}",
        f"data.validation_file={conll_data['validation']}", f"data.test_file={bad}", "trainer.device=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert str(bad) in message and "'B-MISC'" in message and "Traceback" not in done.stderr
    line = len(bad.read_text().splitlines())
    assert f":{line}" in message


def test_presets_harness_and_report_show_a_tagging_run(tiny_model_dir, conll_data, tmp_path):
    from benchmarks import presets, report

    out = tmp_path / "tagging.json"
    args = [
        f"model.path={tiny_model_dir}", "data=conll", f"data.train_file={conll_data['train']}",
        f"data.validation_file={conll_data['validation']}", f"data.test_file={conll_data['test']}",
        "data.max_length=16", "data.max_train_samples=40", "trainer.epochs=1", "trainer.precision=fp32",
        "trainer.device=cpu", "trainer.batch_size=8", "trainer.threads=1",
    ]  # fmt: skip
    (record,) = presets.main(["full", *args, "--json", str(out), "--work-dir", str(tmp_path)])
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert record["metric"] == "entity_f1" and record["test"]["entity_f1"] == metrics["test"]["entity_f1"]
    assert record["test"]["per_type"] == metrics["test"]["per_type"] and "accuracy" not in record["test"]
    baseline = {
        "kind": "tagging_baseline", "task": "ner", "baseline": "a CRF", "c1": 0.05, "c2": 0.01,
        "val": {"f1": 0.5}, "test": {"f1": 0.25}, "train_seconds": 60.0, "environment": record["environment"],
    }  # fmt: skip
    out.write_text(json.dumps([record, baseline]))
    text = report.main([str(out)])
    test = record["test"]
    assert (
        f"| entity_f1 | {record['val']['entity_f1']:.4f} | {test['entity_f1']:.4f} | "
        f"{test['entity_precision']:.4f} / {test['entity_recall']:.4f} | {test['token_accuracy']:.4f} |"
    ) in text
    assert "Classical baseline, ner: a CRF (c1=0.05, c2=0.01, picked on validation): val entity F1 0.5000, " \
           "test entity F1 0.2500 (trained in 1.0 min)." in text  # fmt: skip
