"""A small Docker-like runtime: containers in namespaces, attached through netkit's CNI plugins."""
