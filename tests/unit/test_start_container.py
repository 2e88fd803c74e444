"""Starting a container right after a daemon restart: containerd may still hold the task of its last
run for a moment ("task ...: already exists"); that answer is waited out, any other is raised.

The race cannot be brought about on demand with a real daemon, so the Docker API here is a small
stand-in that answers as dockerd does (a 500 APIError with that explanation)."""

from __future__ import annotations

import time

import docker.errors
import pytest
import requests

from conduit.drivers import docker as driver


class Api:
    def __init__(self, answers: list[str | None]):
        self.answers, self.started = list(answers), 0

    def start(self, name: str) -> None:
        explanation = self.answers.pop(0)
        if explanation is not None:
            response = requests.Response()
            response.status_code = 500
            raise docker.errors.APIError("500 Server Error", response, explanation)
        self.started += 1


class Client:
    def __init__(self, api: Api):
        self.api, self.base_url = api, "unix:///run/docker.sock"


def test_a_task_left_by_the_last_run_is_waited_out():
    api = Api(["task 5284f039: already exists", "task 5284f039: already exists", None])
    driver.start_container(Client(api), "conduit-1", timeout=5)
    assert api.started == 1 and api.answers == []


def test_any_other_refusal_is_raised_at_once():
    api = Api(["driver failed programming external connectivity", None])
    with pytest.raises(docker.errors.APIError, match="external connectivity"):
        driver.start_container(Client(api), "conduit-1", timeout=5)
    assert api.answers == [None]  # not asked again


def test_a_task_that_never_goes_is_raised_in_the_end():
    api = Api(["task x: already exists"] * 100)
    with pytest.raises(docker.errors.APIError, match="already exists"):
        driver.start_container(Client(api), "conduit-1", timeout=0.3)
    assert 1 < 100 - len(api.answers) < 10  # asked again after pauses that grow, not in a busy loop


def test_a_refusal_that_took_longer_than_the_wait_is_still_asked_again():
    class Slow(Api):
        def start(self, name: str) -> None:
            if len(self.answers) == 2:  # the first answer comes after the whole wait
                time.sleep(0.4)
            super().start(name)

    api = Slow(["task 5284f039: already exists", None])
    driver.start_container(Client(api), "conduit-1", timeout=0.3)
    assert api.started == 1 and api.answers == []
