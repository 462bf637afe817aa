"""The firewall layer: per-attachment rule groups, two backends (nftables, legacy iptables), one per host.

Plugins describe what an attachment needs (a ``RuleGroup``); a backend turns it into rules in
netkit's own table or chains, atomically, and removes exactly that group later by its derived name.
"""
