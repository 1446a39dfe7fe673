"""Datasets for span correction: real human edits, typed synthetic errors, hygiene, splits, stats.

``spantune data build`` turns corpora into train/eval span JSONL; every example goes through one
path (:func:`spantune.data.spans.make_example`) so real and synthetic examples look alike to the
model: whole-word spans of 1–6 words, contexts clipped by :mod:`spantune.prompt`.
"""
