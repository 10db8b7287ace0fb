"""Training as plain functions, in the style of torchvision's classification references."""
