"""Training: the fit (``train``) and a run end to end in its run directory (``run``)."""
