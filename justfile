# Contributor commands. `pip install -e '.[dev]'` brings `just` (the rust-just wheel);
# `just` alone lists these. Every recipe runs in the active virtualenv.

# List the recipes
default:
    @just --list --unsorted

# The README's test command: every test, real components included (sshd, moto, Slurm ...)
test *args:
    python -m pytest -q {{args}}

# Every test that starts no real component (no sshd, moto server, GraphQL server or Slurm)
test-fast *args:
    python -m pytest -q -m "not real" {{args}}

# ruff, then the layer contracts (import-linter) and the architecture checks
lint:
    ruff check trainctl_tui tests bench docs
    lint-imports
    python -m pytest -q tests/test_architecture.py

# Every benchmark, figures and ratios printed (several minutes: the monitor one parses 1 GB;
# multinode.py starts sshd and torch)
bench:
    python bench/startup.py
    python bench/monitor.py
    python bench/tail_latency.py
    python bench/checkpoints.py
    python bench/compare.py
    python bench/progress.py
    python bench/multinode.py
    python bench/gpu_sampling.py

# Re-export the README's screenshots from the app, then list the ones that changed
screenshots:
    TRAINCTL_HOME="$(mktemp -d)" python tests/export_screenshots.py
    git status --short screenshots/

# The bundled toy trainer, launched and watched in the TUI
demo:
    trainctl demo

# Start the tests' private Slurm cluster for trying things by hand (needs root, slurm-wlm, munge)
slurm-up dir="/tmp/trainctl-slurm":
    python tests/slurm_cluster.py up {{dir}}

# Stop it (its jobs are cancelled; the dir is kept)
slurm-down dir="/tmp/trainctl-slurm":
    python tests/slurm_cluster.py down {{dir}}

# What CI does on a clean clone: apt packages, a fresh .venv, the README's install and tests
ci:
    bash .ci/run
