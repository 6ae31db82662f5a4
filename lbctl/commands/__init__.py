"""One module per lbctl command: each returns a value and prints nothing."""
