"""What a spec may ask of this host: every path, binary, secret, image, sysctl key, environment
variable and start flag checked against the host policy (conduit.spec.policy).

Each refusal names the field and the policy, so an operator can tell "the spec is wrong" from
"this host does not allow it"; one the policy could allow also names the policy key to edit.
"""

from __future__ import annotations

import re

from conduit.spec.policy import HostPolicy, clean_path, matches, sysctl_allowed, under
from conduit.spec.policy_file import DEFAULT_PATH
from conduit.spec.spec import ClusterSpec
from conduit.spec.units import human_size, parse_docker_size

Path = tuple[str | int, ...]
Issue = tuple[Path, str]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?P<domain>[A-Za-z0-9.-]+(?::[0-9]+)?)/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables the dynamic loader, libc or the Go runtime act on: they change what the node runs.
_RUNTIME_ENV = re.compile(r"^(LD_.*|GCONV_PATH|GLIBC_TUNABLES|MALLOC_.*|HOSTALIASES|LOCALDOMAIN|RES_OPTIONS|NLSPATH|PATH|GODEBUG|GOGC|GOMEMLIMIT|GOMAXPROCS)$")
# Start flags the tool renders from the spec: passing them again would override the data
# directory (the node's key), the metrics address the tool reads, or the limits the spec sets.
OWNED_LONG = frozenset({
    "data-dir", "metrics-addr", "max-clients", "max-common-clients", "max-personal-clients", "bandwidth",
    "stats-file", "traffic-limit", "traffic-period", "bandwidth-threshold",
    "min-connections", "min-bandwidth",
})  # fmt: skip
OWNED_SHORT = frozenset("mbd")

CONDUIT: Path = ("spec", "conduit")
NGINX: Path = ("spec", "loadbalancer", "nginx")
LOGGING: Path = ("spec", "containers", "logging")


def image_reference_problem(image: str) -> str | None:
    if not _IMAGE.match(image):
        return "is not an image reference (registry/repository:tag or @sha256:digest)"
    return None


def trust_checks(spec: ClusterSpec, policy: HostPolicy, source: str) -> list[Issue]:
    """Everything in the spec that reaches outside the container, checked against `policy`
    (`source` names it in each message)."""
    issues = _path_checks(spec, policy) + _sysctl_checks(spec, policy) + _secret_checks(spec, policy)
    issues += _image_checks(spec, policy) + _env_checks(spec) + _extra_arg_checks(spec) + _data_dir_checks(spec)
    count = spec.spec.containers.count or 0
    if count > policy.max_containers:
        issues.append((("spec", "containers", "count"), f"{count} containers; the host allows {policy.max_containers}"))
    issues += _log_checks(spec, policy)
    return [(path, f"{message} ({_where(source, path)})") for path, message in issues]


# The policy key that would let each refused field through, for the one line that says what to edit.
_POLICY_KEYS = {
    NGINX + ("binary",): "nginx.binaries",
    NGINX + ("main_config",): "nginx.main_configs",
    NGINX + ("include_file",): "nginx.config_dirs",
    NGINX + ("instance_config",): "nginx.config_dirs",
    NGINX + ("pid_file",): "nginx.pid_dirs",
    NGINX + ("instance_pid_file",): "nginx.pid_dirs",
    NGINX + ("error_log",): "nginx.log_dirs",
    NGINX + ("stream_module",): "nginx.module_dirs",
    ("spec", "loadbalancer", "access_log"): "nginx.log_dirs",
    ("spec", "sysctl", "file"): "sysctl.dirs",
    ("spec", "alerts", "telegram", "api_url"): "telegram_api_urls",
    ("spec", "alerts", "telegram", "bot_token", "file"): "secrets.file_dirs",
    ("spec", "alerts", "telegram", "chat_id", "file"): "secrets.file_dirs",
    ("spec", "alerts", "telegram", "bot_token", "env"): "secrets.env",
    ("spec", "alerts", "telegram", "chat_id", "env"): "secrets.env",
    ("spec", "containers", "image"): "images",
    ("spec", "updates", "versions"): "images",
    ("spec", "containers", "count"): "max_containers",
    LOGGING + ("max_size",): "max_node_log",
}


def _log_checks(spec: ClusterSpec, policy: HostPolicy) -> list[Issue]:
    """A node writes its own log: the spec (perhaps a stranger's commit) must not let it fill the disk."""
    logging = spec.spec.containers.logging
    most, cap = parse_docker_size(logging.max_size) * logging.max_file, parse_docker_size(policy.max_node_log)
    if most <= cap:
        return []
    return [(LOGGING + ("max_size",), f"{logging.max_size} x {logging.max_file} files lets a node's log take {human_size(most)}; "
                                      f"the host allows {human_size(cap)} a node")]  # fmt: skip


def _where(source: str, path: Path) -> str:
    """The policy, and for a field the policy decides, which key of which file root would edit."""
    key = _POLICY_KEYS.get(path) or ("sysctl.extra_keys" if path[:3] == ("spec", "sysctl", "overrides") else None)
    if key is None:
        return source
    if source.startswith("host policy "):
        return f"{source}: to allow it, root adds it to {key} there"
    return f"{source}: to allow it, root sets {key} in {DEFAULT_PATH}, as in examples/host.yaml"


def _path_checks(spec: ClusterSpec, policy: HostPolicy) -> list[Issue]:
    s = spec.spec
    nginx, paths = policy.nginx, s.loadbalancer.nginx
    issues: list[Issue] = []
    if clean_path(paths.binary) is None or not matches(paths.binary, nginx.binaries):
        issues.append((NGINX + ("binary",), f"{paths.binary!r} is not an nginx binary the host allows ({', '.join(nginx.binaries)})"))
    if clean_path(paths.main_config) is None or not matches(paths.main_config, nginx.main_configs):
        issues.append((NGINX + ("main_config",), f"{paths.main_config!r} is not a main config the host allows ({', '.join(nginx.main_configs)})"))
    under_dirs = [
        (NGINX + ("include_file",), paths.include_file, nginx.config_dirs),
        (NGINX + ("pid_file",), paths.pid_file, nginx.pid_dirs),
        (NGINX + ("instance_config",), paths.instance_config, nginx.config_dirs),
        (NGINX + ("instance_pid_file",), paths.instance_pid_file, nginx.pid_dirs),
        (NGINX + ("error_log",), paths.error_log, nginx.log_dirs),
        (("spec", "sysctl", "file"), s.sysctl.file, policy.sysctl.dirs),
    ]
    if paths.stream_module is not None:
        under_dirs.append((NGINX + ("stream_module",), paths.stream_module, nginx.module_dirs))
    if s.loadbalancer.access_log is not None:
        under_dirs.append((("spec", "loadbalancer", "access_log"), s.loadbalancer.access_log, nginx.log_dirs))
    for path, value, dirs in under_dirs:
        if not under(value, dirs):
            issues.append((path, f"{value!r} must be a normal absolute path under {' or '.join(dirs)}"))
    if not s.sysctl.file.endswith(".conf"):
        issues.append((("spec", "sysctl", "file"), "must end in .conf (sysctl --system reads only those)"))
    return issues


def _sysctl_checks(spec: ClusterSpec, policy: HostPolicy) -> list[Issue]:
    return [
        (("spec", "sysctl", "overrides", key), f"{key} is not a network, file-descriptor or conntrack key; the host must name it in sysctl.extra_keys")
        for key in spec.spec.sysctl.overrides
        if not sysctl_allowed(key, policy)
    ]


def _secret_checks(spec: ClusterSpec, policy: HostPolicy) -> list[Issue]:
    telegram = spec.spec.alerts.telegram
    if telegram is None:
        return []
    base: Path = ("spec", "alerts", "telegram")
    issues: list[Issue] = []
    if not matches(telegram.api_url.rstrip("/"), policy.telegram_api_urls):
        issues.append((base + ("api_url",), f"{telegram.api_url!r} is not a Telegram API the host allows"))
    for name in ("bot_token", "chat_id"):
        ref = getattr(telegram, name)
        if ref.file is not None and not under(ref.file, policy.secrets.file_dirs):
            issues.append((base + (name, "file"), f"must be a normal absolute path under {' or '.join(policy.secrets.file_dirs)}"))
        if ref.env is not None and not matches(ref.env, policy.secrets.env):
            issues.append((base + (name, "env"), f"{ref.env} is not a variable the host lets a spec read ({', '.join(policy.secrets.env)})"))
    return issues


def _image_checks(spec: ClusterSpec, policy: HostPolicy) -> list[Issue]:
    image = spec.spec.containers.image
    problem = image_reference_problem(image)
    if problem:
        return [(("spec", "containers", "image"), problem)]
    if not matches(image, policy.images):
        return [(("spec", "containers", "image"), f"{image} is not from an image repository the host allows ({', '.join(policy.images)})")]
    if spec.spec.updates.versions is not None and not matches(_any_tag(image), policy.images):
        return [(("spec", "updates", "versions"), f"the host allows only some tags of {_any_tag(image)[:-2]} "
                 f"({', '.join(policy.images)}); a version range may follow any tag of its repository")]
    return []


def _any_tag(image: str) -> str:
    """repository:* of an image reference: a policy that lets it through allows every tag."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return (name.rsplit(":", 1)[0] if ":" in last else name) + ":*"


def _env_checks(spec: ClusterSpec) -> list[Issue]:
    issues: list[Issue] = []
    for name in spec.spec.containers.env:
        path = ("spec", "containers", "env", name)
        if not _ENV_NAME.match(name):
            issues.append((path, "is not an environment variable name"))
        elif _RUNTIME_ENV.match(name):
            issues.append((path, f"{name} changes what the loader or runtime runs; it cannot be set from a spec"))
    return issues


def owned_flag(arg: str) -> str | None:
    """The flag of the tool's own that `arg` sets ("--data-dir=/x", "-d/x", "-vd", "--"), else None."""
    if arg == "--":
        return "--"
    if arg.startswith("--"):
        name = arg[2:].split("=", 1)[0]
        return f"--{name}" if name in OWNED_LONG else None
    if arg.startswith("-") and len(arg) > 1:
        # pflag: "-vd/x" is -v then -d with value "/x"; any owned letter before a value counts.
        for letter in arg[1:]:
            if letter in OWNED_SHORT:
                return f"-{letter}"
            if not letter.isalpha():
                break
    return None


def _extra_arg_checks(spec: ClusterSpec) -> list[Issue]:
    issues: list[Issue] = []
    for i, arg in enumerate(spec.spec.conduit.extra_args):
        flag = owned_flag(arg)
        if flag == "--":
            issues.append((CONDUIT + ("extra_args", i), "'--' would end the flags the tool renders"))
        elif flag:
            issues.append((CONDUIT + ("extra_args", i), f"{flag} is set by the tool from the spec; set the spec's own field instead"))
    return issues


_SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/boot", "/run", "/var/run")


def _data_dir_checks(spec: ClusterSpec) -> list[Issue]:
    data_dir = spec.spec.conduit.data_dir
    path = CONDUIT + ("data_dir",)
    if clean_path(data_dir) is None or ":" in data_dir or "," in data_dir:
        return [(path, "must be a normal absolute path inside the container (no '..', ':' or ',')")]
    if data_dir == "/" or any(data_dir == d or data_dir.startswith(d + "/") for d in _SYSTEM_DIRS):
        return [(path, f"{data_dir} is a system directory of the container; the node's key needs a directory of its own")]
    return []
