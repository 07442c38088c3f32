"""The plugins anyxp ships; each registers through the ``anyxp`` entry-point group.

Each folder has an ``__init__`` that only declares specs (cheap to import) and a
``_backend``/``_comm`` module, named by the spec's factory, that imports the library.
"""
