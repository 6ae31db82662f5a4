"""lbctl: load-balancer configurations versioned in git, deployed and rolled back safely."""

__version__ = "0.1.0"
