"""The watcher's timing, with a fake clock: bursts of saves are one apply."""

from conduit.features.watch import Debounce, render_unit


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_fires_once_after_the_quiet_period():
    clock = Clock()
    debounce = Debounce(0.5, clock)
    assert not debounce.due() and debounce.wait_left() is None
    fired = 0
    for _ in range(10):  # ten saves 0.1 s apart
        debounce.event()
        clock.now += 0.1
        if debounce.due():
            fired += 1
            debounce.fired()
    assert fired == 0 and abs(debounce.wait_left() - 0.4) < 1e-9
    clock.now += 0.4
    assert debounce.due()
    debounce.fired()
    assert not debounce.due()


def test_unit_runs_the_same_command_with_its_environment():
    text = render_unit(["/usr/local/bin/conduit", "watch", "/etc/conduit/cluster.yaml", "--interval", "300"], {"CONDUIT_STATE_DIR": "/var/lib/conduit"})
    assert "ExecStart=/usr/local/bin/conduit watch /etc/conduit/cluster.yaml --interval 300\n" in text
    assert "Environment=CONDUIT_STATE_DIR=/var/lib/conduit\n" in text
    assert "KillSignal=SIGTERM" in text and "WantedBy=multi-user.target" in text


def test_health_problems_come_from_the_plan():
    from conduit.plan.planner import make_plan
    from conduit.spec.resources import Resource
    from conduit.features.watch import health_problems

    desired = [
        Resource("nginx", "nginx", {"running": True}),
        Resource("container", "conduit-1", {"image": "x", "state": "running"}, frozenset({"image"})),
        Resource("container", "conduit-2", {"image": "x", "state": "running"}, frozenset({"image"})),
    ]
    observed = [
        Resource("nginx", "nginx", {"running": False}),
        Resource("container", "conduit-1", {"image": "x", "state": "restarting"}, frozenset({"image"})),
        Resource("container", "conduit-2", {"image": "x", "state": "exited"}, frozenset({"image"})),
    ]
    assert health_problems(make_plan("c", desired, observed)) == {
        "nginx": "nginx is down",
        "crash:conduit-1": "container conduit-1 is in a crash loop (restarting)",
    }
    assert health_problems(make_plan("c", desired, desired)) == {}


def test_an_invalid_spec_is_said_once_until_something_else_happens(tmp_path):
    """An editor that saves the same broken spec twice gets one line, not one per save; a new error,
    or the same one after a good reconcile, is said again."""
    from conduit.drivers.observe import HostAccess
    from conduit.features.watch import Result, Watcher
    from tests.helpers import SMALL_VPS, dump, minimal

    said: list[str] = []
    watcher = Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS, report=said.append)
    broken = dump(minimal(containers={"count": 0, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0"}))
    for reason in ("start", "changed", "changed"):
        assert watcher.reconcile(broken, "cluster.yaml", reason).status == "invalid"
    assert len(said) == 1 and "spec.containers.count" in said[0] and said[0].split(" ", 1)[1].startswith("start: invalid: ")
    other = broken.replace("count: 0", "count: many")
    watcher.reconcile(other, "cluster.yaml", "changed")
    assert len(said) == 2
    watcher._record(Result("unchanged"), "interval", "d", None)
    watcher.reconcile(broken, "cluster.yaml", "changed")
    assert len(said) == 4 and "invalid" in said[-1]
    assert watcher.status["last_result"] == "invalid"  # the record follows every reconcile, said or not


def test_a_watcher_is_running_only_while_its_pid_is_a_conduit_watch(tmp_path):
    from conduit.features.watch_record import watcher_running

    for pid, argv in {10: b"/usr/bin/python3\0/usr/local/bin/conduit\0watch\0/etc/conduit/cluster.yaml\0", 11: b"sleep\0watch\0"}.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(argv)
    assert watcher_running({"pid": 10}, tmp_path)
    assert not watcher_running({"pid": 11}, tmp_path)  # the pid was taken by another program since
    assert not watcher_running({"pid": 12}, tmp_path) and not watcher_running({}, tmp_path)


def test_a_watched_spec_linked_out_of_its_repository_is_refused_unread(tmp_path):
    """`conduit watch FILE` in a work tree others push to: a commit that turns the spec into a link to
    a root-only file puts one line in the record (which viewers and alerts read), not that file's lines."""
    import subprocess
    import threading

    from conduit.drivers.observe import HostAccess
    from conduit.features.watch import Watcher
    from harness import wait_for
    from tests.helpers import SMALL_VPS

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$j9T$notforanyone:19000:0:99999:7:::\n")
    (repo / "cluster.yaml").symlink_to(secret)
    said: list[str] = []
    watcher = Watcher(HostAccess(tmp_path, tmp_path / "state", "unix:///nowhere"), lambda: SMALL_VPS, report=said.append)
    loop = threading.Thread(target=watcher.watch_file, args=(repo / "cluster.yaml", 3600.0), daemon=True)
    loop.start()
    try:
        wait_for(lambda: watcher.status.get("last_result"), timeout=30, message="the watcher's first look")
    finally:
        watcher.stop()
        loop.join(timeout=30)
    record = str(watcher.status) + "".join(said)
    assert watcher.status["last_result"] == "invalid" and "a spec must live inside it" in record
    assert "notforanyone" not in record
