"""The shared conformance suite: run it against any registered backend.

::

    pytest --pyargs anyxp.conformance --anyxp-backend NAME

Tests are driven by the capabilities the plugin declares: a test of an undeclared
capability is skipped, and a companion test checks that using it raises
:class:`anyxp.UnsupportedError`. A plugin that declares a capability it does not have
fails. Add ``--anyxp-comm mpi`` under ``mpiexec -n 2 python -m mpi4py -m pytest ...`` to
check collectives at size 2.
"""
