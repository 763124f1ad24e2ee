"""The store: talking to the object store about objects (inspection, layouts, trailers, tags,
the per-process caches), over the upstream client and the key service."""
