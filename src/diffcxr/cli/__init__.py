"""The ``diffcxr`` command line: a thin layer over the library (see :mod:`diffcxr.cli.main`)."""
