"""Conformance: ceph/s3-tests against an upstream directly and through s3proxy.

    .venv/bin/python bench/conformance.py --s3tests ~/src/s3-tests

Runs ``s3tests/functional/test_s3.py`` (with a marker filter that leaves out what the upstream
cannot do at all) twice, each time against a fresh upstream: once pointed at the upstream itself
("direct"), once at an ``s3proxy serve`` in front of it ("proxy"). It then compares the two JUnit
reports and writes ``docs/compatibility.md``: the counts, and every test that passes directly but
not through the proxy, with the proxy run's failure message.

It starts everything it needs on 127.0.0.1 with the project's own helpers (``s3proxy.devstack``):
an OpenBao dev server with a transit key, a moto server that enforces SigV4 and IAM, the IAM users
whose keys s3-tests' configuration asks for, and the proxy. s3-tests' own dependencies go into a
venv of their own under the cache directory (``--cache``), made on the first run.

Not part of CI: a full run takes a while (see the timings in the generated file). ``--only`` runs
one side and reuses the other side's last results; ``--report-only`` rewrites the document from the
last results; ``-k`` narrows the tests (pytest's ``-k`` expression), e.g. to re-check a few.

s3-tests is not vendored: get it with ``git clone https://github.com/ceph/s3-tests`` and pass its
directory with ``--s3tests`` or ``S3TESTS_DIR``.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: import this checkout's s3proxy
    sys.path.insert(0, str(ROOT))

from s3proxy.devrgw import RgwServer, start_rgw  # noqa: E402
from s3proxy.devstack import (  # noqa: E402
    S3Server,
    clean_env,
    start_proxy_process,
    start_s3,
    start_vault,
)

TEST_FILE = "s3tests/functional/test_s3.py"

# What the run leaves out, and why: features moto does not have at all (lifecycle processing,
# bucket logging, cloud tiers, IAM accounts), and tests s3-tests itself marks as not matching AWS.
DEFAULT_MARKERS = " and ".join(
    f"not {m}"
    for m in (
        "fails_on_aws",  # s3-tests' own mark: AWS S3 behaves otherwise (Ceph extensions)
        "lifecycle",
        "lifecycle_expiration",
        "lifecycle_transition",
        "cloud_transition",
        "cloud_restore",
        "bucket_logging",
        "bucket_logging_cleanup",
        "fails_without_logging_rollover",
        "iam_account",
        "iam_user",
        "s3select",
        "s3website",
    )
)

# Causes known better than a failure message says, for the document's "cause" column: (test name
# fnmatch pattern, regular expression searched in the proxy run's shortened failure message,
# cause). The first match wins; a difference nothing matches gets "?" for a person to look into.
BY_DESIGN = "by design: "
ONE_IDENTITY = (
    BY_DESIGN + "the proxy discards the workload's signature and signs every request with its "
    "own identity, so a request the store would refuse for its signer (anonymous, another user, a "
    "bad key, a policy or ACL naming another principal) is the proxy's and allowed "
    "(S3PROXY_CLIENT_AUTH checks workloads' signatures against keys the proxy holds, "
    "docs/client-auth.md)"
)
OWN_CORS = (
    BY_DESIGN + "the proxy answers CORS itself, for the origins S3PROXY_CORS_ORIGINS allows, "
    "never from a bucket's CORS rules, and refuses a request from any other Origin: any web page "
    "could otherwise use the pod's identity (docs/threat-model.md)"
)
KNOWN_CAUSES: list[tuple[str, str, str]] = [
    ("test_list_buckets_*_auth", r"ClientError not raised", ONE_IDENTITY),
    ("test_access_bucket_*", r"ClientError not raised", ONE_IDENTITY),
    ("test_bucket_policy_*", r"ClientError not raised", ONE_IDENTITY),
    ("test_bucket_list*_objects_anonymous_fail", r"ClientError not raised", ONE_IDENTITY),
    ("test_bucket_create_exists_nonowner", r"ClientError not raised", ONE_IDENTITY),
    ("test_ignore_public_acls", r"ClientError not raised", ONE_IDENTITY),
    ("test_object_anon_put", r"ClientError not raised", ONE_IDENTITY),
    ("test_object_copy_not_owned_bucket", r"ClientError not raised", ONE_IDENTITY),
    ("test_object_raw_get_object_acl", r"ClientError not raised", ONE_IDENTITY),
    ("test_100_continue", r"'100' == '403'", ONE_IDENTITY),
    ("test_object_acl_canned_bucketowner*", r"assert 1 == 2", ONE_IDENTITY),
    ("test_object_copy_not_owned_object_bucket", r"AccessDenied", ONE_IDENTITY),
    ("test_object_acl_full_control_verify_attributes", r"AccessDenied", ONE_IDENTITY),
    ("test_put_bucket_acl_grant_group_read", r"AccessDenied", ONE_IDENTITY),
    (
        "test_bucket_policy_*tenant*",
        r"InvalidRequest",
        BY_DESIGN + "RGW's tenant-qualified bucket names (`tenant:bucket`) are not S3 bucket "
        "names; the proxy routes only S3's (docs/design.md, Where a request may go)",
    ),
    (
        "test_object_raw_*_expire*",
        r"assert 400 == 403",
        BY_DESIGN + "an X-Amz-Expires outside 1 to 604800 gets AWS S3's 400 "
        "AuthorizationQueryParametersError; RGW (and so s3-tests) answers 403",
    ),
    ("test_cors_origin_*", r"assert 403 == 200", OWN_CORS),
    ("test_cors_presigned_*", r"assert 403 == 200", OWN_CORS),
    (
        "test_post_object_*",
        r"assert 501 ==",
        BY_DESIGN + "browser-form uploads (POST Object) are refused with 501: the form's policy "
        "is signed by the workload and its multipart/form-data body cannot be encrypted as "
        "a stream (docs/design.md, Classification)",
    ),
    (
        "test_delete_marker_*",
        r"KeyError: 'x-amz-delete-marker'",
        "moto: its GetObject 404 for a delete marker lacks `x-amz-delete-marker: true`, which "
        "S3 sends on GET as on HEAD; the proxy's HeadObject reads the object's end with a GET "
        "(docs/metadata.md) and relays its 404",
    ),
    (
        "*",
        r"PutObject: MissingContentLength",
        BY_DESIGN + "a PutObject without Content-Length (Transfer-Encoding: chunked) gets 411, "
        "as from AWS S3 (moto accepts it): a stream's header declares the plaintext length "
        "before the first segment (docs/design.md, Writing)",
    ),
]

# What s3-tests' configuration needs: one IAM user per section, all in moto's one account.
SECTIONS = ("s3 main", "s3 alt", "s3 tenant", "iam", "iam root", "iam alt root")

# moto answers every bucket's owner with this canonical user; s3-tests compares ACL grants and
# owners with the configured main user's id and display name.
MOTO_OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
MOTO_OWNER_NAME = "webfile"

MOTO_IDS = {
    "s3 main": (MOTO_OWNER_ID, MOTO_OWNER_NAME, "tester@example.com"),
    "s3 alt": ("56789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234", "john.doe",
               "john.doe@example.com"),
    "s3 tenant": ("testx$9876543210abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                  "testx$tenanteduser", "tenanteduser@example.com"),
    "iam": ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "youruseridhere", "s3@example.com"),
    "iam root": ("RGW11111111111111111", "root", "account1@example.com"),
    "iam alt root": ("RGW22222222222222222", "altroot", "account2@example.com"),
}  # fmt: skip

ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


# --------------------------------------------------------------------------------------------
# s3-tests checkout and its venv


def find_s3tests(arg: str | None) -> Path:
    where = arg or os.environ.get("S3TESTS_DIR")
    if not where:
        sys.exit(
            "conformance: no s3-tests checkout given.\n"
            "  git clone https://github.com/ceph/s3-tests /path/to/s3-tests\n"
            "then pass --s3tests /path/to/s3-tests (or set S3TESTS_DIR)."
        )
    path = Path(where).expanduser().resolve()
    if not (path / TEST_FILE).is_file():
        sys.exit(f"conformance: {path} is not an s3-tests checkout (no {TEST_FILE}).")
    return path


def s3tests_commit(path: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "log", "-1", "--format=%H %cs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return f"{out[0]} ({out[1]})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return os.environ.get("S3TESTS_COMMIT", "unknown (not a git checkout)")


def project_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def requirements(s3tests: Path) -> list[str]:
    """s3-tests' requirements.txt without tox (we run pytest ourselves), plus pytest-timeout."""
    reqs = []
    for line in (s3tests / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not re.match(r"tox\b", line):
            reqs.append(line)
    return [*reqs, "pytest-timeout>=2.3"]


def ensure_venv(cache: Path, s3tests: Path) -> Path:
    """A venv with s3-tests' dependencies, made once per set of requirements."""
    reqs = requirements(s3tests)
    digest = hashlib.sha256("\n".join([sys.version, *reqs]).encode()).hexdigest()[:12]
    venv = cache / f"venv-{digest}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    print(f"conformance: installing s3-tests' dependencies into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    log = cache / "pip.log"
    with log.open("wb") as out:
        code = subprocess.run(
            [str(python), "-m", "pip", "install", *reqs],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    if code:
        sys.exit(f"conformance: installing s3-tests' dependencies failed; see {log}")
    done.write_text("\n".join(reqs) + "\n")
    return python


# --------------------------------------------------------------------------------------------
# The stack: upstream, users, proxy


@dataclass
class User:
    access_key: str
    secret_key: str


def make_users(s3: S3Server) -> dict[str, User]:
    """An IAM user with an allow-all policy and an access key for each configuration section,
    created with the devstack user's signed requests (moto enforces IAM after its setup)."""
    iam = s3.client("iam")
    users = {}
    for section in SECTIONS:
        name = "s3tests-" + section.replace(" ", "-")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="everything", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[section] = User(key["AccessKeyId"], key["SecretAccessKey"])
    return users


# s3-tests' sample configuration's users, as Ceph's own runs create them on RGW (uid, display
# name, email, tenant); the iam sections get plain users (RGW 16 has no accounts).
RGW_IDS = {
    "s3 main": ("testid", "M. Tester", "tester@ceph.com", None),
    "s3 alt": ("56789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234", "john.doe",
               "john.doe@example.com", None),
    "s3 tenant": ("9876543210abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                  "tenanteduser", "tenanteduser@example.com", "testx"),
    "iam": ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "youruseridhere", "s3@example.com", None),
    "iam root": ("RGW11111111111111111", "root", "account1@ceph.com", None),
    "iam alt root": ("RGW22222222222222222", "altroot", "account2@ceph.com", None),
}  # fmt: skip


def make_rgw_users(rgw: RgwServer) -> dict[str, User]:
    """One RGW user per configuration section, created with radosgw-admin."""
    users = {}
    for number, section in enumerate(SECTIONS):
        uid, display_name, email, tenant = RGW_IDS[section]
        user = User(f"S3TESTSKEY{number:010d}", f"s3tests-secret-{number:026d}")
        rgw.add_user(uid, user.access_key, user.secret_key, display_name=display_name,
                     email=email, tenant=tenant)  # fmt: skip
        users[section] = user
    return users


def conf_ids(upstream: str) -> dict[str, tuple[str, str, str]]:
    """Each section's user id, display name and email as the upstream reports them."""
    if upstream == "rgw":
        ids = {}
        for section, (uid, name, email, tenant) in RGW_IDS.items():
            ids[section] = (f"{tenant}${uid}", f"{name}", email) if tenant else (uid, name, email)
        return ids
    return MOTO_IDS


def write_conf(
    path: Path, host: str, port: int, users: Mapping[str, User], upstream: str = "moto"
) -> None:
    """s3tests.conf: every section of s3tests.conf.SAMPLE that the suite reads."""
    cfg = configparser.RawConfigParser()
    cfg.optionxform = str  # type: ignore[assignment,method-assign]  # keep "bucket prefix"
    cfg["DEFAULT"] = {"host": host, "port": str(port), "is_secure": "False", "ssl_verify": "False"}
    cfg["fixtures"] = {
        "bucket prefix": "s3t-{random}-",
        "iam name prefix": "s3-tests-",
        "iam path prefix": "/s3-tests/",
    }
    ids = conf_ids(upstream)
    for section in SECTIONS:
        user_id, display_name, email = ids[section]
        cfg[section] = {
            "access_key": users[section].access_key,
            "secret_key": users[section].secret_key,
            "user_id": user_id,
            "display_name": display_name,
            "email": email,
        }
    cfg["s3 main"]["api_name"] = ""
    cfg["s3 tenant"]["tenant"] = "testx"
    if upstream == "rgw":
        cfg["s3 tenant"]["display_name"] = "testx$tenanteduser"
    with path.open("w") as f:
        cfg.write(f)


@contextlib.contextmanager
def target(
    side: str, workdir: Path, upstream: str = "moto"
) -> Iterator[tuple[int, dict[str, User]]]:
    """A fresh upstream (and for "proxy" a Vault and the proxy in front): the port s3-tests
    talks to and the users for its configuration."""
    with contextlib.ExitStack() as stack:
        s3: S3Server
        if upstream == "rgw":
            rgw = start_rgw(workdir)
            stack.callback(rgw.stop)
            users = make_rgw_users(rgw)
            # The proxy signs as the main user, as a deployment's proxy signs as the workload's
            # owner: then the owner ACL tests see is the one they expect, as on moto.
            main = users["s3 main"]
            s3 = dataclasses.replace(rgw, access_key=main.access_key, secret_key=main.secret_key)
        else:
            s3 = start_s3(workdir)
            stack.callback(s3.stop)
            users = make_users(s3)
        if side == "direct":
            port = int(s3.endpoint.rsplit(":", 1)[1])
        else:
            vault = start_vault(workdir)
            stack.callback(vault.stop)
            proxy, port = start_proxy_process(workdir, vault, s3)
            stack.callback(proxy.stop)
            # The proxy ignores the workload's signature: the same keys do, any would.
        yield port, users


# --------------------------------------------------------------------------------------------
# Running s3-tests

# A pytest plugin loaded into s3-tests' run (written beside its configuration). s3-tests empties
# and deletes its buckets before and after every test, and one bucket it fails to delete makes
# every later test fail in setup. Two moto quirks cause that: DeleteObjects errors without a
# VersionId (s3-tests' wait for Object Lock retention reads it: KeyError) and listings that leave
# keys behind after large deletions (BucketNotEmpty). The plugin retries that cleanup for up to
# 30 s; it changes no test.
PLUGIN_NAME = "s3proxy_conformance_plugin"
PLUGIN = """\
import time

import s3tests.functional as functional

_nuke_bucket = functional.nuke_bucket


def nuke_bucket(client, bucket):
    deadline = time.monotonic() + 30
    while True:
        try:
            return _nuke_bucket(client, bucket)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "NoSuchBucket":
                return None
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


functional.nuke_bucket = nuke_bucket
"""


@dataclass
class RunInfo:
    side: str
    started: str
    seconds: float
    command: str
    exit_code: int
    junit: str
    log: str


def run_side(
    side: str,
    *,
    s3tests: Path,
    python: Path,
    results: Path,
    markers: str,
    keyword: str | None,
    timeout: int,
    session_timeout: int,
    upstream: str = "moto",
) -> RunInfo:
    workdir = results / f"{side}-stack"  # the peers' and the proxy's logs, kept until next run
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    junit = results / f"{side}.xml"
    log = results / f"{side}.log"
    junit.unlink(missing_ok=True)
    cmd = [
        str(python),
        "-m",
        "pytest",
        TEST_FILE,
        "-m",
        markers,
        "-p",
        "no:cacheprovider",
        "-p",
        PLUGIN_NAME,
        f"--timeout={timeout}",
        f"--session-timeout={session_timeout}",
        f"--junitxml={junit}",
        "-o",
        "junit_logging=no",
        "-q",
        "-rN",
        "--tb=line",
    ]
    if keyword:
        cmd += ["-k", keyword]
    started = dt.datetime.now(dt.UTC)
    print(f"conformance: {side}: starting the stack in {workdir} ...", flush=True)
    with target(side, workdir, upstream) as (port, users):
        conf = workdir / "s3tests.conf"
        (workdir / f"{PLUGIN_NAME}.py").write_text(PLUGIN)
        write_conf(conf, "127.0.0.1", port, users, upstream)
        env = clean_env(
            {
                "S3TEST_CONF": str(conf),
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": f"{s3tests}{os.pathsep}{workdir}",
            }
        )
        print(f"conformance: {side}: s3-tests against 127.0.0.1:{port}, log in {log}", flush=True)
        t0 = time.monotonic()
        with log.open("wb") as out:
            code = subprocess.run(
                cmd, cwd=s3tests, env=env, stdout=out, stderr=subprocess.STDOUT
            ).returncode
        seconds = time.monotonic() - t0
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
    print(f"conformance: {side}: {tail[0]} (exit {code}, {seconds:.0f} s)", flush=True)
    if not junit.exists():
        raise SystemExit(f"conformance: {side}: pytest wrote no JUnit report; see {log}")
    shown = [shlex.quote(c) for c in cmd]
    shown[0] = "python"
    info = RunInfo(side, started.isoformat(timespec="seconds"), seconds, " ".join(shown), code,
                   str(junit), str(log))  # fmt: skip
    (results / f"{side}.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


# --------------------------------------------------------------------------------------------
# Comparing the reports


@dataclass
class Outcome:
    status: str  # passed, failed, error, skipped
    message: str = ""


@dataclass
class Report:
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        return Counter(o.status for o in self.outcomes.values())


def read_junit(path: Path) -> Report:
    report = Report()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                status = "failed" if tag == "failure" else tag
                message = el.get("message") or (el.text or "")
                break
        if status == "error" and report.outcomes.get(name, Outcome("passed")).status != "passed":
            continue  # an error in teardown after the test itself failed: keep the failure
        report.outcomes[name] = Outcome(status, message)
    return report


_CLIENT_ERROR = re.compile(
    r"An error occurred \((?P<code>[^)]*)\) when calling the (?P<op>\w+) operation"
    r"(?: \(reached max retries: \d+\))?: ?(?P<msg>.*)"
)


def reason(message: str) -> str:
    """A one-line reason from a JUnit failure message."""
    text = " ".join(message.split())
    m = _CLIENT_ERROR.search(text)
    if m:
        detail = m["msg"].strip()
        if len(detail) > 120:
            detail = detail[:120] + "…"
        return f"{m['op']}: {m['code']}" + (f" ({detail})" if detail else "")
    text = re.sub(r"^(Failed: )?", "", text)
    text = re.sub(r"^[\w.]+\.(\w+(Error|Exception))", r"\1", text)
    return text[:160] + ("…" if len(text) > 160 else "")


def known_cause(name: str, why: str) -> str:
    for pattern, regex, cause in KNOWN_CAUSES:
        if fnmatch.fnmatchcase(name, pattern) and re.search(regex, why):
            return cause
    return "?"


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_markdown(
    out: Path,
    *,
    direct: Report,
    proxy: Report,
    runs: Mapping[str, Mapping[str, Any]],
    upstream: str,
    s3tests: str,
    markers: str,
    keyword: str | None,
    timeout: int,
    command: str,
) -> list[tuple[str, str, str, str]]:
    order = list(direct.outcomes) + [n for n in proxy.outcomes if n not in direct.outcomes]
    regressions = []
    for name in order:
        d, p = direct.outcomes.get(name), proxy.outcomes.get(name)
        if d and d.status == "passed" and (p is None or p.status != "passed"):
            status = p.status if p else "not run"
            why = reason(p.message) if p else "not run through the proxy"
            regressions.append((name, status, known_cause(name, why), why))
    # unexplained first, then by design last; within a cause by message, then name
    regressions.sort(key=lambda r: (r[2] != "?", r[2].startswith(BY_DESIGN), r[2], r[3], r[0]))
    gains = [
        n
        for n in order
        if n in proxy.outcomes
        and proxy.outcomes[n].status == "passed"
        and (n not in direct.outcomes or direct.outcomes[n].status != "passed")
    ]

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# S3 compatibility: ceph/s3-tests directly and through s3proxy",
        "",
        f"Generated by `bench/conformance.py` on {now}; do not edit by hand (the causes are",
        "kept in `KNOWN_CAUSES` in that script). Command:",
        "",
        "```sh",
        command,
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| s3-tests | [ceph/s3-tests](https://github.com/ceph/s3-tests) {s3tests}, "
        f"`{TEST_FILE}` |",
        f"| upstream | {UPSTREAMS[upstream]()}, a fresh one for each run |",
        f"| proxy | s3proxy {project_commit()}, `s3proxy serve` with the dev stack's settings "
        "(OpenBao transit, default segment size, exact list sizes) |",
        f"| marker filter | `{markers}` |",
        f"| `-k` | `{keyword}` |" if keyword else "| `-k` | none: every test the filter selects |",
        f"| per test | {timeout} s at most (pytest-timeout) |",
        "",
        *INTROS[upstream],
        "",
        "## Counts",
        "",
        "| run | tests | passed | failed | errors | skipped | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for side, rep in (("direct", direct), ("proxy", proxy)):
        c = rep.counts()
        secs = runs.get(side, {}).get("seconds")
        took = f"{secs / 60:.1f} min" if isinstance(secs, (int, float)) else "?"
        lines.append(
            f"| {side} | {sum(c.values())} | {c['passed']} | {c['failed']} | {c['error']} "
            f"| {c['skipped']} | {took} |"
        )
    lines += [
        "",
        f"## Passing directly, not through the proxy ({len(regressions)})",
        "",
        "The failure message is the proxy run's, shortened (`Operation: ErrorCode (message)` for",
        "S3 errors); the cause comes from `KNOWN_CAUSES` in the script, `?` where nobody has",
        "looked yet. Unexplained differences come first, those by design last.",
        "",
        "| test | through the proxy | cause | failure message |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{n}` | {s} | {md_cell(c)} | {md_cell(w)} |" for n, s, c, w in regressions]
    if not regressions:
        lines.append("| (none) | | | |")
    lines += [
        "",
        f"## Passing through the proxy, not directly ({len(gains)})",
        "",
        "Where the upstream fails a test the proxy passes: the proxy answers itself (e.g. its own",
        "conditional-request checks), or it signs a request the upstream would refuse: anonymous",
        "and unsigned requests get the proxy's identity, as every request does.",
        "",
        ", ".join(f"`{n}`" for n in gains) if gains else "None.",
        "",
    ]
    out.write_text("\n".join(lines))
    return regressions


MOTO_INTRO = [
    "Both runs use the same configuration except the endpoint: direct, s3-tests talks to moto",
    "with each section's own IAM user; through the proxy, every request is re-signed with the",
    "proxy's one identity (the workload's keys and signature are discarded), so tests of",
    "authentication or of one user against another cannot pass there by design. The main",
    "user's id and display name are moto's bucket owner's, so ACL tests can pass. A small",
    "plugin retries s3-tests' bucket cleanup for up to 30 s (moto leaves some buckets",
    "undeletable for a while, which would fail every later test in setup); no test changes.",
]
RGW_INTRO = [
    "Both runs use the same configuration except the endpoint: direct, s3-tests talks to a",
    "throwaway single-node Ceph RADOS Gateway (`s3proxy/devrgw.py`: one monitor, one memstore",
    "OSD) with the users of s3-tests' sample configuration, created with `radosgw-admin`;",
    "through the proxy, every request is re-signed with the main user's keys, the proxy's one",
    "identity (the workload's keys and signature are discarded), so tests of authentication,",
    "of one user against another and of tenants cannot pass there by design. The proxy runs",
    "with default settings.",
]
INTROS = {"moto": MOTO_INTRO, "rgw": RGW_INTRO}


def _radosgw_version() -> str:
    try:
        out = subprocess.run(["radosgw", "--version"], capture_output=True, text=True).stdout
        return out.split()[2]
    except (OSError, IndexError):
        return "?"


UPSTREAMS = {
    "moto": lambda: f"moto {_version('moto')} server (SigV4 and IAM enforced)",
    "rgw": lambda: f"Ceph RADOS Gateway {_radosgw_version()} (Debian `radosgw`, memstore)",
}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--s3tests", help="s3-tests checkout (default: $S3TESTS_DIR)")
    ap.add_argument(
        "--cache",
        default=os.environ.get("S3PROXY_CONFORMANCE_CACHE", "~/.cache/s3proxy-conformance"),
        help="s3-tests' venv and the runs' results (default: %(default)s)",
    )
    ap.add_argument(
        "--upstream",
        choices=("moto", "rgw"),
        default=os.environ.get("S3PROXY_CONFORMANCE_UPSTREAM", "moto"),
        help="the store: moto (SigV4, IAM enforced) or a throwaway Ceph RGW (%(default)s)",
    )
    ap.add_argument("--out", help="the document (default docs/compatibility[-rgw].md)")
    ap.add_argument("--only", choices=("direct", "proxy"), help="run one side, reuse the other's")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the document")
    ap.add_argument("-m", "--markers", default=DEFAULT_MARKERS, help="pytest -m expression")
    ap.add_argument("-k", "--k", dest="keyword", help="pytest -k expression (narrows the run)")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per test (default 60)")
    ap.add_argument(
        "--session-timeout",
        type=int,
        default=1500,
        help="seconds per run, after which the remaining tests are not run (default 1500)",
    )
    args = ap.parse_args(argv)

    s3tests = find_s3tests(args.s3tests)
    cache = Path(args.cache).expanduser().resolve()
    results = cache / ("results" if args.upstream == "moto" else f"results-{args.upstream}")
    results.mkdir(parents=True, exist_ok=True)

    command = "python bench/conformance.py --s3tests <s3-tests checkout>"
    if args.upstream != "moto":
        command += f" --upstream {args.upstream}"
    if args.markers != DEFAULT_MARKERS:
        command += f" -m {shlex.quote(args.markers)}"
    if args.keyword:
        command += f" -k {shlex.quote(args.keyword)}"

    if not args.report_only:
        python = ensure_venv(cache, s3tests)
        sides = [args.only] if args.only else ["direct", "proxy"]
        for side in sides:  # one after the other: one pytest at a time
            run_side(
                side,
                s3tests=s3tests,
                python=python,
                results=results,
                markers=args.markers,
                keyword=args.keyword,
                timeout=args.timeout,
                session_timeout=args.session_timeout,
                upstream=args.upstream,
            )

    runs: dict[str, dict[str, Any]] = {}
    reports: dict[str, Report] = {}
    for side in ("direct", "proxy"):
        junit = results / f"{side}.xml"
        if not junit.exists():
            sys.exit(f"conformance: no results for {side} in {results}: run without --only first")
        reports[side] = read_junit(junit)
        meta = results / f"{side}.json"
        runs[side] = json.loads(meta.read_text()) if meta.exists() else {}

    suffix = "" if args.upstream == "moto" else f"-{args.upstream}"
    out = Path(args.out or ROOT / "docs" / f"compatibility{suffix}.md")
    regressions = write_markdown(
        out,
        upstream=args.upstream,
        direct=reports["direct"],
        proxy=reports["proxy"],
        runs=runs,
        s3tests=s3tests_commit(s3tests),
        markers=args.markers,
        keyword=args.keyword,
        timeout=args.timeout,
        command=command,
    )
    for side, rep in reports.items():
        c = rep.counts()
        print(
            f"conformance: {side}: {c['passed']} passed, {c['failed']} failed, "
            f"{c['error']} errors, {c['skipped']} skipped"
        )
    print(f"conformance: {len(regressions)} pass directly but not through the proxy; see {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
