"""Registry benchmark: 50 models x 20 versions with stage assignments (~2,000 tags).

gitml and GTO 1.10.1 (benchmarks/.venv-gto, made by setup_gto.sh) on the same repository
in the same run: listing the registry, resolving ``models:/m7@production``, registering one
more version. The tags are built fast (runs through gitml's API with background commits,
tag objects written as one pack by gitml's store, refs packed by ``git pack-refs``).

    python benchmarks/run_registry.py [--models 50] [--versions 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _git(repo, *args, input_text=None):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, input=input_text).stdout


def build(repo: str, models: int, versions: int) -> str:
    import gitml
    from dulwich.objects import Commit, Tag

    from gitml.registry.tags import Action, RegistryTag
    from gitml.store import yamlout

    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "init")
    gitml.set_tracking_uri(repo)
    run_ids = []
    for _ in range(models * versions + 1):
        with gitml.start_run() as run:
            gitml.log_text("flavors: {}\n", "model/MLmodel")
        run_ids.append(run.info.run_id)
    gitml.flush()
    client = gitml.Client(repo)
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
                obj.message = yamlout.dump({"gitml-registry": {"model": tag.model, "version": f"v{v + 1}.0.0",
                                                               "run_id": run_id, "path": "model"}})
                objects.append(obj)
                refs.append(f"create {tag.ref.decode()} {obj.id.decode()}\n")
    store.write(objects)
    store.release_kept(every=True)
    client.close()
    _git(repo, "update-ref", "--stdin", input_text="".join(refs))
    _git(repo, "pack-refs", "--all")
    return run_ids[-1]


def timed(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--versions", type=int, default=20)
    args = parser.parse_args()
    gto = os.path.join(ROOT, "benchmarks", ".venv-gto", "bin", "gto")
    if not os.path.exists(gto):
        subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "setup_gto.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        os.makedirs(repo)
        os.chdir(repo)
        start = time.perf_counter()
        spare = build(repo, args.models, args.versions)
        tags = len(_git(repo, "tag", "-l").split())
        print(f"built {tags} tags over {args.models * args.versions} runs in {time.perf_counter() - start:.1f} s")
        import gitml
        from gitml.models.uri import resolve_model_uri

        def fresh_list():
            with gitml.Client(repo) as c:
                c.registry.models()

        def fresh_resolve():
            with gitml.Client(repo) as c:
                resolve_model_uri(c, "models:/m7@production")

        with gitml.Client(repo) as c:
            assert c.registry.models()["m7"].stages["production"] == f"v{args.versions}.0.0"
        api_list, api_resolve = timed(fresh_list), timed(fresh_resolve)
        version = [f"v{args.versions + 1}.0.0"]

        def register():
            with gitml.Client(repo) as c:
                c.registry.register("m7", spare, "model", version=version[0])
            version[0] = f"v{int(version[0][1:].split('.')[0]) + 1}.0.0"

        api_register = timed(register, repeat=1)
        cli = [sys.executable, "-m", "gitml.cli.main"]
        cli_list = timed(lambda: subprocess.run([*cli, "registry", "list"], cwd=repo, check=True, capture_output=True), 3)
        code = "import gitml.pyfunc\nfrom gitml.models.uri import resolve_model_uri\nresolve_model_uri(None, 'models:/m7@production')"
        cli_resolve = timed(lambda: subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, capture_output=True), 3)
        _git(repo, "tag", "-d", f"m7@v{args.versions + 1}.0.0")
        cli_register = timed(lambda: subprocess.run([*cli, "registry", "register", "m7", f"{spare}:model", "--version",
                                                     f"v{args.versions + 1}.0.0"], cwd=repo, check=True,
                                                    capture_output=True), 1)
        _git(repo, "tag", "-d", f"m7@v{args.versions + 1}.0.0")
        gto_list = timed(lambda: subprocess.run([gto, "show"], cwd=repo, check=True, capture_output=True), 1)
        gto_resolve = timed(lambda: subprocess.run([gto, "show", "m7#production", "--ref"], cwd=repo, check=True,
                                                   capture_output=True), 1)
        commit = _git(repo, "rev-parse", f"refs/gitml/runs/0/{spare}").strip()
        gto_register = timed(lambda: subprocess.run([gto, "register", "m7", commit, "--version", f"v{args.versions + 1}.0.0"],
                                                    cwd=repo, check=True, capture_output=True), 1)
        print(f"{'operation':<26}{'gitml API':>11}{'gitml CLI':>11}{'GTO CLI':>10}{'GTO/gitml CLI':>15}")
        for name, api, cli_t, gto_t in [("list", api_list, cli_list, gto_list),
                                        ("resolve m7@production", api_resolve, cli_resolve, gto_resolve),
                                        ("register one version", api_register, cli_register, gto_register)]:
            print(f"{name:<26}{api:>10.3f}s{cli_t:>10.3f}s{gto_t:>9.3f}s{gto_t / cli_t:>14.1f}x")


if __name__ == "__main__":
    main()
