"""Data: ISIC-format data sets, lesion-grouped splits, and decoding images for the model.

``labels`` and ``readers`` read a data set into the model's class list, ``checks`` decodes and
subsets it, ``splits`` holds out a test split and makes folds (all torch-free); ``datasets`` is
the torch Dataset, ``images`` opens an upload for serving. Nothing is imported here, so web code
that needs ``images`` does not load torch.
"""
