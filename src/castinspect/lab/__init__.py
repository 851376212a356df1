"""Measurements and showcases: the benchmark, the seeds' reference CNN, the learning curve, the demo."""
