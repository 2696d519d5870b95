"""Deblurring files on a local Dask cluster of 2 worker processes."""

import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from hqsdeblur import distributed as hqd  # noqa: E402
from hqsdeblur.batch import deblur_files, process_file  # noqa: E402
from hqsdeblur.io import read_image, write_image  # noqa: E402

SETTINGS = {"method": "tv", "kernel_size": 9, "backend": "numpy"}
KILL_NAME = "kill_me.png"


def _blurred(seed, shape=(64, 80)):
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    x = np.zeros(shape)
    for _ in range(8):
        y0, x0 = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        x[y0 : y0 + rng.integers(6, 30), x0 : x0 + rng.integers(6, 30)] = rng.random()
    k = np.zeros((7, 7))
    k[3, 1:6] = 1 / 5
    return np.clip(fftconvolve(x, k, mode="same") + 0.01 * rng.standard_normal(shape), 0, 1)


def _make_inputs(folder, names):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, n in enumerate(names):
        p = os.path.join(folder, n)
        write_image(p, _blurred(i))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    marker = str(tmp_path_factory.mktemp("kill") / "killed")
    old = {k: os.environ.get(k) for k in (hqd.KILL_ON_ENV, hqd.KILL_MARKER_ENV)}
    # worker processes inherit these when they are spawned (and respawned)
    os.environ[hqd.KILL_ON_ENV] = KILL_NAME
    os.environ[hqd.KILL_MARKER_ENV] = marker
    client = hqd.local_client(2, threads_per_worker=1)
    try:
        client.wait_for_workers(2, timeout=60)
        yield client, marker
    finally:
        client.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stray(folder):
    return [n for n in os.listdir(folder) if n.startswith(".") or ".tmp" in n]


def test_distributed_equals_in_process(cluster, tmp_path):
    client, _ = cluster
    inputs = _make_inputs(tmp_path / "in", ["a.png", "b.png", "c.png", "d.png"])
    local = tmp_path / "local"
    os.makedirs(local)
    for p in inputs:
        name = os.path.splitext(os.path.basename(p))[0] + ".npy"
        assert process_file(p, local / name, settings=SETTINGS)["status"] == "ok"
    rows = deblur_files(inputs, tmp_path / "dist", settings=SETTINGS, client=client, ext="npy", progress=False)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [r["input"] for r in rows] == [os.fspath(p) for p in inputs]  # input order
    for r in rows:
        a = np.load(r["output"])
        b = np.load(local / os.path.basename(r["output"]))
        assert a.dtype == b.dtype and a.shape == b.shape == (64, 80)
        assert np.array_equal(a, b)  # bit for bit


def test_worker_killed_batch_completes(cluster, tmp_path):
    client, marker = cluster
    assert not os.path.exists(marker)
    names = ["p0.png", KILL_NAME, "p2.png", "p3.png"]
    inputs = _make_inputs(tmp_path / "in", names)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    rows = deblur_files(inputs + [broken], out, settings=SETTINGS, client=client, progress=False)
    assert os.path.exists(marker)  # a worker really died on kill_me.png
    status = {os.path.basename(r["input"]): r["status"] for r in rows}
    assert status == {**{n: "ok" for n in names}, "broken.png": "failed"}
    err = rows[-1]["error"]
    assert "broken.png" in err and "\n" not in err
    for n in names:
        img, info = read_image(out / n)
        assert img.shape == (64, 80) and info.bit_depth == 8
    assert sorted(os.listdir(out)) == sorted(names)
    assert _stray(out) == []


def test_resume_with_skip_existing(cluster, tmp_path):
    client, _ = cluster
    names = [f"r{i}.png" for i in range(4)]
    inputs = _make_inputs(tmp_path / "in", names)
    out = tmp_path / "out"
    first = deblur_files(inputs[:2], out, settings=SETTINGS, client=client, progress=False)  # "interrupted"
    assert [r["status"] for r in first] == ["ok", "ok"]
    before = {n: os.stat(out / n) for n in names[:2]}
    rows = deblur_files(inputs, out, settings=SETTINGS, client=client, skip_existing=True, progress=False)
    assert [r["status"] for r in rows] == ["skipped", "skipped", "ok", "ok"]
    for n, st in before.items():
        now = os.stat(out / n)
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    assert sorted(os.listdir(out)) == names and _stray(out) == []


def test_lost_attempt_output_reported_ok(tmp_path):
    # what a retried task sees when its first attempt wrote the output and
    # then lost its worker: success, not "exists" or "skipped"
    (tmp_path / "o.png").write_bytes(b"done")
    job = {"input": str(tmp_path / "i.png"), "output": str(tmp_path / "o.png"), "kernel": None,
           "overwrite": False, "skip_existing": False, "_absent": True}
    row = hqd._run_job(job, SETTINGS)
    assert row["status"] == "ok" and row["error"] is None
    job["_absent"] = False  # it existed before the batch: process_file decides
    assert hqd._run_job(job, SETTINGS)["status"] == "failed"


def test_map_files_empty_and_model_path_plugin(cluster, tmp_path):
    client, _ = cluster
    assert hqd.map_files(client, [], SETTINGS) == []
    # a model path that does not load: every file fails with the reason, none crash the worker
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"nope")
    inputs = _make_inputs(tmp_path / "in", ["m.png"])
    jobs = [{"input": inputs[0], "output": str(tmp_path / "m_out.png"), "kernel": None,
             "overwrite": False, "skip_existing": False}]
    rows = hqd.map_files(client, jobs, {"method": "unrolled", "model": str(bad)}, progress=False)
    assert rows[0]["status"] == "failed" and "m.png" in rows[0]["error"]
    assert not os.path.exists(tmp_path / "m_out.png")
