"""Name resolution for DNS-enabled networks: records files, the resolver daemon, its control socket.

``records``: one file per network (names and addresses of its attachments); ``answer``: what a
query gets (dnslib for the wire format); ``server``: the daemon (UDP and TCP port 53 on each
network's gateway); ``control``: how plugins reload, start and stop it; ``upstreams``: the host's
resolvers, where other names are forwarded.
"""
