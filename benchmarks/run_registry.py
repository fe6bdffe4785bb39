"""Registry benchmark: 50 models x 20 versions with stage assignments (~2,000 tags).

gitml and GTO 1.10.1 (the GTO peer venv, benchmarks/peers.py, made by setup_gto.sh) on the same repository
in the same run: listing the registry, resolving ``models:/m7@production``, registering one
more version. The tags are built fast (runs through gitml's API with background commits,
tag objects written as one pack by gitml's store, refs packed by ``git pack-refs``).
gitml is measured twice: as built (the ~400 small packs gitml's pack merging retired in
the build are still there, as for a minute after) and settled (those packs deleted by
that housekeeping); medians of ``--repeat`` in-process calls and of 3 CLI processes, each
registration taking a new run.

    python benchmarks/run_registry.py [--models 50] [--versions 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import peers  # benchmarks/peers.py: where the peer venvs live

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _git(repo, *args, input_text=None):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, input=input_text).stdout


def build(repo: str, models: int, versions: int, spares: int = 1) -> list[str]:
    from dulwich.objects import Commit, Tag

    import gitml.ops
    from gitml.registry.tags import Action, RegistryTag
    from gitml.store import yamlout

    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    gitml.set_tracking_uri(repo)
    run_ids = []
    for _ in range(models * versions + spares):
        with gitml.start_run() as run:
            gitml.log_text("flavors: {}\n", "model/MLmodel")
        run_ids.append(run.info.run_id)
    gitml.flush()
    client = gitml.ops.Operations(repo)
    store = client.registry.store
    objects, refs = [], []
    t0 = 1_700_000_000
    for m in range(models):
        counter = 0
        for v in range(versions):
            run_id = run_ids[m * versions + v]
            commit = store.ref(client.tracker.ref_of(run_id))
            events = [RegistryTag(Action.REGISTER, f"m{m}", version=f"v{v + 1}.0.0")]
            if v % 4 == 0:  # every version goes through dev or staging; every fourth to production
                counter += 1
                events.append(RegistryTag(Action.ASSIGN, f"m{m}", stage="dev", counter=counter))
            if v % 2 == 1:
                counter += 1
                events.append(RegistryTag(Action.ASSIGN, f"m{m}", stage="staging", counter=counter))
            if v % 4 == 3:
                counter += 1
                events.append(RegistryTag(Action.ASSIGN, f"m{m}", stage="production", counter=counter))
            for tag in events:
                obj = Tag()
                obj.object = (Commit, commit)
                obj.name = tag.name.encode()
                obj.tagger = b"Bench <bench@example.com>"
                obj.tag_time, obj.tag_timezone = t0, 0
                t0 += 1
                obj.message = yamlout.dump(
                    {
                        "gitml-registry": {
                            "model": tag.model,
                            "version": f"v{v + 1}.0.0",
                            "run_id": run_id,
                            "path": "model",
                        }
                    }
                )
                objects.append(obj)
                refs.append(f"create {tag.ref.decode()} {obj.id.decode()}\n")
    store.write(objects)
    store.release_kept(every=True)
    client.close()
    _git(repo, "update-ref", "--stdin", input_text="".join(refs))
    _git(repo, "pack-refs", "--all")
    return run_ids[models * versions :]


def timed(fn, repeat: int = 5) -> float:
    """The median wall time of ``repeat`` runs of ``fn`` (each call may take the next spare run)."""
    return timed_cpu(fn, repeat)[0]


def timed_cpu(fn, repeat: int = 5) -> tuple[float, float]:
    """Medians of the wall time and of the CPU time (this process's and its children's) of
    ``repeat`` runs of ``fn``: CPU time holds still when other work shares the machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(time.process_time() - cpu + after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def settle(repo: str) -> int:
    """What a minute later looks like: the packs gitml's pack merging retired during the build
    (kept readable for RETIRED_GRACE_SECONDS, then deleted by the next merge) are deleted, by
    that same housekeeping with their grace period run out. Returns the packs left."""
    from gitml.store.packs import maybe_merge_small_packs

    retired = os.path.join(repo, ".git", "gitml", "retired")
    past = time.time() - 3600
    for name in os.listdir(retired) if os.path.isdir(retired) else []:
        os.utime(os.path.join(retired, name), (past, past))
    maybe_merge_small_packs(
        os.path.join(repo, ".git", "objects", "pack"), os.path.join(repo, ".git", "gitml", "repack.lock")
    )
    return sum(n.endswith(".pack") for n in os.listdir(os.path.join(repo, ".git", "objects", "pack")))


def measure(
    repo: str, spares: list[str], first_version: int, repeat: int
) -> dict[str, tuple[tuple[float, float], ...]]:
    """``{operation: ((API wall, CPU), (CLI wall, CPU))}`` in seconds; each registration takes a spare run."""
    import gitml.ops
    from gitml.modelformat.uri import resolve_model_uri

    def fresh_list():
        with gitml.ops.Operations(repo) as c:
            c.registry.models()

    def fresh_resolve():
        with gitml.ops.Operations(repo) as c:
            resolve_model_uri(c, "models:/m7@production")

    todo = list(spares)
    version = [first_version]

    def register():
        with gitml.ops.Operations(repo) as c:
            c.registry.register("m7", todo.pop(), "model", version=f"v{version[0]}.0.0")
        version[0] += 1

    cli = [sys.executable, "-m", "gitml.cli.main"]

    def cli_register():
        subprocess.run(
            [*cli, "registry", "register", "m7", f"{todo.pop()}:model", "--version", f"v{version[0]}.0.0"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        version[0] += 1

    code = (
        "import gitml.pyfunc\nfrom gitml.modelformat.uri import resolve_model_uri\n"
        "resolve_model_uri(None, 'models:/m7@production')"
    )
    return {
        "list": (
            timed_cpu(fresh_list, repeat),
            timed_cpu(lambda: subprocess.run([*cli, "registry", "list"], cwd=repo, check=True, capture_output=True), 3),
        ),
        "resolve m7@production": (
            timed_cpu(fresh_resolve, repeat),
            timed_cpu(
                lambda: subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, capture_output=True), 3
            ),
        ),
        "register one version": (timed_cpu(register, repeat), timed_cpu(cli_register, 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="in-process repeats (the median is reported)")
    args = parser.parse_args()
    gto = peers.GTO_BIN
    if not os.path.exists(gto):
        subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "setup_gto.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        os.makedirs(repo)
        os.chdir(repo)
        start = time.perf_counter()
        spares = build(repo, args.models, args.versions, 2 * (args.repeat + 3) + 1)
        tags = len(_git(repo, "tag", "-l").split())
        packs = sum(n.endswith(".pack") for n in os.listdir(os.path.join(repo, ".git", "objects", "pack")))
        print(
            f"built {tags} tags over {args.models * args.versions} runs in {time.perf_counter() - start:.1f} s "
            f"({packs} packs, the retired ones still there)"
        )
        import gitml

        with gitml.ops.Operations(repo) as c:
            assert c.registry.models()["m7"].stages["production"] == f"v{args.versions}.0.0"
        per_pass = args.repeat + 3
        fresh = measure(repo, spares[:per_pass], args.versions + 1, args.repeat)
        left = settle(repo)
        settled = measure(repo, spares[per_pass : 2 * per_pass], args.versions + 1 + per_pass, args.repeat)
        gto_list = timed(lambda: subprocess.run([gto, "show"], cwd=repo, check=True, capture_output=True), 1)
        gto_resolve = timed(
            lambda: subprocess.run([gto, "show", "m7#production", "--ref"], cwd=repo, check=True, capture_output=True),
            1,
        )
        commit = _git(repo, "rev-parse", f"refs/gitml/runs/0/{spares[-1]}").strip()
        gto_register = timed(
            lambda: subprocess.run(
                [gto, "register", "m7", commit, "--version", "v999.0.0"], cwd=repo, check=True, capture_output=True
            ),
            1,
        )
        print(
            f"load average {os.getloadavg()[0]:.1f}; medians; 'settled': {left} packs once gitml's housekeeping "
            "deleted the packs it retired"
        )
        print("seconds: wall median (CPU median)")
        print(
            f"{'operation':<23}{'API':>15}{'API settled':>15}{'CLI':>15}{'CLI settled':>15}{'GTO CLI':>9}{'GTO/CLI':>9}"
        )
        for (name, (api, cli_t)), gto_t in zip(fresh.items(), (gto_list, gto_resolve, gto_register), strict=False):
            api_s, cli_s = settled[name]
            cells = "".join(f"{w:>7.3f} ({c:.3f})" for w, c in (api, api_s, cli_t, cli_s))
            print(f"{name:<23}{cells}{gto_t:>8.3f}s{gto_t / cli_s[0]:>8.1f}x")


if __name__ == "__main__":
    main()
