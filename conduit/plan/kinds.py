"""What a plan step does, as closed sets: the kind of thing it acts on and the action it takes.

Both are str-valued, so a plan's JSON, the journal and the printed plan spell them as before;
an unknown spelling is a ValueError where a plan is read, not a missing method when it runs.
"""

from __future__ import annotations

from enum import Enum


class _Spelled(str, Enum):
    """An Enum that is its own spelling in f-strings, JSON and comparisons with plain strings."""

    __str__ = str.__str__
    __format__ = str.__format__


class Kind(_Spelled):
    # Resources the diff makes (conduit.spec.resources.KIND_PHASE), in apply order within a phase.
    SYSCTL = "sysctl"
    SYSCTL_FILE = "sysctl_file"
    NGINX_CONF = "nginx_conf"
    NGINX_INCLUDE = "nginx_include"
    NGINX_MAIN = "nginx_main"
    NGINX = "nginx"
    NETWORK = "network"
    VOLUME = "volume"
    CONTAINER = "container"
    TRACKER = "tracker"
    # Steps the schedule adds (conduit.plan.schedule).
    IMAGE = "image"  # pull the spec's image before any node stops
    BACKENDS = "backends"  # drain nodes out of the front, or put them all back
    CANARY = "canary"  # measure the canaries' clients, then judge them
    KEYS = "keys"  # copy node keys out before a replace or a purge touches their volumes
    COMPARTMENT = "compartment"  # a node's personal compartment, made once before it starts with personal clients


class Action(_Spelled):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    ADOPT = "adopt"
    DELETE = "delete"
    NO_OP = "no-op"
    PULL = "pull"
    DRAIN = "drain"
    RESTORE = "restore"
    MEASURE = "measure"
    JUDGE = "judge"
    BACKUP = "backup"
    PROBE = "probe"  # ask a pulled image what it speaks (an image step), before any node is touched


class OnError(_Spelled):
    FAIL = "fail"  # a refused step stops the apply
    WARN = "warn"  # a refused step only warns
