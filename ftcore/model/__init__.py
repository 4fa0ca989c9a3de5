"""The encoder, its heads (classification, masked-LM) and checkpoint I/O."""

from ftcore.model.bert import BertConfig, BertModel
from ftcore.model.heads import MaskedLM, SequenceClassifier

__all__ = ["BertConfig", "BertModel", "MaskedLM", "SequenceClassifier"]
