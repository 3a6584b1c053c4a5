"""Loading libsinkrouter: the search order, the error that lists what was tried, versions."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import sinkrouter as sr
from sinkrouter import _abi

BINDING_DIR = pathlib.Path(__file__).resolve().parents[1]
VERSION_HEADER = BINDING_DIR.parents[1] / "include" / "sinkrouter" / "version.h"


def header_define(name: str) -> int:
    return int(re.search(rf"#define {name} (\d+)", VERSION_HEADER.read_text()).group(1))


def run_python(code: str, env: dict, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)


def test_versions_match_the_header():
    assert _abi.ABI_VERSION == header_define("SR_ABI_VERSION") == sr.library().sr_abi_version()
    version = ".".join(str(header_define(f"SR_VERSION_{part}")) for part in ("MAJOR", "MINOR", "PATCH"))
    assert sr.library_version() == version == sr.__version__
    assert f'version = "{version}"' in (BINDING_DIR / "pyproject.toml").read_text()


def test_a_bad_environment_path_fails_listing_it(tmp_path):
    missing = tmp_path / "no" / "libsinkrouter.so.1"
    env = dict(os.environ, SINKROUTER_LIBRARY=str(missing), PYTHONPATH=str(BINDING_DIR))
    result = run_python("import sinkrouter; sinkrouter.Context()", env, tmp_path)
    assert result.returncode != 0
    assert "LibraryLoadError" in result.stderr
    assert f"SINKROUTER_LIBRARY={missing}" in result.stderr
    assert f"  {missing}: " in result.stderr  # the place tried, with the loader's reason


def test_a_library_inside_the_package_folder_is_found(tmp_path):
    package = tmp_path / "sinkrouter"
    shutil.copytree(BINDING_DIR / "sinkrouter", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.realpath(sr.library()._name), package / "libsinkrouter.so.1")
    env = {k: v for k, v in os.environ.items() if k not in ("SINKROUTER_LIBRARY", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(tmp_path)
    result = run_python("import sinkrouter; print(sinkrouter.library()._name)", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(package / "libsinkrouter.so.1")


def test_import_does_not_load_the_library(tmp_path):
    env = dict(os.environ, SINKROUTER_LIBRARY=str(tmp_path / "absent.so"), PYTHONPATH=str(BINDING_DIR))
    result = run_python("import sinkrouter; print(sinkrouter.DType.BF16.value)", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
