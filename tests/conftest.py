"""Shared pytest fixtures.

The resource fixtures never reach the real network: files are served by a loopback HTTP server started inside the
test session, and the resource cache lives in a per-test temporary folder.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scvi_networkvi.model._thread_backoff import ENVIRONMENT_SWITCH

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True, scope="session")
def fixed_training_threads() -> Iterator[None]:
    """Trainings keep their thread count (``train(adapt_threads=None)`` reads this switch).

    The thread back-off follows the machine's load, so on a busy machine two trainings of one test could differ in the
    last digits; its own tests (``tests/test_thread_backoff.py``) set the switch back. Session scope: module-scoped
    fixtures train before function-scoped ones run (the slow planted-signal model counted 8 significant terms instead
    of 10 when the back-off acted in it under load).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT_SWITCH, "0")
        yield


@dataclass
class _Route:
    body: bytes
    status: int = 200
    truncate: bool = False
    delay: float = 0.0


class LoopbackServer:
    """A threaded HTTP server on ``127.0.0.1`` serving registered byte strings and counting requests per path.

    ``serve(path, body)`` answers ``GET path`` with ``body``; ``status=404`` / ``500`` answers with that error,
    ``truncate=True`` announces a Content-Length larger than the body and closes the connection after the body,
    ``delay`` sleeps before answering. Unknown paths get a 404. ``count(path)`` is the number of requests for
    ``path`` (query strings ignored), whatever the answer was.
    """

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with owner._lock:
                    owner._counts[path] += 1
                    route = owner._routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    time.sleep(route.delay)
                if route.status != 200:
                    self.send_error(route.status)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                extra = 1000 if route.truncate else 0
                self.send_header("Content-Length", str(len(route.body) + extra))
                if route.truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(route.body)
                self.wfile.flush()
                if route.truncate:
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-http", daemon=True
        )
        self._thread.start()
        self._stopped = False

    def serve(self, path: str, body: bytes, *, status: int = 200, truncate: bool = False, delay: float = 0.0) -> str:
        """Register ``body`` at ``path`` and return its full url."""
        with self._lock:
            self._routes[path] = _Route(body=body, status=status, truncate=truncate, delay=delay)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def stop(self) -> None:
        """Shut the server down and release its port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure requests talks to 127.0.0.1 directly, whatever proxy the environment configures."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def loopback_server(no_proxy: None) -> Iterator[LoopbackServer]:
    """A :class:`LoopbackServer` running for the duration of the test."""
    server = LoopbackServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refused_url(no_proxy: None) -> str:
    """A loopback url nobody listens on (its port was bound, then closed): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.bin"


@pytest.fixture
def resource_env(tmp_path, monkeypatch: pytest.MonkeyPatch, no_proxy: None):
    """Point the resource cache at a fresh temporary folder and make sure offline mode is off; returns the folder."""
    from scvi_networkvi.resources import DATA_DIR_ENV, OFFLINE_ENV

    data_dir = tmp_path / "resource-cache"
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    return data_dir


@pytest.fixture
def offline_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A fresh temporary resource cache in offline mode: only the embedded example resources can be read."""
    from scvi_networkvi.resources import DATA_DIR_ENV, OFFLINE_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(OFFLINE_ENV, "1")


@pytest.fixture
def use_registry(monkeypatch: pytest.MonkeyPatch):
    """Return a function installing a :class:`Registry` as the package default for the duration of the test.

    ``_api`` and ``_store`` import ``default_registry`` by name, so every module holding the name is patched.
    """
    from scvi_networkvi.resources import _api, _registry, _store

    def install(registry):
        for module in (_registry, _api, _store):
            monkeypatch.setattr(module, "default_registry", lambda: registry)
        return registry

    return install


@pytest.fixture(scope="session")
def example_sites():
    """Factory: the embedded example's cells from the given sites, as a new MuData whose ``Site`` holds plain strings.

    Plain strings, so that a site left out is not a registered batch category.
    """
    import mudata as md

    import scvi_networkvi as nvi

    full = nvi.datasets.example()

    def make(sites) -> md.MuData:
        keep = full["rna"].obs["Site"].isin(sites).to_numpy()
        mdata = md.MuData({mod: full[mod][keep].copy() for mod in full.mod})
        for mod in mdata.mod:
            mdata[mod].obs["Site"] = mdata[mod].obs["Site"].astype(str)
        return mdata

    return make


@pytest.fixture
def tiny_wiring():
    """Factory: the wiring of the given feature ids on the tiny test GO, GAF and interaction table (not cached).

    Gene nodes of 3 neurons, GO terms of 2, a root of 5, depth at most 3.
    """
    from scvi_networkvi.wiring import compile_wiring

    data = Path(__file__).parent / "data"

    def make(ids):
        return compile_wiring(
            ids,
            go=data / "tiny.obo",
            annotations=data / "tiny.gaf",
            interactions=data / "tiny_interactions.csv",
            max_depth=3,
            gene_size=3,
            term_size=2,
            root_size=5,
            cache=False,
        )

    return make


@pytest.fixture(scope="session")
def load_script():
    """Factory: import a script of the repository (``benchmarks/x.py``, ``scripts/x.py``) as a module by its path."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1]

    def load(relative: str, name: str | None = None):
        path = root / relative
        name = name or path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # scripts that import their siblings by name find this one
        # as when run as a script: its folder is on sys.path, so its helper modules (``_scaling_report``) import
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module

    return load


@pytest.fixture
def offline_session_cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline resources from one cache shared by the session's tests (``pytestmark = usefixtures(...)`` in a file).

    The cache sits in the session's temporary folder, so the embedded example's resources are unpacked once per
    session and the user's own cache is never read or written; offline, so that no test reaches the network.
    """
    monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path_factory.getbasetemp() / "nvi-cache"))
    monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")


@pytest.fixture(scope="session")
def registry_file():
    """Factory: the path of a registry resource in the session's resource cache, fetched there on first use.

    For slow tests, which may reach the network: the cache is the one the session started with (the user's, or
    ``$SCVI_NETWORKVI_DATA_DIR``), not the per-test temporary caches that other fixtures set up, so that a resource
    is downloaded once and reused by later sessions.
    """
    from scvi_networkvi.resources import ResourceStore, cache_dir

    store = ResourceStore(root=cache_dir())

    def fetch(name: str) -> Path:
        return store.fetch(name)

    return fetch


#: Lightning's start-up lines that NETWORKVI's calls must not show (tests/test_quiet.py).
LIGHTNING_CHATTER = ("GPU available", "TPU available", "HPU available", "LOCAL_RANK", "Tip:", "Seed set to", "stopped:")


#: mudata 0.3's own FutureWarning, raised by every MuData it builds or copies (the oldest supported stack; mudata
#: >= 0.4 does not raise it): the user's own mdata.copy() raises it too, so it is mudata's noise, not ours.
MUDATA_03_UPDATE = "From 0.4 .update() will not pull"


def shown_to_users(category: type[Warning], message: str, filename: str) -> bool:
    """Whether Python's default filters show a warning and it is ours to prevent.

    Deprecation warnings raised inside a library on its own behalf are hidden by default (PendingDeprecationWarning
    always); one attributed to our code is not. mudata 0.3's update notice is left to mudata.
    """
    ours = "scvi_networkvi" in filename
    if issubclass(category, PendingDeprecationWarning | DeprecationWarning) and not ours:
        return False
    return not message.startswith(MUDATA_03_UPDATE)


@pytest.fixture
def noise(recwarn):
    """What a user would see of NETWORKVI's calls besides their own output, recorded while the test runs.

    ``noise.lines``: the messages of every record that reaches a handler of Lightning's loggers (its start-up lines
    would); ``noise.warnings()``: the warnings shown with Python's default filters that are not a third party's own
    deprecation (a DeprecationWarning raised inside a library on its own behalf is hidden by default; one attributed
    to our code is not).
    """
    import logging

    class Noise(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.NOTSET)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

        def warnings(self) -> list[str]:
            return [
                f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                for w in recwarn
                if shown_to_users(w.category, str(w.message), w.filename)
            ]

        def chatter(self) -> list[str]:
            return [line for line in self.lines if any(text in line for text in LIGHTNING_CHATTER)]

    handler = Noise()
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]
    for log in loggers:
        log.addHandler(handler)
    try:
        yield handler
    finally:
        for log in loggers:
            log.removeHandler(handler)


@pytest.fixture(scope="session")
def example_probe_model():
    """NETWORKVI (GO encoder, small sizes) trained 12 epochs on the example, shared by the interpretation tests.

    Trained once per session with seed 0, whichever test file asks first, so every file probes the same model.
    """
    import scvi

    import scvi_networkvi as nvi

    resources = nvi.datasets.example_resources()
    scvi.settings.seed = 0
    mdata = nvi.datasets.example()
    mdata.obs["cell_type"] = mdata["rna"].obs["cell_type"].astype("category")
    mdata.obs["Site"] = mdata["rna"].obs["Site"].astype(str)
    modalities = {"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"}
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="Site", modalities=modalities)
    wiring = {key: resources[key] for key in ("go", "annotations", "interactions")}
    trained = nvi.NETWORKVI(mdata, **wiring, gene_size=5, go_size=2)
    trained.train(max_epochs=12, accelerator="cpu", enable_progress_bar=False, lr=3e-3)
    return trained


@pytest.fixture(scope="session")
def example_importances(example_probe_model):
    """The default importance table of :func:`example_probe_model` (seed 0), computed once per session."""
    return example_probe_model.get_importances(groupby="cell_type", key_added=None, seed=0)
