"""castinspect: visual inspection of metal castings."""
__version__ = "0.1.0"
