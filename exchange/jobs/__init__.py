"""The hub side of AI assistance: the model registry, inference jobs and their leases, results."""
