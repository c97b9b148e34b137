"""Runs sessions as Slurm batch jobs: the runner supervises the training inside the allocation."""
