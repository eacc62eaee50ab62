"""Store adapters run through the shared contract, plus adapter-specific tests."""
