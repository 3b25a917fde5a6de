"""The format table: naming a format imports its own module only, and the table is the registry."""

from __future__ import annotations

import importlib
import subprocess
import sys

from dplogs.ingest.formats import MODULE_OF, registered


def test_every_format_is_in_the_table_under_the_module_that_registers_it() -> None:
    registry = registered()
    assert set(MODULE_OF) == set(registry)
    for name, module in MODULE_OF.items():
        assert type(registry[name]).__module__ == f"dplogs.ingest.{module}", name
        assert importlib.import_module(f"dplogs.ingest.{module}")


def test_a_named_format_imports_only_its_module() -> None:
    """``ingest(..., format="syslog")`` loads syslog (and what it imports), not the other formats;
    an unknown name still lists every format."""
    code = (
        "import sys, tempfile, pathlib\n"
        "from dplogs.ingest.ingest import ingest\n"
        "from dplogs.ingest.reader import check_format_name\n"
        "d = tempfile.mkdtemp(); log = pathlib.Path(d, 'a.log')\n"
        "log.write_text('Feb 21 21:54:44 web1 sshd[1]: Failed password for bob from 10.0.0.9 port 22 ssh2\\n')\n"
        "print(ingest([log], d + '/s', format='syslog').parsed)\n"
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('dplogs.ingest.') and\n"
        "             m.rsplit('.', 1)[1] in {'access', 'cef', 'jsonl', 'windows', 'zeek', 'cloudtrail', 'tabular', 'syslog'}))\n"
        "try:\n    check_format_name('nope')\nexcept Exception as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "1"
    assert out[1] == "['syslog']"
    assert all(name in out[2] for name in MODULE_OF), out[2]
