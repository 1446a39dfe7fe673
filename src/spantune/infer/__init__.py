"""Inference backends that share one contract: prompt module in, post-processing out."""
