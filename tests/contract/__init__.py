"""Contract suites for the ports: importable by every adapter's tests (and out-of-tree ones)."""
