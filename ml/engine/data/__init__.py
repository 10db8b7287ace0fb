"""Data: ISIC-format data sets, lesion-grouped splits, and decoding images for the model."""
