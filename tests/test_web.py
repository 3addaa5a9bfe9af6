"""The web viewer (everstore.web): its JSON API over HTTP, and its pages end to end in
a real browser (Debian's chromium driven by selenium; skipped, saying why, where the
browser or its driver is missing: .ci/install-chromium.sh installs them).

One uvicorn server runs for the module on a store built here (SQLite in a temporary
folder); a second Store on the same file plays another process writing meanwhile.
Screenshots of every view go to the test run's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra (starlette) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

from everstore import Erased, Sqlite3, Store  # noqa: E402
from everstore.web import create_app  # noqa: E402
from everstore.web.app import STATIC  # noqa: E402

ZONE = 60  # namespaces zone/n000.. : more than one page of the namespace list


@dataclass
class Site:
    url: str
    path: Path  # the SQLite file
    mark: int  # the seq after the first round of writes
    writer: Store  # another Store on the same file


def _build(path: Path) -> int:
    """Write the module's store; return the seq that separates its two rounds."""
    with Store(Sqlite3(path)) as store:
        alice = store.storage("game", "alice")
        for score in (10, 20, 15, 30):
            alice.score = score
        alice.level = "bronze"
        alice.level = "silver"
        store.storage("game", "bob").score = 5
        ann = store.storage("users", "ann")
        ann.email = "ann@example.com"
        ann.age = 41
        bob = store.storage("users", "bob")
        bob.email = "bob@example.com"
        bob.nickname = "bobby"
        store.storage("config").theme = "dark"
        with store.transaction():
            for i in range(ZONE):
                store.storage("zone", f"n{i:03}").x = i
        mark = store.last_seq
        alice.score = 42
        store.storage("game", "carol").score = 7
        del bob.nickname
        store.storage("config").theme = "light"
        return mark


@contextlib.contextmanager
def _served(store: Store) -> Iterator[str]:
    """The viewer of ``store`` on a free port, in a thread; yields its address."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(store), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start in 30 s"
        thread.join(0.02)  # wait on the server's thread itself, briefly, then look again
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    path = tmp_path_factory.mktemp("web") / "store.db"
    mark = _build(path)
    store = Store(Sqlite3(path))
    writer = Store(Sqlite3(path))
    try:
        with _served(store) as url:
            yield Site(url, path, mark, writer)
    finally:
        writer.close()
        store.close()


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A store with an erased field (seqs 1 and 3) and a pruned stretch (through 6)."""
    path = tmp_path_factory.mktemp("web") / "rewritten.db"
    store = Store(Sqlite3(path))
    ann = store.storage("people", "ann")
    ann.email = "ann@example.org"  # 1
    ann.age = 40  # 2
    ann.email = "ann@example.com"  # 3
    sensor = store.storage("sensor")
    for reading in range(5):  # 4..8
        sensor.v = reading
    store.erase(("people", "ann"), "email", reason="GDPR 42")  # 9
    store.prune(before=7, namespaces="sensor")  # 10: seqs 4..6 go
    try:
        with _served(store) as url:
            yield Site(url, path, 0, store)
    finally:
        store.close()


def get(site: Site, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{site.url}{path}?{query}", timeout=30) as response:
        return json.loads(response.read())


def status_of(site: Site, path: str, **params: Any) -> tuple[int, Any]:
    try:
        return 200, get(site, path, **params)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- the JSON API -----------------------------------------------------------------------


def test_info_names_the_store_and_its_last_seq(site: Site) -> None:
    info = get(site, "/api/info")
    assert info["last_seq"] >= site.mark + 4
    assert "Sqlite3" in info["store"]
    assert info["first_time"] <= info["last_time"]


def test_namespaces_come_in_pages_and_filter(site: Site) -> None:
    first = get(site, "/api/namespaces", limit=3)
    assert [item["name"] for item in first["items"]] == ["config", "game/alice", "game/bob"]
    assert first["items"][1]["parts"] == ["game", "alice"]
    second = get(site, "/api/namespaces", limit=3, after=first["next"])
    assert [item["name"] for item in second["items"]] == ["game/carol", "users/ann", "users/bob"]
    assert first["total"] is None  # a page is read without counting them all
    found = get(site, "/api/namespaces", q="ALI")
    assert [item["name"] for item in found["items"]] == ["game/alice"]
    assert found["next"] is None
    assert found["total"] == 6 + ZONE
    searched = get(site, "/api/namespaces", q="zone/", limit=50)
    more = get(site, "/api/namespaces", q="zone/", limit=50, after=searched["next"])
    assert len(searched["items"]) + len(more["items"]) == ZONE and more["next"] is None
    zone = get(site, "/api/namespaces", ns="zone", limit=500)
    assert len(zone["items"]) == ZONE


def test_namespaces_as_of_a_seq_leave_out_later_ones(site: Site) -> None:
    then = get(site, "/api/namespaces", seq=site.mark, q="game")
    assert [item["name"] for item in then["items"]] == ["game/alice", "game/bob"]
    now = get(site, "/api/namespaces", q="game")
    assert "game/carol" in [item["name"] for item in now["items"]]


def test_namespace_shows_fields_with_current_and_past_values(site: Site) -> None:
    now = get(site, "/api/namespace", ns=["game", "alice"])
    fields = {f["name"]: f for f in now["fields"]}
    assert fields["score"]["value"] == "42"
    assert fields["score"]["versions"] == 5
    assert fields["score"]["numeric"] is True
    assert fields["level"]["value"] == "'silver'"
    assert fields["level"]["numeric"] is False
    then = get(site, "/api/namespace", ns=["users", "bob"], seq=site.mark)
    assert [(f["name"], f["value"]) for f in then["fields"]] == [
        ("email", "'bob@example.com'"),
        ("nickname", "'bobby'"),
    ]
    assert [f["name"] for f in get(site, "/api/namespace", ns=["users", "bob"])["fields"]] == [
        "email"
    ]
    page = get(site, "/api/namespace", ns=["game", "alice"], limit=1, offset=1)
    assert [f["name"] for f in page["fields"]] == ["level"]
    assert page["total"] == 2


def test_history_is_newest_first_in_pages_with_plot_points(site: Site) -> None:
    history = get(site, "/api/history", ns=["game", "alice"], field="score")
    assert [row["value"] for row in history["rows"]] == ["42", "30", "15", "20", "10"]
    assert [point["value"] for point in history["points"]] == [10, 20, 15, 30, 42]
    page = get(site, "/api/history", ns=["game", "alice"], field="score", limit=2, offset=2)
    assert [row["value"] for row in page["rows"]] == ["15", "20"]
    then = get(site, "/api/history", ns=["game", "alice"], field="score", seq=site.mark)
    assert then["total"] == 4
    text = get(site, "/api/history", ns=["game", "alice"], field="level")
    assert text["points"] == []
    deleted = get(site, "/api/history", ns=["users", "bob"], field="nickname")
    assert [row["deleted"] for row in deleted["rows"]] == [True, False]


def test_log_pages_backwards_and_reads_forwards(site: Site) -> None:
    last = get(site, "/api/info")["last_seq"]
    newest = get(site, "/api/log", limit=4)
    assert [fact["seq"] for fact in newest["facts"]] == [last, last - 1, last - 2, last - 3]
    assert newest["facts"][0]["namespace"] == ["config"]
    older = get(site, "/api/log", limit=4, before=newest["next"])
    assert [fact["seq"] for fact in older["facts"]] == list(range(last - 4, last - 8, -1))
    forwards = get(site, "/api/log", after=site.mark, limit=2)
    assert [(f["namespace"], f["field"], f["value"]) for f in forwards["facts"]] == [
        (["game", "alice"], "score", "42"),
        (["game", "carol"], "score", "7"),
    ]


def test_diff_lists_added_changed_and_deleted_fields(site: Site) -> None:
    diff = get(site, "/api/diff", **{"from": site.mark, "to": site.mark + 4})
    shown = [(c["namespace"], c["field"], c["kind"], c["old"], c["new"]) for c in diff["changes"]]
    assert shown == [
        (["game", "alice"], "score", "changed", "30", "42"),
        (["game", "carol"], "score", "added", "", "7"),
        (["users", "bob"], "nickname", "deleted", "'bobby'", ""),
        (["config"], "theme", "changed", "'dark'", "'light'"),
    ]
    assert diff["cursor"] is None
    under = get(site, "/api/diff", ns="users", **{"from": site.mark, "to": site.mark + 4})
    assert [c["field"] for c in under["changes"]] == ["nickname"]
    page = get(site, "/api/diff", limit=1, **{"from": site.mark, "to": site.mark + 4})
    assert len(page["changes"]) == 1 and page["cursor"] == site.mark + 1
    rest = get(site, "/api/diff", cursor=page["cursor"], **{"from": site.mark, "to": site.mark + 4})
    assert [c["field"] for c in rest["changes"]] == ["score", "nickname", "theme"]


def test_seq_at_turns_a_time_into_the_seq_then(site: Site) -> None:
    info = get(site, "/api/info")
    assert get(site, "/api/seq_at", time=0)["seq"] == 0
    assert get(site, "/api/seq_at", time=info["last_time"])["seq"] == info["last_seq"]
    code, body = status_of(site, "/api/seq_at", time="noon")
    assert code == 400 and "time" in body["error"]


def test_bad_parameters_get_a_400_with_a_reason(site: Site) -> None:
    code, body = status_of(site, "/api/namespaces", limit="many")
    assert code == 400 and "limit" in body["error"]
    code, body = status_of(site, "/api/namespace")
    assert code == 400 and "ns" in body["error"]
    code, body = status_of(site, "/api/log", after=-1)
    assert code == 400
    code, body = status_of(site, "/api/history", ns="game", field="nothing")
    assert code == 404 and "nothing" in body["error"]


def test_erased_values_come_as_their_digest(rewritten: Site) -> None:
    digest = rewritten.writer.storage("people", "ann").email.digest
    assert Erased(digest) == rewritten.writer.storage("people", "ann").email
    fields = get(rewritten, "/api/namespace", ns=["people", "ann"])["fields"]
    assert [(f["name"], f["value"]) for f in fields] == [
        ("email", {"erased": digest}),
        ("age", "40"),
    ]
    rows = get(rewritten, "/api/history", ns=["people", "ann"], field="email")["rows"]
    assert [(row["seq"], set(row["value"])) for row in rows] == [(3, {"erased"}), (1, {"erased"})]
    facts = get(rewritten, "/api/log", limit=20)["facts"]
    assert {f["seq"]: f["value"] for f in facts}[3] == {"erased": digest}
    assert [f["seq"] for f in facts] == [10, 9, 8, 7, 3, 2, 1]
    changes = get(rewritten, "/api/diff", **{"from": 0, "to": 3, "ns": ["people"]})["changes"]
    assert {c["field"]: c["new"] for c in changes}["email"] == {"erased": digest}


def test_pruned_history_is_a_410_with_the_reason(rewritten: Site) -> None:
    for path, params in (
        ("/api/namespace", {"ns": ["sensor"], "seq": 5}),
        ("/api/history", {"ns": ["sensor"], "field": "v", "seq": 5}),
        ("/api/diff", {"from": 5, "to": 8, "ns": ["sensor"]}),
    ):
        status, body = status_of(rewritten, path, **params)
        assert status == 410, (path, body)
        assert "was pruned" in body["error"] and body["pruned"] is True
    assert get(rewritten, "/api/history", ns=["sensor"], field="v")["total"] == 2


def test_the_page_and_its_assets_ship_in_the_package(site: Site) -> None:
    with urllib.request.urlopen(site.url + "/", timeout=30) as response:
        page = response.read().decode()
    assert '<script src="/static/app.js">' in page
    for asset in ("app.js", "style.css"):
        with urllib.request.urlopen(f"{site.url}/static/{asset}", timeout=30) as response:
            assert response.status == 200
    for file in STATIC.iterdir():
        text = file.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_importing_everstore_does_not_import_starlette() -> None:
    code = "import sys, everstore; print('starlette' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_serve_runs_until_interrupted_then_closes_the_store(tmp_path: Path) -> None:
    path = tmp_path / "served.db"
    with Store(Sqlite3(path)) as store:
        store.storage("doc").title = "hello"
    code = f"from everstore.web import serve; serve({str(path)!r}, port=0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "serve() printed no address within 60 s"
        line = proc.stdout.readline()
        assert line.startswith(f"everstore: serving {path} on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "api/namespaces", timeout=30) as response:
            assert json.loads(response.read())["items"] == [{"name": "doc", "parts": ["doc"]}]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Store(Sqlite3(path)) as again:  # closed cleanly: the file opens and reads
        assert again.storage("doc").title == "hello"


# -- in a browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip(
            "chromium and chromium-driver are not installed (.ci/install-chromium.sh installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,720"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15)


def _texts(driver: Any, selector: str) -> list[str]:
    # read in one script: the page re-renders while it loads, and elements found one
    # call earlier may be gone by the next
    # (an SVG element has no innerText: its textContent then)
    script = (
        "return Array.from(document.querySelectorAll(arguments[0]),"
        " n => (n.innerText ?? n.textContent).trim())"
    )
    return list(driver.execute_script(script, selector))


def _shows(driver: Any, selector: str, text: str) -> bool:
    return any(text in shown for shown in _texts(driver, selector))


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(target))
    return target


def test_browser_clicks_through_every_view(site: Site, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = browser
    wait = _wait(driver)
    driver.get(site.url + "/")

    # the namespace list, then the search box
    wait.until(lambda d: _shows(d, "#ns-list a", "game/alice"))
    names = _texts(driver, "#ns-list a")
    assert names[:6] == ["config", "game/alice", "game/bob", "game/carol", "users/ann", "users/bob"]
    assert len(names) == 50
    _shot(driver, tmp_path, "namespaces")
    driver.find_element(By.ID, "ns-more").click()
    wait.until(lambda d: len(_texts(d, "#ns-list a")) == 6 + ZONE)
    driver.find_element(By.ID, "ns-search").send_keys("users")
    wait.until(lambda d: _texts(d, "#ns-list a") == ["users/ann", "users/bob"])
    _shot(driver, tmp_path, "search")

    # a namespace's fields and values
    driver.find_element(By.LINK_TEXT, "users/ann").click()
    wait.until(lambda d: _shows(d, "#fields td.value", "'ann@example.com'"))
    assert _texts(driver, "#fields a.field-link") == ["email", "age"]
    assert "41" in _texts(driver, "#fields td.value")
    driver.get(site.url + "/#/ns?ns=game&ns=alice")
    wait.until(lambda d: _shows(d, "#fields td.value", "42"))
    _shot(driver, tmp_path, "namespace")

    # a numeric field's history and timeline
    driver.find_element(By.LINK_TEXT, "score").click()
    wait.until(lambda d: len(_texts(d, "#history tbody tr")) == 5)
    assert _texts(driver, "#history td.value") == ["42", "30", "15", "20", "10"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#plot polyline")) == 1
    assert len(driver.find_elements(By.CSS_SELECTOR, "#plot circle")) == 5
    _shot(driver, tmp_path, "history")
    Select(driver.find_element(By.ID, "plot-axis")).select_by_value("version")
    wait.until(lambda d: _shows(d, "#plot text", "seq 1"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#plot circle")) == 5

    # as of a seq: the namespace as it was at the mark
    driver.find_element(By.ID, "back-ns").click()
    wait.until(lambda d: _shows(d, "#fields td.value", "42"))
    seq_box = driver.find_element(By.ID, "asof-seq")
    seq_box.clear()
    seq_box.send_keys(str(site.mark), Keys.ENTER)
    wait.until(lambda d: _shows(d, "#fields td.value", "30"))
    assert not _shows(driver, "#fields td.value", "42")
    assert f"seq {site.mark}" in driver.find_element(By.ID, "asof-label").text
    _shot(driver, tmp_path, "as-of")
    driver.find_element(By.ID, "asof-now").click()
    wait.until(lambda d: _shows(d, "#fields td.value", "42"))
    assert driver.find_element(By.ID, "asof-label").text == ""

    # the live log: a fact written meanwhile appears without a reload
    driver.find_element(By.ID, "nav-log").click()
    wait.until(lambda d: _shows(d, "#log td.value", "'light'"))
    site.writer.storage("game", "dave").score = 12345
    wait.until(lambda d: _shows(d, "#log td.value", "12345"))
    assert _texts(driver, "#log tbody tr td:nth-child(3)")[0] == "game/dave"
    _shot(driver, tmp_path, "log")

    # a diff between two moments
    driver.find_element(By.ID, "nav-diff").click()
    wait.until(lambda d: d.find_elements(By.ID, "diff-from"))
    for box, value in (("diff-from", site.mark), ("diff-to", site.mark + 4)):
        field = driver.find_element(By.ID, box)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "diff-go").click()
    wait.until(lambda d: len(_texts(d, "#diff tbody tr")) == 4)
    rows = _texts(driver, "#diff tbody tr")
    assert rows[0].split() == ["game/alice", "score", "changed", "30", "42"]
    assert rows[2].split() == ["users/bob", "nickname", "deleted", "'bobby'"]
    _shot(driver, tmp_path, "diff")
    for name in ("namespaces", "search", "namespace", "history", "as-of", "log", "diff"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_browser_marks_erased_values_and_shows_pruned_history_as_an_error(
    rewritten: Site, browser: Any, tmp_path: Path
) -> None:
    driver = browser
    wait = _wait(driver)
    driver.get(rewritten.url + "/#/field?ns=people&ns=ann&field=email")
    wait.until(lambda d: len(_texts(d, "#history td.value span.erased")) == 2)
    assert _texts(driver, "#history td.value") == ["erased", "erased"]
    _shot(driver, tmp_path, "erased")
    driver.get(rewritten.url + "/#/ns?ns=sensor&seq=5")
    wait.until(lambda d: _shows(d, "#error", "was pruned"))
    _shot(driver, tmp_path, "pruned")
