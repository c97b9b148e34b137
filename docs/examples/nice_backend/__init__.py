"""The smallest real backend: runs on this machine at a lower CPU priority (`nice`).
docs/architecture.md walks through it; tests/test_backend_example.py runs it."""
