"""tpu_scripts/supervise.sh against a stand-in `gcloud` that plays a preemption script.

The fake answers `queued-resources describe` with the next line of a states file and the
supervisor's run check (`tpu-vm ssh ... final_metrics.json ...`) with the next line of a run
file; every call is logged, so the test sees each delete, re-queue and relaunch.
"""
import shlex
import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "tpu_scripts"
FAKE_GCLOUD = r"""#!/usr/bin/env bash
# pop FILE: print the first line of FILE and drop it (the last line repeats forever).
pop() { head -n 1 "$1"; if [ "$(wc -l < "$1")" -gt 1 ]; then sed -i 1d "$1"; fi; }
printf '%q ' "$@" >> "$FAKE/calls.log"; echo >> "$FAKE/calls.log"
case "$*" in
  *"queued-resources describe"*) s=$(pop "$FAKE/states"); [ "$s" = NOT_FOUND ] && exit 1; echo "$s" ;;
  *"tpu-vm ssh"*final_metrics*) pop "$FAKE/runs" ;;
  *) echo "fake gcloud: ok" ;;
esac
"""
RUN = ["--name", "spot-tpu", "--zone", "us-east5-a", "--type", "v5p-64", "--spot", "--config", "configs/clip_b16.py",
       "--workdir", "/mnt/runs/b16", "--git", "https://example.com/bigvl.git", "--poll", "0"]


def _supervise(tmp_path, states, runs, *args):
    fake = tmp_path / "fake"
    bin_dir = fake / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    (fake / "states").write_text("\n".join(states) + "\n")
    (fake / "runs").write_text("\n".join(runs) + "\n")
    log = tmp_path / "events.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE": str(fake), "HOME": str(tmp_path)}
    done = subprocess.run([str(SCRIPTS / "supervise.sh"), *RUN, "--log", str(log), *args, "--",
                           "--config.total_steps=1000"], capture_output=True, text=True, env=env, timeout=60)
    calls = [shlex.split(line) for line in (fake / "calls.log").read_text().splitlines()]
    events = [line.split()[1] for line in log.read_text().splitlines()]
    return done, calls, events


def _count(calls, *words):
    return sum(all(w in " ".join(c) for w in words) for c in calls)


def test_preemptions_are_recovered_and_the_run_relaunched_until_it_finishes(tmp_path):
    states = ["NOT_FOUND", "WAITING_FOR_RESOURCES", "ACTIVE", "ACTIVE", "PREEMPTED",  # preempted while running
              "WAITING_FOR_RESOURCES", "ACTIVE", "ACTIVE",  # relaunched; then its workers vanish
              "ACTIVE", "ACTIVE"]  # relaunched again; finishes
    done, calls, events = _supervise(tmp_path, states, ["running", "gone", "finished"])
    assert done.returncode == 0, done.stderr
    assert events == ["START", "CREATE", "ACTIVE", "LAUNCHED", "RECOVER", "ACTIVE", "LAUNCHED", "RECOVER",
                      "ACTIVE", "LAUNCHED", "FINISHED"]
    assert _count(calls, "queued-resources create spot-tpu", "--spot", "--accelerator-type=v5p-64") == 3
    assert _count(calls, "queued-resources delete spot-tpu", "--force", "--quiet") == 2
    launches = [c for c in calls if "bigvl.main" in " ".join(c)]
    assert len(launches) == 3 and len({" ".join(c) for c in launches}) == 1  # the same command each time
    assert "--workdir /mnt/runs/b16 --config.total_steps=1000" in " ".join(launches[0])
    assert _count(calls, "git clone", "https://example.com/bigvl.git") == 3  # reinstalled each time
    assert "PREEMPTED" in (tmp_path / "events.log").read_text()


def test_retries_are_bounded(tmp_path):
    done, calls, events = _supervise(tmp_path, ["ACTIVE", "SUSPENDED"], ["running"], "--max-retries", "2")
    assert done.returncode == 1
    assert events[-1] == "GIVE_UP" and events.count("RECOVER") == 2
    assert _count(calls, "queued-resources delete") == 2


def test_bad_flags_are_one_line(tmp_path):
    done = subprocess.run([str(SCRIPTS / "supervise.sh"), "--name", "x", "--zone", "z", "--type", "v5p-8"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "--config is required" in done.stderr
