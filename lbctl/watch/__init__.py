"""`lbctl watch` and `lbctl rules`: the traffic between changes, judged and fed to Prometheus and Alertmanager.

evaluate.py (pure judgement), sources.py (counters and intended shares), runner.py (the loop),
metrics.py (/metrics), alertmanager.py (v2 API), rules.py (Prometheus alerting rules).
"""
