"""Ray actors, the training driver and the `treadle` command line.

The only package that imports ray, and only lazily, inside the functions that need it,
so `treadle verify` and `treadle data` start at once.
"""
