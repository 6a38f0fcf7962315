"""Batch active learning: acquisitions over any zoo posterior and the labelling loop."""
