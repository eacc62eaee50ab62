"""The application layer: one use case per module, each run inside one store transaction."""
