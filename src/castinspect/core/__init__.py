"""The bottom layer, imported by every other: decoding photos (io, parallel), the decision rule,
the record of a judgement, the run configuration and the CPU set-up. Nothing here knows about
networks, datasets, servers or files of results."""

__version__ = "0.1.0"
