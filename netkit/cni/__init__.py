"""The CNI protocol: environment and config parsing, versions, results, errors, dispatch.

Nothing in this package imports kernel plumbing, so VERSION and the "about" text stay cheap.
"""
