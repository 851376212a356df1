"""How good a model is: metrics, evaluation on labelled photos, the line-variation suite, reports."""
