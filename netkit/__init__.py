"""netkit: container networking — CNI plugins, a small runtime and network labs."""

__version__ = "0.1.0"
