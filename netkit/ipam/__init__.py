"""host-local style address management: config, the on-disk lease store, allocation."""
