"""Kernel plumbing: namespaces, links, addresses, routes, sysctls, derived names."""
