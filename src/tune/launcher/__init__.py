"""One machine, one distributed sweep: a tracking server, a keras-tuner chief and its workers.

`supervisor` runs and watches the processes, `resources` places them (ports, GPUs, CPU
threads, each one's environment), `processes` makes the chief's and workers' specs,
`server` is the `mlflow server` they all record to.
The command is `python -m tune.launch` (see `tune.cli.launch`).
"""
