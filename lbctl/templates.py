"""What `lbctl init` writes into a new store."""

LBCTL_TOML = """\
# lbctl.toml: the load balancers this store manages. Reference: docs/reference.md
# Unknown or misspelt keys are an error, so a typo never goes unnoticed.
# Every value shown commented out is the default lbctl uses when the key is left out.

[defaults]                    # any of these may also be set per target
verify_seconds = 10           # health verification window after a reload; 0 = one round of checks
check_interval = 0.5          # seconds between rounds of checks
retries = 3                   # transport retries (exponential backoff with jitter)
# connect_timeout = 10        # seconds to reach the LB host

# One [targets.NAME] table per load balancer. Uncomment and adapt:
#
# [targets.edge1]
# kind = "haproxy"                              # haproxy | nginx | caddy (docs/kinds.md)
# transport = "local"                           # local | ssh (docs/ssh.md) | http (Caddy's admin API)
# source = "configs/edge/haproxy.cfg"           # the file in this store (`lbctl pull edge1` creates it
#                                               # from the running LB if it does not exist yet)
# path = "/etc/haproxy/haproxy.cfg"             # where the LB reads it (local, ssh)
# master_socket = "/run/haproxy-master.sock"    # HAProxy started with -W -S <this>
# stats_socket = "/run/haproxy/admin.sock"      # HAProxy's runtime API: balance check, running state,
#                                               # and reload confirmation without a master socket
# # validate = "haproxy -c -f {path}"           # the kind's default; commands run by /bin/sh -c on the LB
# # reload = "systemctl reload haproxy"         # default: `reload` on the master socket
# # confirm_reload = false                      # only if nothing can confirm: verdicts are `unconfirmed`
# # confirm_within = "5m"                       # commit-confirm: the LB reverts unless `lbctl confirm` in time
# # host = "10.0.0.5"                           # ssh: also user, port, identity_file, known_hosts, proxy_jump
# # api = "http://127.0.0.1:2019"               # http: Caddy's admin API
# # environment = "production"                  # production takes only revisions verified on staging
#
# [[targets.edge1.checks]]                      # health checks, after each reload
# type = "http"                                 # probed through the LB
# url = "http://127.0.0.1/health"
# expect_status = 200                           # also: timeout = 2, probes = 3, max_latency_ms, min_success_ratio = 1.0
#
# [[targets.edge1.checks]]
# type = "tcp"                                  # a TCP connect
# port = 443                                    # host = "127.0.0.1", timeout = 2
#
# [[targets.edge1.checks]]
# type = "command"                              # run on the LB host; exit 0 = healthy
# argv = ["/usr/local/bin/lb-health"]           # timeout = 10
#
# [[targets.edge1.checks]]
# type = "balance"                              # traffic spread from the LB's own counters
# max_share = 0.6                               # no server above 60 % of its backend's requests; also
#                                               # the policy's max_share for this target (see [policy])
# # min_requests = 30, max_probes = 200, max_5xx_ratio = 0.05, overload_ratio = 0.9
#
# [[targets.edge1.routes]]                      # a routing case: `lbctl test`, and a gate of check and deploy
# path = "/api/orders"                          # also: method = "GET", host, headers = {...}, source, port, name
# backend = "api"                               # and/or server = "api1", status = 200
# # replay_log = "/var/log/haproxy.log"         # (in [targets.edge1]) check and deploy replay its last
# #                                             # replay_lines = 2000 lines through live and candidate

# Rules judged before anything is pushed (lbctl check, deploy). Each may also be set
# per group or per target, in a policy table of its own.
# [policy]                      # exit 3 when broken; --force overrides
# max_share = 0.6               # unset: no rule, unless the target has a balance check (its max_share,
#                               # 0.6 by default). A server above it is refused: draining one of two
#                               # servers (100 % on the other) or one of three with unequal weights
# min_active_servers = 2        # unset: no rule
# require_health_checks = true  # unset: no rule
# forbid_directives = ["stats admin"]   # unset: none

# Blast radius (exit 4 when exceeded; --force overrides). These are the defaults in force:
# [safety]
# max_servers_removed = 0.34    # at most a third of the serving servers removed, disabled or drained
#                               # (one of three is 33 %: allowed; two of three: refused)
# max_traffic_moved = 0.5       # at most half of a pool's expected traffic moving to other servers
# allow_empty_backend = false   # a pool left with no server taking traffic is refused

# lbctl watch: traffic spread, 5xx and saturation between changes (docs/watch.md)
# [watch]
# interval = "10s"              # how often each target's counters are read
# window = "2m"                 # the traffic each judgement covers
# for = "1m"                    # how long out of bounds before it alerts
# min_requests = 30             # fewer new sessions in the window: inconclusive
# share_deviation = 0.25        # |actual - intended share| / intended share
# listen = "127.0.0.1:9464"     # serve /metrics for Prometheus
# alertmanager = "http://127.0.0.1:9093"

# Tell people when lbctl deploys or rolls back (one message per event and sink):
# [[notify]]
# type = "slack"                # webhook | slack | alertmanager
# url_env = "LBCTL_SLACK_WEBHOOK"   # or url = "..."; secrets only in the environment
# on = ["good", "failed", "rolled-back", "restore-failed"]
# targets = ["*"]

# A fleet: `lbctl deploy @edge` changes every member, canary first, with one consistent undo
# (docs/reference.md, *Fleets*). These are the defaults in force:
# [groups.edge]
# targets = ["edge*"]           # target names or globs; targets with `group = "edge"` are members too
# [groups.edge.rollout]
# canary = 1                    # members changed first, alone (0: no canary)
# canary_bake = "30s"           # then wait this long and run the canary's checks once more
# batches = ["25%", "100%"]     # how many members have the change once each batch ends
# parallel = 10                 # members changed (or restored) at once
# max_failures = 0              # failed members tolerated before the rollout stops
# on_failure = "rollback"       # or "halt": changed members stay on the change (exit 8)
# confirm_within = "5m"         # each changed member's watchdog, armed until the rollout ends
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
