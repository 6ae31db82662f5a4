"""Real load-balancer processes on loopback, for `lbctl demo` and the test suite.

Everything here binds 127.0.0.1 only, picks free high ports itself, runs in a temp
dir, starts each process in its own session and stops it by PID.
"""
