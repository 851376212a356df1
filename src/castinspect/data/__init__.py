"""Labelled photos: datasets (folders, manifests), augmentation, photos of one part (parts),
splits that keep a part on one side, and the dataset audit."""
