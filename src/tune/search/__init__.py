"""The sweep: `run_sweep`, keras-tuner tuners that record trials, tuner projects and their locks, memory."""
