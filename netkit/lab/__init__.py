"""Network lab scenarios: one topology file, run on local namespaces or on Vagrant boxes."""
