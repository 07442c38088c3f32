"""anyxp backend for pydata/sparse."""
