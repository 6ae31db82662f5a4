"""How one change is planned, executed, verified and undone."""
