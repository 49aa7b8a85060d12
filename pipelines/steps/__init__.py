"""The DAG steps, one module each (extract, build, train, validate, discoveries, rank, deploy,
canary), and ``adapters``: the functions the DAG tasks call, plain dicts in and out."""
