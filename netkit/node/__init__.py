"""``netkit node``: netkit as a Kubernetes node's network.

A long-lived process that learns every node's InternalIP and pod subnets (from a nodes file or the
Kubernetes API), writes this node's conflist, keeps one route per other node's pod subnet, and
reports readiness.  ``model.py`` holds the facts, ``filesource.py`` and ``apisource.py`` where they
come from, ``conflist.py`` and ``routes.py`` what is made of them, ``daemon.py`` the loop.
"""
