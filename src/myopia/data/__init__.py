"""Data: corpora and token windows for training and evaluation."""
