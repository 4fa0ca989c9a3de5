"""The encoder, its classification heads and checkpoint I/O."""

from ftcore.model.bert import BertConfig, BertModel
from ftcore.model.heads import SequenceClassifier

__all__ = ["BertConfig", "BertModel", "SequenceClassifier"]
