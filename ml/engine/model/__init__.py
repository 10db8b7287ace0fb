"""The model: network, checkpoint format, diagnosis taxonomy, the transforms it was trained with."""
