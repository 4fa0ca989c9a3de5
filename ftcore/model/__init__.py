"""The encoder, its heads (classification, masked-LM), a CRF layer for tagging and checkpoint I/O."""

from ftcore.model.bert import BertConfig, BertModel
from ftcore.model.crf import CRF
from ftcore.model.heads import MaskedLM, SequenceClassifier, TokenClassifier

__all__ = ["BertConfig", "BertModel", "CRF", "MaskedLM", "SequenceClassifier", "TokenClassifier"]
