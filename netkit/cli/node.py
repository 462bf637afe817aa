"""``netkit node``: netkit as a Kubernetes node's network (netkit.node), until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from netkit.cli.shared import fail, require_root


@click.command()
@click.option("--nodes-file", metavar="FILE", default=None,
              help="The cluster's nodes as YAML/JSON (re-read when it changes) instead of the Kubernetes API.")
@click.option("--kubeconfig", metavar="FILE", default=None,
              help="Reach the Kubernetes API with this kubeconfig (default: the pod's in-cluster credentials).")
@click.option("--node-name", envvar="NODE_NAME", required=True, metavar="NAME",
              help="This node's name (a DaemonSet passes spec.nodeName as NODE_NAME).")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True, metavar="DIR",
              help="Where 10-netkit.conflist is written.")
@click.option("--ipam-dir", default="", metavar="DIR",
              help="Where the pods' leases are kept (the conflist's ipam dataDir; default: netkit-ipam's, "
                   "/var/lib/cni/networks).")
@click.option("--ready-file", default="/run/netkit/node.ready", show_default=True, metavar="FILE",
              help="Written once pods can be networked, removed on exit (for a readiness probe).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True, metavar="SECONDS",
              help="How often the nodes file is checked for a change.")
@click.option("--resync", type=click.FloatRange(min=0.01), default=30.0, show_default=True, metavar="SECONDS",
              help="How often the last facts are applied again (a route deleted by hand comes back).")
@click.option("--cluster-cidr", "cluster_cidrs", multiple=True, metavar="CIDR",
              help="The cluster's pod network (one per family): pod traffic leaving it is masqueraded. "
                   "None given: nothing is masqueraded.")
@click.option("--firewall-backend", type=click.Choice(["nftables", "iptables"]), default=None,
              help="Where the masquerade rule goes (default: as the host's iptables command).")
def node(nodes_file: str | None, kubeconfig: str | None, node_name: str, conf_dir: str, ipam_dir: str, ready_file: str,
         interval: float, resync: float, cluster_cidrs: tuple[str, ...], firewall_backend: str | None) -> None:
    """Keep this node's conflist and the routes to every other node's pod subnet (logs each change)."""
    import ipaddress

    from netkit.node import apisource, daemon, filesource

    require_root()
    try:
        clusters = tuple(ipaddress.ip_network(c) for c in cluster_cidrs)
    except ValueError as exc:
        fail(ValueError(f"--cluster-cidr: {exc}"))
    if nodes_file and kubeconfig:
        fail(ValueError("--nodes-file and --kubeconfig: give one source"))
    configuration = None
    if not nodes_file:
        try:
            configuration = apisource.load_config(kubeconfig)
        except apisource.ConfigError as exc:
            fail(exc)
    _logging()
    settings = daemon.Settings(node_name, conf_dir, ready_file, interval, resync, clusters, firewall_backend or "",
                               ipam_dir)
    api = None
    source: daemon.Source
    if nodes_file:
        source = filesource.FileSource(nodes_file)
    else:
        source = api = apisource.ApiSource(configuration)
    loop = daemon.Daemon(settings, source)
    if api is not None:
        api.on_change = loop.wake
        api.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        loop.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop.run()
    if api is not None:
        api.stop()


def _logging() -> None:
    # netkit's lines only: a library's warnings (urllib3's "Retrying ..." while the API is down)
    # would repeat what netkit already says once.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("netkit node: %(message)s"))
    netkit_log = logging.getLogger("netkit")
    netkit_log.addHandler(handler)
    netkit_log.setLevel(logging.INFO)
    netkit_log.propagate = False
    logging.getLogger("urllib3").setLevel(logging.ERROR)


COMMANDS = [node]
