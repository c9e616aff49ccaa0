"""Data: CIFAR formats and download, image folders and archives, decoding, augmentation, batches."""
