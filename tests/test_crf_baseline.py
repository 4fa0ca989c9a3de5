"""The CRF baseline for token classification, trained on a slice of People's Daily (seconds, both tasks)."""

from __future__ import annotations

import json

from benchmarks import crf_baseline
from ftcore.data.sources import read_peoples_daily
from ftcore.data.tagging import peoples_daily_cws, peoples_daily_ner, split_sentences
from ftcore.metrics import segmentation_scores, token_accuracy


def test_char_features_see_two_characters_either_side_and_the_sentence_ends():
    first, middle, last = (crf_baseline.char_features("中国１Ａ，")[i] for i in (0, 2, 4))
    assert first == ["bias", "type=cjk", "c[-2]=BOS", "c[-1]=BOS", "c[0]=中", "c[1]=国", "c[2]=１",
                     "c[-2,-1]=BOS|BOS", "c[-1,0]=BOS|中", "c[0,1]=中|国", "c[1,2]=国|１", "c[-1,1]=BOS|国"]  # fmt: skip
    assert "type=digit" in middle and "c[-1,1]=国|Ａ" in middle and "c[2]=，" in middle
    assert "type=punct" in last and "c[1]=EOS" in last and "c[1,2]=EOS|EOS" in last
    assert [crf_baseline.char_type(c) for c in "a５—℃"] == ["latin", "digit", "punct", "other"]


def test_crf_baseline_tags_entities_and_words_on_the_library_split(tmp_path):
    out = tmp_path / "crf.json"
    args = ["--c1", "0.05", "--c2", "0.01", "0.1", "--max-iterations", "30", "--max-train-sentences", "300"]
    args += ["--max-eval-sentences", "200"]
    records = crf_baseline.main([*args, "--json", str(out)])
    assert list(records) == ["ner", "cws"]
    for record in records.values():
        assert record["c1"] == 0.05 and record["c2"] in (0.01, 0.1)
        assert [(g["c1"], g["c2"]) for g in record["grid"]] == [(0.05, 0.01), (0.05, 0.1)]
        assert record["val"]["f1"] == max(g["val_f1"] for g in record["grid"])
        assert (record["train_sentences"], record["eval_sentences"]) == (300, 200)
        assert record["test"]["support"] > 0
        for split in ("val", "test"):
            scores = record[split]
            assert all(0 <= scores[k] <= 1 for k in ("precision", "recall", "f1", "token_accuracy"))
    ner, cws = records["ner"], records["cws"]
    assert set(ner["test"]["per_type"]) == {"LOC", "ORG", "PER"}
    assert ner["test"]["per_type"]["PER"]["support"] > 0 and 0.3 < ner["test"]["f1"] < 1
    # what tagging gets without learning anything: no entity at all, every character a word of its own
    corpus = read_peoples_daily()
    indices, _ = split_sentences(len(corpus))
    test = [corpus[i] for i in indices["test"][:200]]
    entities, words = [[s.tags for s in to_tags(test)] for to_tags in (peoples_daily_ner, peoples_daily_cws)]
    assert ner["test"]["token_accuracy"] > token_accuracy(entities, [["O"] * len(t) for t in entities]) + 0.01
    all_single = segmentation_scores(words, [["S"] * len(t) for t in words])
    assert cws["test"]["f1"] > all_single["f1"] + 0.3
    saved = json.loads(out.read_text())
    assert [r["task"] for r in saved] == ["ner", "cws"] and saved[1]["test"] == cws["test"]
    assert saved[0]["environment"]["versions"]["python-crfsuite"]
