"""Starting netkit's plugins: the executables `netkit cni install` writes and what they run.

``executable`` is a plugin executable's source and entry point, ``native`` the C launcher the
default install puts in front of it (it hands requests to the agent without starting an interpreter),
``install`` writes them (and the default network), ``invoker`` decides how a delegated netkit plugin runs: asked of the warm agent,
answered in this process, or exec'd.  Above the agent and the plugins, which it starts; below the
runtime and the CLI (whose every command installs that choice with ``invoker.use()``).
"""
