"""everstore.models: typed objects stored as namespaces of the log (issue 9)."""
