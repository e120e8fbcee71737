"""The console script skips the interpreter's teardown, but not what must happen at exit."""

import subprocess
import sys


def test_console_main_runs_atexit_handlers_flushes_and_exits_zero(tmp_path):
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
        "from alignkit.core import cli\n"
        "cli.main = lambda: print('unflushed output', end='')\n"
        "cli.console_main()\n"
        "print('never reached')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "unflushed output"  # flushed before os._exit, and nothing after console_main
    assert marker.read_text() == "ran"


def test_the_alignkit_script_is_console_main():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "alignkit"]
    assert script.value == "alignkit.core.cli:console_main"
