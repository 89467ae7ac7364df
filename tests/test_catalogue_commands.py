"""The bad-input catalogue, options: each main command given a bad option value, an unknown run or
campaign, a runs folder it cannot use or a store it cannot reach, refused in one line with exit code 2 (3
for the machine's failure) and nothing written (machinery: tests/catalogue.py; the files: test_catalogue.py).

Commands that read a registry run on a copy of one built once here: two runs of the study (as of 16 and
31 December 2024), the latest published to the embedded SQLite store, and a planned campaign ``spring``."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue import Case, build_registry, check_cli, fill_disk

STUDY = "{study}"
R = "--runs-dir {runs}"
TOUCHES = "customer_id,campaign,kind,channel,sent_at\nC001,spring,win_back,email,2024-12-01\n"


def _late(p: Path) -> None:
    """The study's orders and one order in March 2025: transactions past the end of any window planned"""
    from rfmseg.datasets import study

    p.write_text(study.path(study.ORDERS_FILE).read_text() + "C001,LATE-1,2025-03-31,10\n")


LATE = {"late.csv": _late}


def c(case_id: str, argv: str, says: str, code: int = 2, registry: bool = True, **files: object) -> Case:
    return Case(case_id, argv, says, files=files, code=code, registry=registry)  # type: ignore[arg-type]


def fresh(case_id: str, argv: str, says: str, code: int = 2, **files: object) -> Case:
    """A case on an empty folder: its runs folder does not exist, and must not after."""
    return c(case_id, argv, says, code, registry=False, **files)


COMMANDS = [
    # ------------------------------------------------------------------ run
    fresh("run-k-zero", f"run {STUDY} --k 0 {R}", "k"),
    fresh("run-k-one", f"run {STUDY} --k 1 {R}", "k"),
    fresh("run-k-negative", f"run {STUDY} --k -3 {R}", "k"),
    fresh("run-k-huge", f"run {STUDY} --k 100000 {R}", "--k 100000 is not allowed"),
    fresh("run-k-not-a-number", f"run {STUDY} --k four {R}", "Invalid value for '--k'"),
    fresh("run-k-overflow", f"run {STUDY} --k 99999999999999999999999 {R}", "k"),
    fresh("run-n-init-zero", f"run {STUDY} --n-init 0 {R}", "n-init"),
    fresh("run-n-init-negative", f"run {STUDY} --n-init -2 {R}", "n-init"),
    fresh("run-seed-negative", f"run {STUDY} --random-state -1 {R}", "random-state"),
    fresh("run-seed-too-big", f"run {STUDY} --random-state 99999999999 {R}", "from 0 to 4294967295"),
    fresh("run-unknown-transform", f"run {STUDY} --transform zscore {R}", "unknown transform 'zscore'"),
    fresh("run-unknown-preset", f"run {STUDY} --preset amazon {R}", "amazon"),
    fresh("run-unknown-bad-rows", f"run {STUDY} --bad-rows ignore {R}", "--bad-rows 'ignore'"),
    fresh("run-unknown-returns", f"run {STUDY} --returns sometimes {R}", "--returns 'sometimes'"),
    fresh("run-as-of-slashes", f"run {STUDY} --as-of 31/12/2024 {R}", "--as-of '31/12/2024' is not a date"),
    fresh("run-as-of-feb-30", f"run {STUDY} --as-of 2024-02-30 {R}", "--as-of '2024-02-30' is not a date"),
    fresh("run-as-of-empty", f"run {STUDY} --as-of '' {R}", "--as-of"),
    fresh("run-as-of-before-everything", f"run {STUDY} --as-of 1999-01-01 {R}", "as-of"),
    fresh("run-as-of-year-9999", f"run {STUDY} --as-of 9999-12-31 {R}", "not a date in the years 1900-2999"),
    fresh("run-date-format-Q", f"run {STUDY} --date-format %Q {R}", "--date-format '%Q' is not a date format"),
    fresh("run-date-format-no-directive", f"run {STUDY} --date-format abc {R}", "holds no % directive"),
    fresh("run-date-format-trailing-percent", f"run {STUDY} --date-format %Y-%m-% {R}", "--date-format"),
    fresh("run-decimal-semicolon", f"run {STUDY} --decimal ; {R}", "--decimal ';' is not allowed"),
    fresh("run-encoding-unknown", f"run {STUDY} --encoding klingon {R}", "--encoding 'klingon' is not supported"),
    fresh("run-max-quarantine-above-one", f"run {STUDY} --max-quarantine 1.5 {R}", "--max-quarantine"),
    fresh("run-max-quarantine-negative", f"run {STUDY} --max-quarantine -0.1 {R}", "--max-quarantine"),
    fresh("run-max-quarantine-nan", f"run {STUDY} --max-quarantine nan {R}", "--max-quarantine"),
    fresh("run-sample-size-zero", f"run {STUDY} --sample-size 0 {R}", "--sample-size"),
    fresh("run-sample-size-negative", f"run {STUDY} --sample-size -10 {R}", "--sample-size"),
    fresh("run-col-without-equals", f"run {STUDY} --col amount {R}", "--col"),
    fresh("run-col-unknown-field", f"run {STUDY} --col shoe_size=amount {R}", "shoe_size"),
    fresh("run-unknown-engine", f"run {STUDY} --engine gpu {R}", "gpu"),
    fresh("run-unknown-option", f"run {STUDY} --colour red {R}", "No such option: --colour"),
    fresh("run-no-file-no-config", f"run {R}", "source"),
    fresh("run-config-missing", f"run {STUDY} --config {{tmp}}/nope.toml {R}", "nope.toml"),
    fresh("run-config-not-toml", f"run {STUDY} --config {{tmp}}/bad.toml {R}", "bad.toml", **{"bad.toml": "k = = 4\n"}),
    fresh(
        "run-config-unknown-key", f"run {STUDY} --config {{tmp}}/u.toml {R}", "colour", **{"u.toml": 'colour = "red"\n'}
    ),
    fresh("run-config-k-text", f"run {STUDY} --config {{tmp}}/t.toml {R}", "k", **{"t.toml": 'k = "four"\n'}),
    fresh("run-runs-dir-is-file", f"run {STUDY} --runs-dir {{tmp}}/afile", "is a file, not a folder", afile="x"),
    fresh("run-runs-dir-under-file", f"run {STUDY} --runs-dir {{tmp}}/afile/runs", "--runs-dir", afile="x"),
    fresh("run-runs-dir-proc", f"run {STUDY} --runs-dir /proc/rfmseg-runs", "--runs-dir"),
    fresh("run-runs-dir-sys", f"run {STUDY} --runs-dir /sys/rfmseg-runs", "--runs-dir"),
    fresh("run-runs-dir-dev-null", f"run {STUDY} --runs-dir /dev/null", "--runs-dir"),
    fresh("run-runs-dir-under-dev-null", f"run {STUDY} --runs-dir /dev/null/runs", "--runs-dir"),
    fresh("run-store-unknown-scheme", f"run {STUDY} --store ftp://x/y {R}", "unsupported profile store scheme 'ftp'"),
    fresh("run-store-garbage", f"run {STUDY} --store nonsense {R}", "'nonsense' has no scheme"),
    fresh("run-spark-master-without-spark", f"run {STUDY} --spark-master local[2] {R}", "--spark-master"),
    fresh("run-output-without-spark", f"run {STUDY} --output /tmp/x {R}", "--output"),
    # ------------------------------------------------------------------ choose-k, show, runs
    fresh("choose-k-min-above-max", f"choose-k {STUDY} --k-min 8 --k-max 3", "--k-min 8 is above --k-max 3"),
    fresh("choose-k-resamples-zero", f"choose-k {STUDY} --resamples 0", "resamples"),
    fresh("choose-k-sample-size-zero", f"choose-k {STUDY} --sample-size 0", "sample-size"),
    c("show-unknown-run", f"show nope {R}", "no run 'nope'"),
    fresh("show-no-runs", f"show latest {R}", "no runs in"),
    c("runs-show-unknown", f"runs show 1999 {R}", "no run '1999'"),
    c("runs-list-unknown-kind", f"runs list --kind weekly {R}", "--kind 'weekly' is not a kind of run"),
    c("runs-latest-unknown-kind", f"runs latest --kind weekly {R}", "--kind 'weekly' is not a kind of run"),
    fresh("runs-latest-empty", f"runs latest {R}", "no runs in"),
    # ------------------------------------------------------------------ assign
    c("assign-unknown-model", f"assign {STUDY} --model nope {R}", "no run 'nope'"),
    fresh("assign-no-runs", f"assign {STUDY} {R}", "no"),
    c("assign-bad-output-suffix", f"assign {STUDY} -o {{tmp}}/out.txt {R}", "out.txt"),
    c("assign-output-is-folder", f"assign {STUDY} -o {{tmp}}/adir {R}", "adir", **{"adir/keep": "x"}),
    c("assign-show-negative", f"assign {STUDY} --show -1 {R}", "--show"),
    c("assign-cold-start-negative", f"assign {STUDY} --cold-start-orders -1 {R}", "--cold-start-orders"),
    c("assign-bad-as-of", f"assign {STUDY} --as-of 2024/12/31 {R}", "--as-of"),
    c("assign-bad-file", f"assign {{tmp}}/e.csv {R}", "the file is empty", **{"e.csv": ""}),
    c("assign-unknown-preset", f"assign {STUDY} --preset amazon {R}", "amazon"),
    # ------------------------------------------------------------------ refresh
    c("refresh-unknown-model", f"refresh {STUDY} --model nope {R}", "no run 'nope'"),
    fresh("refresh-no-model-yet", f"refresh {STUDY} {R}", "no"),
    c("refresh-bad-as-of", f"refresh {STUDY} --as-of tomorrow {R}", "--as-of 'tomorrow'"),
    c("refresh-missing-file", f"refresh {{tmp}}/nope.csv {R}", "no such file"),
    c("refresh-date-format-Q", f"refresh {STUDY} --date-format %Q {R}", "--date-format '%Q'"),
    c("refresh-store-unknown-scheme", f"refresh {STUDY} --store ftp://x {R}", "unsupported profile store scheme 'ftp'"),
    c("refresh-store-redis-db-word", f"refresh {STUDY} --store redis://127.0.0.1:1/abc {R}", "'abc' in redis"),
    # ------------------------------------------------------------------ retrain
    c("retrain-unknown-previous", f"retrain {STUDY} --previous nope {R}", "no run 'nope'"),
    c("retrain-k-zero", f"retrain {STUDY} --k 0 {R}", "k"),
    c("retrain-k-huge", f"retrain {STUDY} --k 5000 {R}", "--k 5000 is not allowed"),
    c("retrain-unknown-transform", f"retrain {STUDY} --transform zscore {R}", "zscore"),
    c("retrain-max-name-shift-negative", f"retrain {STUDY} --max-name-shift -1 {R}", "--max-name-shift"),
    c(
        "retrain-max-name-shift-nan",
        f"retrain {STUDY} --max-name-shift nan {R}",
        "--max-name-shift nan should be a number >= 0",
    ),
    c("retrain-n-init-zero", f"retrain {STUDY} --n-init 0 {R}", "n-init"),
    c("retrain-store-unknown-scheme", f"retrain {STUDY} --store mongodb://x {R}", "scheme 'mongodb'"),
    # ------------------------------------------------------------------ publish
    c("publish-unknown-run", f"publish nope {R}", "no run 'nope'"),
    c("publish-ambiguous-prefix", f"publish 2 {R}", "2"),
    fresh("publish-no-runs", f"publish latest {R}", "no runs in"),
    c("publish-store-unknown-scheme", f"publish latest --store ftp://host/db {R}", "ftp"),
    c(
        "publish-store-unreachable-redis",
        f"publish latest --store redis://127.0.0.1:1/0 {R}",
        "cannot reach the profile store",
    ),
    c(
        "publish-store-unreachable-postgres",
        f"publish latest --store postgresql://u@127.0.0.1:1/db {R}",
        "cannot reach",
    ),
    c("publish-store-sqlite-under-proc", f"publish latest --store sqlite:////proc/p.db {R}", "p.db"),
    c(
        "publish-store-sqlite-is-folder",
        f"publish latest --store sqlite:///{{tmp}}/adir {R}",
        "adir",
        **{"adir/keep": "x"},
    ),
    c(
        "publish-store-sqlite-not-a-db",
        f"publish latest --store sqlite:///{{tmp}}/x.db {R}",
        "x.db",
        **{"x.db": "hello"},
    ),
    c("publish-store-redis-db-word", f"publish latest --store redis://127.0.0.1:1/abc {R}", "the Redis database 'abc'"),
    # ------------------------------------------------------------------ export
    c("export-unknown-run", f"export nope -o {{tmp}}/x.csv {R}", "no run 'nope'"),
    c("export-unknown-format", f"export latest --format xml -o {{tmp}}/x.xml {R}", "xml"),
    c("export-unknown-segment", f"export latest --segment Whales -o {{tmp}}/x.csv {R}", "Whales"),
    c("export-changed-since-unknown", f"export latest --changed-since nope -o {{tmp}}/x.csv {R}", "nope"),
    c("export-out-and-out-dir", f"export latest -o {{tmp}}/x.csv --out-dir {{tmp}}/d {R}", "--out"),
    c("export-out-dir-is-file", f"export latest --out-dir {{tmp}}/afile {R}", "afile", afile="x"),
    fresh("export-no-runs", f"export latest -o {{tmp}}/x.csv {R}", "no runs in"),
    # ------------------------------------------------------------------ ask
    c("ask-campaign-unknown-kind", f"ask campaign telepathy {R}", "known kinds"),
    c("ask-campaign-unknown-run", f"ask campaign win_back --run nope {R}", "no run 'nope'"),
    c("ask-discount-unknown-segment", f"ask discount --segment Whales {R}", "unknown segment 'Whales'"),
    c("ask-discount-limit-zero", f"ask discount --limit 0 {R}", "limit"),
    c("ask-discount-half-life-zero", f"ask discount --half-life 0 {R}", "--half-life 0.0 should be > 0 days"),
    c(
        "ask-discount-weight-negative",
        f"ask discount --aov-weight -1 {R}",
        "--aov-weight -1.0 and --frequency-weight 0.5 should be",
    ),
    c("ask-not-contacted-days-negative", f"ask not-contacted --days -5 {R}", "days"),
    c("ask-not-contacted-bad-reference", f"ask not-contacted --reference soon {R}", "soon"),
    c("ask-trending-one-run", f"ask trending --runs 1 {R}", "runs"),
    c("ask-trending-unknown-segment", f"ask trending --toward Whales {R}", "Whales"),
    c("ask-changed-days-zero", f"ask changed --days 0 {R}", "days"),
    c("ask-changes-since-bad-cursor", f"ask changes-since --after nope {R}", "is not a cursor of the change feed"),
    c("ask-changes-since-limit-huge", f"ask changes-since --limit 10001 {R}", "limit"),
    c("ask-recency-jump-negative", f"ask recency-jump --more-than -1 {R}", "--more-than -1 should be from 0 to 3650"),
    c("ask-recency-jump-bad-membership", f"ask recency-jump --membership sometimes {R}", "membership"),
    c("ask-tracking-unknown-customer", f"ask tracking NOPE {R}", "NOPE"),
    c("ask-tracking-id-newline", f"ask tracking 'a\nb' {R}", "customer id 'a?b' is not valid"),
    c("history-id-newline", f"history 'C0\n01' {R}", "customer 'C0?01' is in none of the 2 runs"),
    c("context-id-newline", f"context 'C0\n01' {R}", "customer id 'C0?01' is not valid"),
    c("ask-tracking-runs-zero", f"ask tracking C087 --runs 0 {R}", "runs"),
    c("ask-intervention-unknown-run", f"ask intervention --from-run nope {R}", "nope"),
    c("ask-intervention-unknown-segment", f"ask intervention --to Whales {R}", "Whales"),
    c("ask-onboarding-not-saas", f"ask onboarding C087 {R}", "saas"),
    fresh("ask-no-runs", f"ask campaign win_back {R}", "no runs in"),
    c("context-unknown-target", f"context Whales {R}", "Whales"),
    c("context-bad-format", f"context At-Risk --format pdf {R}", "pdf"),
    c("context-examples-negative", f"context At-Risk --examples -1 {R}", "--examples -1 should be from 0 to 100"),
    # ------------------------------------------------------------------ history and transitions
    c("transitions-unknown-from", f"transitions --from nope {R}", "no run 'nope'"),
    c("transitions-unknown-segment", f"transitions --from-segment Whales {R}", "Whales"),
    c("history-unknown-customer", f"history NOPE {R}", "NOPE"),
    c("watch-unknown-run", f"watch --run nope {R}", "nope"),
    c("watch-period-zero", f"watch --period 0 {R}", "--window"),  # --period: the former name of --window
    c("watch-recency-jump-negative", f"watch --recency-jump -1 {R}", "--recency-jump"),
    # ------------------------------------------------------------------ simulate
    fresh("simulate-customers-zero", "simulate {tmp}/sim --customers 0", "customers"),
    fresh("simulate-weeks-negative", "simulate {tmp}/sim --weeks -1", "weeks"),
    fresh("simulate-bad-start", "simulate {tmp}/sim --start 07/01/2024", "start"),
    fresh("simulate-out-is-file", "simulate {tmp}/afile --weeks 1 --customers 50", "afile", afile="x"),
    fresh("simulate-new-per-week-negative", "simulate {tmp}/sim --new-per-week -3", "new-per-week"),
    # ------------------------------------------------------------------ touches import
    c("touches-missing-file", f"touches import {{tmp}}/nope.csv {R}", "no such file"),
    c("touches-empty-file", f"touches import {{tmp}}/t.csv {R}", "empty", **{"t.csv": ""}),
    c(
        "touches-no-customer",
        f"touches import {{tmp}}/t.csv {R}",
        "customer_id",
        **{"t.csv": "who,sent_at\nA,2024-01-01\n"},
    ),
    c("touches-bad-map", f"touches import {{tmp}}/t.csv --map sent_at {R}", "--map 'sent_at'", **{"t.csv": "x\n1\n"}),
    c(
        "touches-unknown-bad-rows",
        f"touches import {{tmp}}/t.csv --bad-rows skip {R}",
        "--bad-rows",
        **{"t.csv": "x\n1\n"},
    ),
    c("touches-date-format-Q", f"touches import {{tmp}}/t.csv --date-format %Q {R}", "%Q", **{"t.csv": TOUCHES}),
    c("touches-unknown-type", f"touches import {{tmp}}/t.json {R}", "json", **{"t.json": "{}"}),
    # ------------------------------------------------------------------ campaigns
    c("campaign-plan-unknown-segment", f"campaign plan p1 --segment Whales --action win_back {R}", "Whales"),
    c("campaign-plan-holdout-150", f"campaign plan p1 --segment At-Risk --action win_back --holdout 150% {R}", "150%"),
    c("campaign-plan-holdout-zero", f"campaign plan p1 --segment At-Risk --action win_back --holdout 0 {R}", "holdout"),
    c("campaign-plan-holdout-text", f"campaign plan p1 --segment At-Risk --action win_back --holdout half {R}", "half"),
    c("campaign-plan-bands-zero", f"campaign plan p1 --segment At-Risk --action win_back --bands 0 {R}", "bands"),
    c("campaign-plan-rank-by", f"campaign plan p1 --segment At-Risk --action win_back --rank-by age {R}", "age"),
    c("campaign-plan-send-date", f"campaign plan p1 --segment At-Risk --action win_back --send-date soon {R}", "soon"),
    c(
        "campaign-plan-format",
        f"campaign plan p1 --segment At-Risk --action win_back --format xml --out {{tmp}}/l {R}",
        "xml",
    ),
    c("campaign-plan-unknown-run", f"campaign plan p1 --segment At-Risk --action win_back --run nope {R}", "nope"),
    c("campaign-plan-name-taken", f"campaign plan spring --segment At-Risk --action win_back {R}", "spring"),
    c("campaign-plan-name-slash", f"campaign plan a/b --segment At-Risk --action win_back {R}", "a/b"),
    c("campaign-plan-empty-action", f"campaign plan p1 --segment At-Risk --action '' {R}", "action"),
    c("campaign-measure-unknown", f"campaign measure nope {STUDY} {R}", "nope"),
    c("campaign-measure-window-zero", f"campaign measure spring {STUDY} --window 0d {R}", "window"),
    c("campaign-measure-window-text", f"campaign measure spring {STUDY} --window soon {R}", "soon"),
    c(
        "campaign-measure-confidence",
        f"campaign measure spring {{tmp}}/late.csv --confidence 1.5 {R}",
        "confidence",
        **LATE,
    ),
    c("campaign-measure-too-early", f"campaign measure spring {STUDY} {R}", "window"),
    fresh("campaign-size-baseline-zero", "campaign size --baseline 0 --uplift 0.03", "baseline"),
    fresh("campaign-size-baseline-above-one", "campaign size --baseline 1.5 --uplift 0.03", "baseline"),
    fresh("campaign-size-uplift-zero", "campaign size --baseline 0.1 --uplift 0", "uplift"),
    fresh("campaign-size-uplift-too-big", "campaign size --baseline 0.9 --uplift 0.5", "uplift"),
    fresh("campaign-size-holdout-zero", "campaign size --baseline 0.1 --uplift 0.03 --holdout 0", "holdout"),
    fresh(
        "campaign-size-customers-negative",
        "campaign size --baseline 0.1 --uplift 0.03 --customers -5",
        "--customers -5 should be",
    ),
    fresh(
        "campaign-size-confidence-one",
        "campaign size --baseline 0.1 --uplift 0.03 --confidence 1",
        "--confidence 1.0 should be a level",
    ),
    # ------------------------------------------------------------------ config, presets, datasets, serve, report
    fresh("config-show-unknown-preset", "config show --preset amazon", "amazon"),
    fresh("presets-unknown", "presets amazon", "amazon"),
    fresh("datasets-fetch-unknown", "datasets fetch imdb", "imdb"),
    fresh("datasets-path-unknown", "datasets path imdb", "imdb"),
    fresh("serve-port-zero", f"serve --port 0 {R}", "--port 0 is not a TCP port"),
    fresh("serve-port-huge", f"serve --port 70000 {R}", "--port 70000 is not a TCP port"),
    fresh("serve-open-without-key", f"serve --host 0.0.0.0 {R}", "RFMSEG_API_KEY"),
    c("report-unknown-run", f"report nope {R}", "no run 'nope'"),
    c("report-output-in-missing-folder", f"report latest -o {{tmp}}/no/such/r.html {R}", "r.html"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_registry(tmp_path_factory.mktemp("catalogue") / "runs")


@pytest.mark.parametrize("case", [x.param() for x in COMMANDS])
def test_a_bad_option_is_refused_in_one_line_leaving_nothing(
    case: Case,
    cli,
    tmp_path: Path,
    registry: Path,
    study_orders: Path,
    study_rfm_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("RFMSEG_RUNS_DIR", "RFMSEG_STORE", "RFMSEG_CONFIG", "RFMSEG_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    check_cli(case, cli, tmp_path, registry, study_orders, study_rfm_file)


def test_the_command_catalogue_has_no_duplicate_ids() -> None:
    ids = [x.id for x in COMMANDS]
    assert len(ids) == len(set(ids))


def test_an_unknown_customers_id_says_the_run_is_kept(cli, tmp_path: Path, study_orders: Path) -> None:
    """`run --customers` looks the ids up once the run is written: an unknown one stops with exit 2 and one
    line, which now says the run is written all the same and where (as a store that is down does), instead of
    leaving a run the line did not mention."""
    runs = tmp_path / "runs"
    r = cli("run", study_orders, "--runs-dir", runs, "--customers", "NOPE")
    assert r.code == 2 and r.out == ""
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("error: unknown customer id(s): NOPE; ids look like C001; ")
    assert f"run {run.name} is written all the same, in {run}/" in line
    assert f"runs show {run.name} --runs-dir" in line


# ------------------------------------------------------------------------------------------------ a full disk
FULL_DISK = [
    fresh("run", f"run {STUDY} {R}", "No space left on device"),
    fresh("demo", f"demo {R}", "No space left on device"),
    c("refresh", f"refresh {STUDY} --as-of 2025-01-05 {R}", "No space left on device"),
    c("retrain", f"retrain {STUDY} --as-of 2025-01-05 {R}", "No space left on device"),
    c("assign-output", f"assign {STUDY} -o {{tmp}}/a.parquet {R}", "No space left on device"),
    c("publish-new-sqlite-store", f"publish latest --store sqlite:///{{tmp}}/new.db {R}", "the disk is full"),
    c("publish-full-store", f"publish latest --store sqlite:///{{runs}}/profiles.db?namespace=b {R}", "disk is full"),
    c("export", f"export latest -o {{tmp}}/x.csv {R}", "No space left on device"),
    c("export-out-dir", f"export latest --out-dir {{tmp}}/lists {R}", "No space left on device"),
    c("campaign-plan", f"campaign plan p1 --segment At-Risk --action win_back {R}", "No space left on device"),
    c("touches-import", f"touches import {{tmp}}/t.csv {R}", "No space left on device", **{"t.csv": TOUCHES}),
    c("report", f"report latest -o {{tmp}}/r.html {R}", "No space left on device"),
    fresh("simulate", "simulate {tmp}/sim --weeks 1 --customers 50", "No space left on device"),
]


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 16 MB tmpfs (needs the right to mount: skipped elsewhere), unmounted after."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("case", [x.param() for x in FULL_DISK])
def test_a_full_disk_is_exit_3_in_one_line_leaving_nothing(
    case: Case,
    cli,
    full_disk: Path,
    registry: Path,
    study_orders: Path,
    study_rfm_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(full_disk)
    for var in ("RFMSEG_RUNS_DIR", "RFMSEG_STORE", "RFMSEG_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    case = Case(case.id, case.argv, case.says, case.files, 3, case.registry)
    check_cli(case, cli, full_disk, registry, study_orders, study_rfm_file, prepare=fill_disk)
