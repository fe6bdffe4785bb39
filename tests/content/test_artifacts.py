"""Artifacts: content-addressed objects, the run manifest, inline copies, integrity."""

import json
import os
import time
import zlib

import pytest

import gitml
import gitml.content.cache as cache
import gitml.ops
from gitml.errors import ArtifactRemoteError, ConflictError, IntegrityError, InvalidInputError, NotFoundError
from tests.conftest import git, run_python


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "small.txt").write_text("hello artifacts\n")
    (root / "sub" / "big.bin").write_bytes(os.urandom(200_000))
    return root


def ref_of(run) -> str:
    return f"refs/gitml/runs/{run.info.experiment_id}/{run.info.run_id}"


def test_log_list_download_and_load(repo, data_dir, tmp_path):
    with gitml.start_run() as run:
        gitml.log_artifacts(str(data_dir), "data")
        gitml.log_artifact(str(data_dir / "small.txt"))
        gitml.log_text("notes here", "notes/readme.md")
        gitml.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.yaml")
        gitml.log_dict({"a": 1}, "config.json")
        gitml.log_table({"x": [1, 2], "y": ["a", "b"]}, "table.json")
    rid = run.info.run_id
    c = gitml.ops.Operations(repo)
    assert [(f.path, f.is_dir) for f in c.list_artifacts(rid)] == [
        ("config.json", False),
        ("config.yaml", False),
        ("data", True),
        ("notes", True),
        ("small.txt", False),
        ("table.json", False),
    ]
    assert [(f.path, f.file_size) for f in c.list_artifacts(rid, "data/sub")] == [("data/sub/big.bin", 200_000)]
    out = gitml.artifacts.download_artifacts(run_id=rid, artifact_path="data", dst_path=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "data" / "sub" / "big.bin").read_bytes() == (data_dir / "sub" / "big.bin").read_bytes()
    assert out == str(tmp_path / "dl" / "data")
    one = c.download_artifacts(rid, "small.txt", str(tmp_path / "one"))
    assert open(one).read() == "hello artifacts\n"
    assert gitml.artifacts.load_text(f"runs:/{rid}/notes/readme.md") == "notes here"
    assert gitml.artifacts.load_dict(f"runs:/{rid}/config.yaml") == {"lr": 0.1, "layers": [1, 2]}
    assert json.loads(open(c.download_artifacts(rid, "config.json", str(tmp_path / "j"))).read()) == {"a": 1}
    table = gitml.artifacts.load_table(f"runs:/{rid}/table.json")
    assert list(table.columns) == ["x", "y"] and table["y"].tolist() == ["a", "b"]
    with pytest.raises(NotFoundError):
        c.download_artifacts(rid, "nope", str(tmp_path / "x"))
    c.close()


def test_small_files_inline_in_git_large_only_by_hash(repo, data_dir):
    with gitml.start_run() as run:
        gitml.log_artifacts(str(data_dir))
    gitml.flush()
    ref = ref_of(run)
    assert git(repo, "show", f"{ref}:.gitml/run/artifacts/small.txt") == "hello artifacts\n"
    files = git(repo, "ls-tree", "-r", "--name-only", ref).split()
    assert ".gitml/run/artifacts/sub/big.bin" not in files
    manifest = git(repo, "show", f"{ref}:.gitml/run/artifacts.yaml")
    assert "sub/big.bin" in manifest and "sha256" in manifest and "200000" in manifest
    git(repo, "fsck", "--strict")


def test_inline_threshold_is_configurable(repo, data_dir):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    result = CliRunner().invoke(cli, ["-C", str(repo), "config", "artifacts.inline_max_bytes", "4"])
    assert result.exit_code == 0, result.output
    with gitml.start_run() as run:
        gitml.log_artifact(str(data_dir / "small.txt"))
    gitml.flush()
    files = git(repo, "ls-tree", "-r", "--name-only", ref_of(run)).split()
    assert ".gitml/run/artifacts/small.txt" not in files
    assert gitml.artifacts.load_text(f"runs:/{run.info.run_id}/small.txt") == "hello artifacts\n"


def test_same_content_is_stored_once_and_not_rehashed(repo, data_dir, monkeypatch):
    calls = []
    original = cache._copy_hashing
    monkeypatch.setattr(cache, "_copy_hashing", lambda src, dst: calls.append(src) or original(src, dst))
    settled = time.time() - 60  # written a while ago: a file changed within a clock tick of its hashing
    for path in data_dir.rglob("*"):  # is hashed again next time ("racily clean", as git's index says)
        os.utime(path, (settled, settled))
    with gitml.start_run():
        gitml.log_artifacts(str(data_dir))
    assert len(calls) == 1  # the big file; small ones are hashed in memory
    with gitml.start_run():
        gitml.log_artifacts(str(data_dir))
    assert len(calls) == 1  # unchanged: the stat cache answers
    objects = [f for _, _, fs in os.walk(repo / ".git" / "gitml" / "cache") for f in fs]
    assert len(objects) == 1  # the big file, once; the small one lives in git until pushed
    (data_dir / "sub" / "big.bin").write_bytes(os.urandom(200_000))
    with gitml.start_run():
        gitml.log_artifacts(str(data_dir))
    assert len(calls) == 2  # changed: hashed again


@pytest.mark.parametrize(
    "bad", ["../escape.txt", "/abs.txt", "a/../../b", "ctl\x07.txt", "nul\x00", "a//b", "back\\slash"]
)
def test_hostile_artifact_paths_refused(repo, data_dir, bad):
    with gitml.start_run() as run:
        gitml.log_text("kept", "kept.txt")
        with pytest.raises(InvalidInputError):
            gitml.log_text("x", bad)
        with pytest.raises(InvalidInputError):
            gitml.log_artifact(str(data_dir / "small.txt"), bad)
    assert [f.path for f in gitml.ops.Operations(repo).list_artifacts(run.info.run_id)] == ["kept.txt"]


def test_checkpoint_rewritten_in_place_keeps_every_logged_version(repo, tmp_path):
    """The checkpoint-per-epoch loop: the same file rewritten in place (as torch.save
    does) and logged after each epoch; every epoch's bytes stay readable and pushable."""
    checkpoint = tmp_path / "model.pt"
    versions = []
    with gitml.start_run() as run:
        for epoch in range(3):
            data = bytes([epoch]) * (5 << 20)
            with open(checkpoint, "r+b" if checkpoint.exists() else "wb") as f:  # same inode each time
                f.write(data)
            gitml.log_artifact(str(checkpoint), f"epoch{epoch}")
            versions.append(data)
    gitml.flush()
    c = gitml.ops.Operations(repo)
    for epoch, data in enumerate(versions):
        assert c.artifacts.read_bytes(run.info.run_id, f"epoch{epoch}/model.pt") == data
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    from gitml import sync

    os.environ["GITML_ARTIFACT_REMOTE"] = str(tmp_path / "store")
    try:
        c2 = gitml.ops.Operations(repo)
        result = sync.push(c2, str(origin))
        assert result.rejected == {} and result.uploaded == 3
        c2.close()
    finally:
        del os.environ["GITML_ARTIFACT_REMOTE"]
    c.close()


def test_symlinks_outside_the_folder_are_refused(repo, tmp_path):
    folder = tmp_path / "logged"
    folder.mkdir()
    (folder / "inside.txt").write_text("in")
    (folder / "alias.txt").symlink_to(folder / "inside.txt")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    with gitml.start_run() as run:
        gitml.log_artifacts(str(folder), "ok")  # a link that stays inside is followed
        (folder / "leak.txt").symlink_to(secret)
        with pytest.raises(InvalidInputError, match="outside the logged folder"):
            gitml.log_artifacts(str(folder), "bad")
        (folder / "leak.txt").unlink()
        (folder / "up").symlink_to(tmp_path)
        with pytest.raises(InvalidInputError, match="outside"):
            gitml.log_artifacts(str(folder), "bad2")
    paths = [f.path for f in gitml.ops.Operations(repo).list_artifacts(run.info.run_id, "ok")]
    assert paths == ["ok/alias.txt", "ok/inside.txt"]


def test_file_and_folder_conflict(repo):
    with gitml.start_run():
        gitml.log_text("x", "a")
        with pytest.raises(ConflictError):
            gitml.log_text("y", "a/b")
        gitml.log_text("z", "c/d")
        with pytest.raises(ConflictError):
            gitml.log_text("w", "c")


def test_corrupt_cached_object_is_refused_and_dropped(repo, data_dir, tmp_path):
    with gitml.start_run() as run:
        gitml.log_artifacts(str(data_dir))
    c = gitml.ops.Operations(repo)
    entry = c.artifacts.manifest(run.info.run_id)["sub/big.bin"]
    cached = c.artifacts.content.cache_path(entry["sha256"])
    os.chmod(cached, 0o644)
    with open(cached, "r+b") as f:
        f.write(b"tampered")
    with pytest.raises((IntegrityError, ArtifactRemoteError)) as info:
        c.download_artifacts(run.info.run_id, "sub/big.bin", str(tmp_path / "out"))
    message = str(info.value)
    assert run.info.run_id in message and "sub/big.bin" in message and entry["sha256"] in message
    assert not os.path.exists(cached)  # never kept
    assert not os.path.exists(tmp_path / "out" / "sub" / "big.bin")
    c.close()


def test_small_files_are_read_from_their_inline_copy(repo, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", str(tmp_path / "empty-remote"))
    with gitml.start_run() as run:
        gitml.log_artifact(str(data_dir / "small.txt"))
    c = gitml.ops.Operations(repo)
    sha = c.artifacts.manifest(run.info.run_id)["small.txt"]["sha256"]
    assert not c.artifacts.content.has_local(sha)  # no cache copy, no remote copy
    path = c.download_artifacts(run.info.run_id, "small.txt", str(tmp_path / "o"))
    assert open(path).read() == "hello artifacts\n"
    c.close()


def test_png_from_numpy(repo):
    np = pytest.importorskip("numpy")
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    image[1, 2] = [255, 0, 10]
    with gitml.start_run() as run:
        gitml.log_image(image, "img.png")
        gitml.log_image(np.full((2, 2), 0.5), "gray.png")
        with pytest.raises(InvalidInputError):
            gitml.log_image(np.zeros((2, 2, 7)), "bad.png")
    data = gitml.ops.Operations(repo).artifacts.read_bytes(run.info.run_id, "img.png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    rows = zlib.decompress(idat)
    assert len(rows) == 3 * (1 + 4 * 3) and rows[1 * 13 + 1 + 2 * 3 : 1 * 13 + 1 + 2 * 3 + 3] == bytes([255, 0, 10])


def test_figure(repo):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with gitml.start_run() as run:
        gitml.log_figure(fig, "plot.png")
    assert gitml.ops.Operations(repo).artifacts.read_bytes(run.info.run_id, "plot.png").startswith(b"\x89PNG")


def test_missing_fsspec_backend_gives_install_hint(repo, monkeypatch):
    monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "gcs://some-bucket/artifacts")
    c = gitml.ops.Operations(repo)
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    with pytest.raises(ArtifactRemoteError, match="pip install gcsfs"):
        _ = c.artifacts.content.fs
    c.close()


def test_committed_config_refuses_credentials(repo):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    runner = CliRunner()
    bad = runner.invoke(cli, ["-C", str(repo), "config", "--committed", "artifacts.remote", "s3://key:secret@bucket/x"])
    assert bad.exit_code == 1 and "credentials" in bad.output
    ok = runner.invoke(cli, ["-C", str(repo), "config", "--committed", "artifacts.remote", "s3://bucket/x"])
    assert ok.exit_code == 0
    assert "s3://bucket/x" in (repo / ".gitml" / "config.yaml").read_text()
    local = runner.invoke(cli, ["-C", str(repo), "config", "artifacts.remote", "/tmp/elsewhere"])
    assert local.exit_code == 0
    shown = runner.invoke(cli, ["-C", str(repo), "config", "artifacts.remote"])
    assert shown.output.strip() == "/tmp/elsewhere"  # the clone's setting wins over the committed one


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("artifacts.storage_options", '{"client_kwargs": {"aws_secret_access_key": "s"}}', "aws_secret_access_key"),
        ("artifacts.storage_options", '{"config_kwargs": [{"token": "t"}]}', "token"),
        ("artifacts.remote", "az://box/x?sv=2024-01-01&sig=AbC%3D", "sig"),
        ("artifacts.remote", "https://host/store?access_token=t", "access_token"),
    ],
)
def test_committed_config_refuses_credentials_at_any_depth(repo, key, value, named):
    """README: credentials never go in the committed file: not in nested storage options
    (client_kwargs), nor in a URL's query (an Azure SAS signature, a token)."""
    from click.testing import CliRunner

    from gitml.cli.main import cli

    bad = CliRunner().invoke(cli, ["-C", str(repo), "config", "--committed", key, value])
    assert bad.exit_code == 1 and named in bad.output and "credentials" in bad.output, bad.output
    assert not (repo / ".gitml" / "config.yaml").exists()
    fine = '{"client_kwargs": {"region_name": "eu-west-1"}, "endpoint_url": "https://s3.example/?x=1"}'
    assert (
        CliRunner().invoke(cli, ["-C", str(repo), "config", "--committed", "artifacts.storage_options", fine]).exit_code
        == 0
    )


def test_relative_artifact_folder_is_read_from_the_top_of_the_work_tree(repo, monkeypatch):
    from gitml.content import config
    from gitml.store.git import open_store

    monkeypatch.delenv("GITML_ARTIFACT_REMOTE", raising=False)
    with open_store(repo) as store:
        config.set_value(store, "artifacts.remote", "./artstore", committed=True)
        (repo / "sub").mkdir()
        monkeypatch.chdir(repo / "sub")
        assert config.load(store)["artifacts.remote"] == str(repo / "artstore")
        monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "here")  # the environment: from the current folder
        assert config.load(store)["artifacts.remote"] == str(repo / "sub" / "here")
        monkeypatch.setenv("GITML_ARTIFACT_REMOTE", "s3://bucket/x")
        assert config.load(store)["artifacts.remote"] == "s3://bucket/x"


def test_killed_process_keeps_logged_artifacts(repo, data_dir):
    script = (
        "import os, signal, gitml\n"
        "run = gitml.start_run()\n"
        f"gitml.log_artifacts({str(data_dir)!r}, 'd')\n"
        "print(run.info.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = run_python(script, cwd=repo, env={"GITML_FLUSH_INTERVAL": "3600"}, check=False)
    run_id = out.stdout.strip()
    c = gitml.ops.Operations(repo)
    assert c.get_run(run_id).info.status == "KILLED"
    assert sorted(c.artifacts.manifest(run_id)) == ["d/small.txt", "d/sub/big.bin"]
    c.close()


def test_artifacts_cli_lists_and_gets(repo, data_dir, tmp_path):
    from click.testing import CliRunner

    from gitml.cli.main import cli

    with gitml.start_run() as run:
        gitml.log_artifacts(str(data_dir))
    gitml.flush()
    runner = CliRunner()
    short = run.info.run_id[:8]
    listed = runner.invoke(cli, ["-C", str(repo), "artifacts", "ls", short])
    assert listed.exit_code == 0 and "small.txt" in listed.output and "sub/" in listed.output
    inner = runner.invoke(cli, ["-C", str(repo), "artifacts", "ls", short, "sub"])
    assert "sub/big.bin" in inner.output and "195.3 KiB" in inner.output
    got = runner.invoke(cli, ["-C", str(repo), "artifacts", "get", short, ".", "-o", str(tmp_path / "all")])
    assert got.exit_code == 0, got.output
    assert (tmp_path / "all" / "small.txt").read_text() == "hello artifacts\n"
    assert (tmp_path / "all" / "sub" / "big.bin").stat().st_size == 200_000
    bad = runner.invoke(cli, ["-C", str(repo), "artifacts", "get", short, "../x", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "\n" == bad.output[-1] and bad.output.count("\n") == 1
