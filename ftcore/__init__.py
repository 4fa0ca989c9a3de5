"""ftcore: readable, fast fine-tuning of BERT-style encoders for text classification."""

__version__ = "0.1.0"
