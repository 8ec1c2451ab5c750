"""One HTTP pool per process, one Supabase client per request, no timer threads."""

from __future__ import annotations

import threading

import httpx
import pytest
from supabase_auth.constants import STORAGE_KEY

from supabase_client import FORWARDED_FOR, Backoff, client_address, extension, get_supabase
from tests.helpers import Browser, move_app_clock


def test_one_client_per_request(app):
    with app.test_request_context():
        first = get_supabase()
        assert get_supabase() is first
    with app.test_request_context():
        assert get_supabase() is not first


def test_clients_share_the_process_http_pool_and_never_auto_refresh(app):
    with app.test_request_context():
        client = get_supabase()
        assert client.auth._http_client is extension().http
        assert client.auth._auto_refresh_token is False
        assert client.auth._flow_type == "pkce"


def test_the_client_is_dropped_on_teardown(app):
    with app.app_context() as context:
        get_supabase()
        assert "supabase_client" in context.g
    assert "supabase_client" not in context.g


def test_teardown_without_a_client_is_fine(client):
    assert client.get("/healthz").status_code == 200


def test_sign_ins_start_no_threads(make_app, emulator, github_account):
    from tests.helpers import Browser

    app = make_app(AUTH_REVALIDATE_SECONDS=0)  # every page refreshes: the worst case
    browser = Browser(app.test_client(), emulator.url)
    try:
        for _ in range(5):
            browser.sign_in(github_account())
            browser.client.get("/")
    finally:
        browser.close()
    # supabase_auth's refresh timers are threading.Timer threads; the emulator's own server
    # threads (it runs in this process) are not counted.
    assert [t for t in threading.enumerate() if isinstance(t, threading.Timer)] == []


# --- Backoff, client_address() and Sb-Forwarded-For ----------------------------------------
# (imports kept with the tests they serve, below the module's original tests)




class Clock:
    """A clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pause_of(backoff: Backoff, clock: Clock) -> float:
    """How long, from now, until the back-off is ready again (to the half second)."""
    start = clock.now
    while not backoff.ready():
        assert clock.now - start < 100_000, "never ready again"
        clock.now += 0.5
    return clock.now - start


def test_backoff_is_ready_at_start():
    assert Backoff(longest=15, clock=Clock()).ready()


def test_backoff_pauses_one_second_after_a_failure():
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    backoff.failed()
    clock.now += 0.999
    assert not backoff.ready()
    clock.now = 1001.0
    assert backoff.ready()


def test_backoff_doubles_the_pause_after_each_failure_in_a_row_up_to_longest():
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    pauses = []
    for _ in range(7):
        backoff.failed()
        pauses.append(pause_of(backoff, clock))
    assert pauses == [1, 2, 4, 8, 15, 15, 15]


def test_backoff_stays_at_longest_however_long_failures_go_on():
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    for _ in range(2000):  # 2.0 ** 1999 would overflow a float
        backoff.failed()
        clock.now += 16
    backoff.failed()
    assert pause_of(backoff, clock) == 15


def test_backoff_counts_failures_during_a_pause_once():
    """Requests already under way when Supabase went away fail together: one step, not N."""
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    for _ in range(10):
        backoff.failed()
    assert pause_of(backoff, clock) == 1
    backoff.failed()
    assert pause_of(backoff, clock) == 2


def test_backoff_is_ready_at_once_after_a_success():
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    for _ in range(3):
        backoff.failed()
    backoff.succeeded()
    assert backoff.ready()


def test_backoff_starts_again_from_one_second_after_a_success():
    clock = Clock()
    backoff = Backoff(longest=15, clock=clock)
    for _ in range(3):
        backoff.failed()
    backoff.succeeded()
    backoff.failed()
    assert pause_of(backoff, clock) == 1


def test_backoff_failures_from_many_threads_add_up_as_if_reported_one_by_one():
    clock, serial_clock = Clock(), Clock()
    backoff = Backoff(longest=10_000, clock=clock)
    serial = Backoff(longest=10_000, clock=serial_clock)
    start = threading.Barrier(12)

    def fail() -> None:
        start.wait()
        backoff.failed()

    threads = [threading.Thread(target=fail) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    for _ in threads:
        serial.failed()
    assert pause_of(backoff, clock) == pause_of(serial, serial_clock)


def request_from(app, remote_addr: str):
    return app.test_request_context(environ_base={"REMOTE_ADDR": remote_addr})


@pytest.mark.parametrize(("remote_addr", "address"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client through an IPv6 socket
    ("fe80::1%eth0", "fe80::1"),  # a zone id means nothing to Supabase
    ("", None),
    ("unix:/tmp/x", None),
    ("not-an-ip", None),
    ("1.2.3.4, 5.6.7.8", None),
])
def test_client_address_is_the_normalised_remote_address_or_none(make_app, remote_addr, address):
    with request_from(make_app(), remote_addr):
        assert client_address() == address


def test_client_address_without_any_context_is_none():
    assert client_address() is None


def test_client_address_outside_a_request_is_none(app):
    with app.app_context():
        assert client_address() is None


@pytest.mark.parametrize(("remote_addr", "header"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:DB8::1", "2001:db8::1"),
    ("", None),
    ("unix:/tmp/x", None),
])
def test_the_client_forwards_the_persons_address_when_there_is_one(make_app, remote_addr,
                                                                   header):
    with request_from(make_app(), remote_addr):
        assert get_supabase().auth._headers.get(FORWARDED_FOR) == header


@pytest.mark.parametrize(("first", "second"), [
    ("203.0.113.7", "198.51.100.9"),
    ("203.0.113.7", "unix:/tmp/x"),
    ("unix:/tmp/x", "198.51.100.9"),
])
def test_each_requests_client_keeps_its_own_address(make_app, first, second):
    app = make_app()
    clients = []
    for remote_addr in (first, second):
        with request_from(app, remote_addr):
            clients.append((get_supabase(), client_address()))
    for supabase, address in clients:
        assert supabase.auth._headers.get(FORWARDED_FOR) == address


def test_the_persons_address_goes_out_with_the_clients_calls(make_app):
    sent: list[httpx.Request] = []

    def supabase(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={
            "id": "5b0c5a8e-0000-4000-8000-000000000001", "aud": "authenticated",
            "app_metadata": {}, "user_metadata": {}, "created_at": "2024-05-01T10:00:00Z"})

    app = make_app(SUPABASE_TRANSPORT=httpx.MockTransport(supabase))
    sent.clear()  # the app's own JWKS fetch at start, for nobody in particular
    with request_from(app, "203.0.113.7"):
        get_supabase().auth.get_user("header.payload.signature")
    assert [request.headers.get(FORWARDED_FOR) for request in sent] == ["203.0.113.7"]


# -- data calls act as the person ------------------------------------------------------------

DATA_PREFIXES = ("/rest/v1/", "/storage/v1/", "/functions/v1/")


class DataRecorder(httpx.BaseTransport):
    """The emulator for Auth; PostgREST, Storage and Functions answered here and recorded."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.data_calls: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(DATA_PREFIXES):
            self.data_calls.append(request)
            return httpx.Response(200, json=[])
        return self.real.handle_request(request)


@pytest.fixture
def data_app(make_app):
    recorder = DataRecorder()
    app = make_app(SUPABASE_TRANSPORT=recorder)

    @app.get("/data")
    def data():
        supabase = get_supabase()
        supabase.table("notes").select("*").execute()
        supabase.storage.from_("avatars").list()
        supabase.functions.invoke("hello", {"body": {}})
        return "ok"

    yield app, recorder
    recorder.real.close()


def bearers(recorder: DataRecorder) -> set[str | None]:
    return {request.headers.get("Authorization") for request in recorder.data_calls}


def test_data_calls_carry_the_persons_token(data_app, emulator, github_account):
    app, recorder = data_app
    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        assert browser.client.get("/data").status_code == 200
        with browser.client.session_transaction() as stored:
            token = stored[STORAGE_KEY]["access_token"]
    finally:
        browser.close()
    assert len(recorder.data_calls) == 3
    assert bearers(recorder) == {f"Bearer {token}"}
    assert {r.headers.get("apikey") for r in recorder.data_calls} == {app.config["SUPABASE_KEY"]}


def test_signed_out_data_calls_carry_no_bearer(data_app):
    app, recorder = data_app
    assert app.test_client().get("/data").status_code == 200
    assert len(recorder.data_calls) == 3
    assert bearers(recorder) == {None}


def test_data_calls_after_an_in_request_refresh_use_the_new_token(data_app, emulator,
                                                                 github_account, monkeypatch):
    app, recorder = data_app
    browser = Browser(app.test_client(), emulator.url)
    try:
        browser.sign_in(github_account())
        with browser.client.session_transaction() as stored:
            old = stored[STORAGE_KEY]["access_token"]
        move_app_clock(monkeypatch, 3601)  # load_user refreshes before the view runs
        assert browser.client.get("/data").status_code == 200
        with browser.client.session_transaction() as stored:
            new = stored[STORAGE_KEY]["access_token"]
    finally:
        browser.close()
    assert new != old
    assert bearers(recorder) == {f"Bearer {new}"}


# --- one retry per pause, and what ends it --------------------------------------------------

def paused_then_over(clock: Clock, failures: int = 1) -> Backoff:
    """A back-off whose pause (after ``failures`` failures) has just ended."""
    backoff = Backoff(longest=15, hold=20, clock=clock)
    for _ in range(failures):
        backoff.failed()
        clock.now += backoff.remaining()
    return backoff


def test_after_a_pause_exactly_one_caller_gets_the_retry():
    backoff = paused_then_over(Clock())
    assert [backoff.ready() for _ in range(5)] == [True, False, False, False, False]


def test_the_retry_goes_to_one_thread_among_many():
    backoff = paused_then_over(Clock())
    start = threading.Barrier(16)
    answers: list[bool] = []

    def ask() -> None:
        start.wait()
        answers.append(backoff.ready())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(answers) == [False] * 15 + [True]


def test_a_failed_retry_pauses_twice_as_long():
    clock = Clock()
    backoff = paused_then_over(clock)
    assert backoff.ready()
    backoff.failed()
    assert backoff.remaining() == 2
    assert not backoff.ready()


def test_a_successful_retry_lets_everyone_call():
    backoff = paused_then_over(Clock())
    assert backoff.ready()
    backoff.succeeded()
    assert all(backoff.ready() for _ in range(5))


def test_a_released_retry_passes_to_the_next_caller_without_a_longer_pause():
    clock = Clock()
    backoff = paused_then_over(clock, failures=3)
    assert backoff.ready()
    backoff.release()  # a refused session: nothing learnt about Supabase as a whole
    assert backoff.remaining() == 0
    assert [backoff.ready(), backoff.ready()] == [True, False]
    backoff.failed()
    assert backoff.remaining() == 8  # the count of failures went on from three


def test_a_retry_never_reported_is_handed_out_again_after_hold():
    clock = Clock()
    backoff = paused_then_over(clock)
    assert backoff.ready()
    clock.now += 19.5
    assert not backoff.ready()
    clock.now += 0.5
    assert backoff.ready()


def test_release_without_failures_changes_nothing():
    backoff = Backoff(longest=15, clock=Clock())
    backoff.release()
    assert backoff.ready() and backoff.ready()
    assert backoff.remaining() == 0
