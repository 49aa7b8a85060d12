"""The application: the ``alphaops`` command line, benchmarks, the doctor and the registry report."""
