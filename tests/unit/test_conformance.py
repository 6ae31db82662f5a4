"""Pure logic of running-state conformance: the runtime API's answers and HAProxy's command line."""

from __future__ import annotations

from lbctl.kinds.haproxy import config_files
from lbctl.kinds.haproxy_api import differences, parse_runtime
from lbctl.semantic.haproxy import parse

HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port\n"
)


def row(be: str, name: str, addr: str, admin: int, weight: int, port: int) -> str:
    return f"3 {be} 1 {name} {addr} 2 {admin} {weight} {weight} 0 6 3 4 6 0 0 0 - {port} - 0 0 - - 0\n"


CONFIG = """
backend web
    server a 10.0.0.1:80 weight 100
    server b 10.0.0.2:80 weight 50 disabled
    server c 10.0.0.3:80 backup
"""


def test_a_running_state_equal_to_the_config_has_no_differences() -> None:
    text = HEADER + row("web", "a", "10.0.0.1", 0, 100, 80) + row("web", "b", "10.0.0.2", 5, 50, 80)
    text += row("web", "c", "10.0.0.3", 0, 1, 80) + "\n"
    assert differences(parse(CONFIG, filename="h.cfg"), parse_runtime(text)) == []


def test_each_difference_is_named() -> None:
    text = HEADER + row("web", "a", "10.0.0.9", 1, 0, 81) + row("web", "b", "10.0.0.2", 0, 50, 80)
    text += row("web", "x", "10.0.0.5", 0, 1, 80) + row("other", "y", "10.0.0.6", 0, 1, 80)
    found = differences(parse(CONFIG, filename="h.cfg"), parse_runtime(text))
    assert found == [
        "backend web server a: weight 0 running, 100 in the config",
        "backend web server a: in maintenance running, enabled in the config",
        "backend web server a: address 10.0.0.9 running, 10.0.0.1 in the config",
        "backend web server a: port 81 running, 80 in the config",
        "backend web server b: enabled running, disabled in the config",
        "backend web server c: in the config, not running",
        "backend web server x: running, not in the config",
        "backend other: running, not in the config",
    ]


def test_backup_comes_from_show_stat() -> None:
    stat = "# pxname,svname,status,weight,act,bck\nweb,a,UP,100,0,1\nweb,BACKEND,UP,100,0,0\n"
    running = parse_runtime(HEADER + row("web", "a", "10.0.0.1", 0, 100, 80) + "\n" + stat)
    model = parse("backend web\n    server a 10.0.0.1:80 weight 100\n", filename="h.cfg")
    assert differences(model, running) == ["backend web server a: backup running, active in the config"]


def test_config_files_on_a_haproxy_command_line() -> None:
    argv = ("/usr/sbin/haproxy", "-W", "-S", "/run/m.sock,mode,600", "-f", "/etc/haproxy/haproxy.cfg", "-f", "conf.d")
    assert config_files(argv, "/srv") == ["/etc/haproxy/haproxy.cfg", "/srv/conf.d"]
    assert config_files(("haproxy", "-C", "/etc/lb", "-f", "a.cfg", "-sf", "12", "13"), "/") == ["/etc/lb/a.cfg"]
    assert config_files(("haproxy", "-db", "--", "one.cfg", "/two.cfg"), "/x") == ["/x/one.cfg", "/two.cfg"]


def test_a_directory_on_the_command_line_holds_its_cfg_files() -> None:
    from lbctl.kinds.conformance import _among

    assert _among({"/etc/haproxy/conf.d/edge.cfg"}, ["/etc/haproxy/conf.d"])
    assert not _among({"/etc/haproxy/conf.d/edge.conf"}, ["/etc/haproxy/conf.d"])
    assert not _among({"/etc/haproxy/haproxy.conf"}, ["/etc/haproxy/haproxy.cfg"])


def test_a_relative_file_without_a_known_directory_stays_relative() -> None:
    assert config_files(("haproxy", "-f", "haproxy.cfg"), "") == ["haproxy.cfg"]  # judged unknown, never wrong
