"""The train_mmoe pipeline step (the model itself lives in the trainer package)."""
