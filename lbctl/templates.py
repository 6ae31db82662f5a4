"""What `lbctl init` writes into a new store."""

LBCTL_TOML = """\
# lbctl.toml: the load balancers this store manages. Reference: docs/reference.md
# Unknown or misspelt keys are an error, so a typo never goes unnoticed.

[defaults]                    # any of these may also be set per target
verify_seconds = 10           # health verification window after a reload; 0 = one round of checks
check_interval = 0.5          # seconds between rounds of checks
retries = 3                   # transport retries (exponential backoff with jitter)

# One [targets.NAME] table per load balancer. Uncomment and adapt:
#
# [targets.edge1]
# kind = "haproxy"                              # haproxy (nginx, caddy: coming)
# transport = "local"                           # local (ssh, http: coming)
# source = "configs/edge/haproxy.cfg"           # the file in this store
# path = "/etc/haproxy/haproxy.cfg"             # where the LB reads it
# master_socket = "/run/haproxy-master.sock"    # HAProxy started with -W -S <this>: confirms reloads
# # stats_socket = "/run/haproxy/admin.sock"    # the runtime API (confirms reloads without a master socket)
# # validate = "haproxy -c -f {path}"           # the kind's default; commands run by /bin/sh -c on the LB
# # reload = "systemctl reload haproxy"         # default: `reload` on the master socket
# # confirm_reload = false                      # only if nothing can confirm: verdicts are `unconfirmed`
#
# [[targets.edge1.checks]]
# type = "http"                                 # http | tcp | command
# url = "http://127.0.0.1/health"               # probed through the LB after each reload
# expect_status = 200
"""

EXAMPLE_HAPROXY_CFG = """\
# An example HAProxy config; point a target's `source` at it.
global
    log stderr format short local0

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend www
    bind 127.0.0.1:8080
    default_backend web

backend web
    balance roundrobin
    server web1 127.0.0.1:8081 check weight 100
    server web2 127.0.0.1:8082 check weight 100
"""
