"""HF-format checkpoint files in and out, as configs and tensors: this module builds no model (bert.py and
heads.py do, from what it reads) and imports nothing of ftcore above ``errors`` and ``files``.

HF names are mapped to ours with one table, used in both directions:

    encoder.layer.3.attention.self.query.weight  <->  layers.3.attention.query.weight

Loading is strict: every tensor the model needs must be present with the right shape, and anything
left over is reported (the next-sentence head and the ``position_ids`` buffer are ignored; the masked-LM
head ``cls.predictions.*`` is passed on to whoever reads it, ``MaskedLM``). Weights
are read from safetensors only; pickled ``pytorch_model.bin`` files need ``allow_pickle=True`` and are
then read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ftcore.errors import CheckpointError, ConfigError
from ftcore.files import save_json, save_safetensors

# (HF name, ftcore name); {i} is a layer index, {p} is weight or bias.
NAME_TABLE = [
    ("embeddings.word_embeddings.weight", "embeddings.word.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type.weight"),
    ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
    ("encoder.layer.{i}.attention.self.query.{p}", "layers.{i}.attention.query.{p}"),
    ("encoder.layer.{i}.attention.self.key.{p}", "layers.{i}.attention.key.{p}"),
    ("encoder.layer.{i}.attention.self.value.{p}", "layers.{i}.attention.value.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attention.out.{p}"),
    ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "layers.{i}.attention_norm.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.ffn.up.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "layers.{i}.ffn.down.{p}"),
    ("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.ffn_norm.{p}"),
    ("pooler.dense.{p}", "pooler.dense.{p}"),
]
# BERT's masked-LM head (``cls.predictions.decoder`` is tied to the word embeddings and not stored)
MLM_HEAD_TABLE = [
    ("cls.predictions.transform.dense.{p}", "head.dense.{p}"),
    ("cls.predictions.transform.LayerNorm.{p}", "head.norm.{p}"),
    ("cls.predictions.bias", "head.bias"),
]
# the next-sentence head and a non-weight buffer
IGNORED_HF_PREFIXES = ("cls.seq_relationship.", "embeddings.position_ids")
# config.json key of a vocabulary grown by ftcore: ids from here on are added tokens (``embeddings.added``)
# that train under frozen-base methods; transformers reads the key as an ordinary attribute
ADDED_VOCAB_KEY = "ftcore_added_vocab_start"
HF_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
WEIGHTS = "model.safetensors"


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(pattern + r"\Z")


_HF_TO_OURS = [(_compile(hf), ours) for hf, ours in NAME_TABLE]
_OURS_TO_HF = [(_compile(ours), hf) for hf, ours in NAME_TABLE]


def _translate(name: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in table:
        m = pattern.match(name)
        if m:
            return template.format(**m.groupdict())
    return None


def hf_to_ftcore_name(name: str) -> str | None:
    """HF encoder tensor name (without ``bert.``; ``gamma``/``beta`` accepted) -> ftcore name, or None."""
    name = re.sub(r"LayerNorm\.gamma\Z", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta\Z", "LayerNorm.bias", name)
    return _translate(name, _HF_TO_OURS)


def ftcore_to_hf_name(name: str) -> str | None:
    """ftcore encoder tensor name -> HF name (without ``bert.``), or None."""
    return _translate(name, _OURS_TO_HF)


def read_weights(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of an HF-format directory -> (state dict, description of the source for messages).

    Looks for ``model.safetensors``, then a sharded ``model.safetensors.index.json``, then (only with
    ``allow_pickle``) ``pytorch_model.bin``.
    """
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: no such model directory; expected an HF-format folder with config.json"
        )
    single, index, pickled = root / WEIGHTS, root / "model.safetensors.index.json", root / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(single), str(single)
        if index.is_file():
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(load_file(root / shard))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise CheckpointError(f"{index}: shards lack tensors listed in weight_map: {_short(missing)}")
            return state, str(index)
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"{root}: cannot read safetensors weights ({e})") from None
    if pickled.is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{pickled}: only pickled weights found; convert to model.safetensors or pass allow_pickle=True "
                "(read with torch.load(weights_only=True))"
            )
        try:
            return torch.load(pickled, map_location="cpu", weights_only=True), str(pickled)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
            raise CheckpointError(f"{pickled}: cannot read weights ({e})") from None
    raise CheckpointError(
        f"{root}: no weights found; expected model.safetensors (or model.safetensors.index.json)"
    )


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def split_hf_state(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """HF state -> (encoder tensors under ftcore names, other top-level tensors (``classifier.*``,
    ``cls.predictions.*``), unknown names)."""
    encoder, other, unknown = {}, {}, []
    for name, tensor in state.items():
        bare = name[len("bert.") :] if name.startswith("bert.") else name
        if bare.startswith(IGNORED_HF_PREFIXES):
            continue
        ours = hf_to_ftcore_name(bare)
        if ours is not None:
            encoder[ours] = tensor
        elif name.startswith(("classifier.", "cls.predictions.")):
            other[name] = tensor
        else:
            unknown.append(name)
    return encoder, other, unknown


def load_state_strict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, dtype=None
) -> None:
    """Copy ``state`` into ``model``, or raise one CheckpointError listing every mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [
        f"{k} (file {list(state[k].shape)} vs model {list(expected[k].shape)})"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label}: {_short(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
        if names
    ]
    if problems:
        raise CheckpointError(f"{source} does not match the model; " + "; ".join(problems))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state, strict=True, assign=on_meta)


def read_config(path: str | os.PathLike) -> dict:
    """A JSON config file as a dict (one-line errors naming the file)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; expected an HF-format config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return d


def read_hf_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[dict, dict, dict, str]:
    """An HF-format directory -> (config.json as a dict, encoder tensors under ftcore names, other
    top-level tensors such as ``classifier.*``, the weights' source for messages)."""
    root = Path(path)
    if not (root / "config.json").is_file():
        what = "has no config.json" if root.is_dir() else "is not a directory"
        raise CheckpointError(
            f"{root} {what}; expected an HF-format model folder (config.json + model.safetensors)"
        )
    config = read_config(root / "config.json")
    state, source = read_weights(path, allow_pickle)
    encoder, other, unknown = split_hf_state(state)
    if unknown:
        raise CheckpointError(f"{source} does not match the model; unexpected: {_short(sorted(unknown))}")
    return config, encoder, other, source


def _hf_encoder_state(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Encoder tensors under HF names; added-token rows join the word-embedding table."""
    if encoder.prefix is not None or encoder.prompt is not None:
        raise CheckpointError(
            "prefix and prompt tuning have no HF-format equivalent; export in peft or ftcore format"
        )
    if encoder.embeddings.bigrams is not None:
        raise CheckpointError(
            "bigram embeddings (model.bigrams) have no HF-format equivalent; export in ftcore format"
        )
    state = dict(encoder.state_dict())
    if "embeddings.added.weight" in state:
        state["embeddings.word.weight"] = torch.cat(
            [state["embeddings.word.weight"], state.pop("embeddings.added.weight")]
        )
    out = {}
    for name, tensor in state.items():
        hf = ftcore_to_hf_name(name)
        if hf is None:
            raise CheckpointError(
                f"cannot export tensor {name!r} to HF format; merge adapters into the model first"
            )
        out[hf] = tensor
    return out


def save_bert(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write an encoder as an HF-format ``BertModel`` directory (config.json + model.safetensors)."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    save_safetensors(_hf_encoder_state(model), root / WEIGHTS, metadata={"format": "pt"})
    save_json({"architectures": ["BertModel"], **_hf_config(model)}, root / "config.json")


def _hf_config(encoder: torch.nn.Module) -> dict:
    """The encoder's config.json entries, with where its added tokens start when it has any."""
    config = encoder.config.to_dict()
    if encoder.num_added_tokens:
        config[ADDED_VOCAB_KEY] = encoder.embeddings.word.num_embeddings
    return config


def mlm_head_from_hf(other: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``cls.predictions.*`` tensors of a checkpoint under ftcore names (``head.*``); empty if none.

    The output bias is ``cls.predictions.bias``, or its copy ``cls.predictions.decoder.bias`` in files
    that keep only that one; the decoder weight is the word-embedding table (see ``MaskedLM``)."""
    other = dict(other)
    if "cls.predictions.bias" not in other and "cls.predictions.decoder.bias" in other:
        other["cls.predictions.bias"] = other["cls.predictions.decoder.bias"]
    table = [(_compile(hf), ours) for hf, ours in MLM_HEAD_TABLE]
    found = {}
    for name, tensor in other.items():
        ours = _translate(name, table)
        if ours is not None:
            found[ours.removeprefix("head.")] = tensor
    return found


def export_masked_lm(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write a ``MaskedLM`` as an HF ``BertForMaskedLM`` directory (config.json + model.safetensors):
    ``bert.*`` (pooler included when the encoder has one, so ``BertForSequenceClassification`` starts
    from it) and ``cls.predictions.*``; the decoder is the word-embedding table, as in BERT."""
    state = {"bert." + k: v for k, v in _hf_encoder_state(model.encoder).items()}
    table = [(_compile(ours), hf) for hf, ours in MLM_HEAD_TABLE]
    for name, tensor in model.head.state_dict().items():
        state[_translate("head." + name, table)] = tensor
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    save_safetensors(state, root / WEIGHTS, metadata={"format": "pt"})
    save_json({"architectures": ["BertForMaskedLM"], **_hf_config(model.encoder)}, root / "config.json")


def export_hf(
    model: torch.nn.Module, path: str | os.PathLike, id2label: dict[int, str] | None = None
) -> None:
    """Write a ``SequenceClassifier`` as an HF ``BertForSequenceClassification`` directory (config.json +
    model.safetensors).

    Only ``pooling='pooler'`` has an HF equivalent. Adapters must be merged into plain weights first.
    """
    if model.pooling != "pooler":
        raise CheckpointError(
            f"HF export needs pooling='pooler' (BertForSequenceClassification pools that way); this model uses "
            f"pooling={model.pooling!r}: export it in ftcore format instead"
        )
    _write_classifier(model, path, "BertForSequenceClassification", id2label,
                      problem_type=HF_PROBLEM_TYPES[model.problem])  # fmt: skip


def _write_classifier(
    model: torch.nn.Module, path: str | os.PathLike, architecture: str, id2label: dict[int, str] | None,
    **config_entries,
) -> None:  # fmt: skip
    """config.json + model.safetensors of an HF BERT classifier: ``bert.*`` (the encoder) and
    ``classifier.*`` (the head's linear layer)."""
    state = {"bert." + k: v for k, v in _hf_encoder_state(model.encoder).items()}
    state.update({f"classifier.{k}": v for k, v in model.head.classifier.state_dict().items()})
    labels = id2label or {i: f"LABEL_{i}" for i in range(model.num_labels)}
    config = {
        "architectures": [architecture],
        **_hf_config(model.encoder),
        "classifier_dropout": model.classifier_dropout,
        **config_entries,
        "id2label": {str(i): str(name) for i, name in labels.items()},
        "label2id": {str(name): i for i, name in labels.items()},
    }
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    save_safetensors(state, root / WEIGHTS, metadata={"format": "pt"})
    save_json(config, root / "config.json")


def export_hf_token_classifier(
    model: torch.nn.Module, path: str | os.PathLike, id2label: dict[int, str] | None = None
) -> None:
    """Write a ``TokenClassifier`` as an HF ``BertForTokenClassification`` directory (config.json +
    model.safetensors): the encoder without pooler, and ``classifier.*``. A CRF has no place there: its
    scores are left out (the caller keeps them in ftcore format). Adapters must be merged first."""
    _write_classifier(model, path, "BertForTokenClassification", id2label)
