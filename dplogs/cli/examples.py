"""Copy-paste examples that end each command's ``--help``.

They run from the repository root on the README tour's store (``soc/``, made from
``sample_logs/``); tests/test_docs.py parses every one with the command's own options.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "ingest": (
        "dplogs ingest sample_logs/ --store soc/ --year 2024",
        "dplogs ingest /var/log/auth.log* /var/log/apache2/access.log.gz --store soc/",
        "dplogs ingest zeek/ --store net/ --privacy-unit source.ip    # logs without accounts",
    ),
    "query": (
        "dplogs query queries/failed_logins_per_hour.toml --store soc/ --start 2024-03-04 --end 2024-03-18",
        "dplogs query --store soc/ --last 7d --sql \"SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure'\"",
        "dplogs query --store soc/ --day 2024-03-12 --format csv -o hours.csv \\\n"
        "    --sql \"SELECT date_trunc('hour', \\\"@timestamp\\\") AS hour, COUNT(*) FROM logs GROUP BY hour\"",
    ),
    "explain": (
        "dplogs explain queries/top_attacked_accounts.toml --store soc/",
        "dplogs explain --store soc/ --sql \"SELECT source.ip, COUNT(*) FROM logs GROUP BY source.ip\"",
    ),
    "report": (
        "dplogs report queries/reports/nightly.toml --store soc/ --date 2024-03-12 -o nightly.html",
        "dplogs report queries/reports/nightly.toml --store soc/ --catch-up --out-dir reports/    # cron, nightly",
    ),
    "protect": (
        "dplogs protect --store soc/ --users sample_logs/.organisation/people.txt --networks 10.0.0.0/8,192.168.0.0/16",
        "dplogs protect --store soc/ --show",
    ),
    "budget set": ("dplogs budget set --store soc/ --epsilon 20 --delta 1e-5",),
    "budget show": ("dplogs budget show --store soc/ --window 2024-03",),
    "budget history": ("dplogs budget history --store soc/ --limit 5",),
    "budget verify": ("dplogs budget verify --store soc/",),
    "inspect": (
        "dplogs inspect --store soc/",
        "dplogs inspect --store soc/ --head 20 --where \"event.outcome = 'failure'\"",
        "dplogs inspect --store soc/ --quarantine",
    ),
    "train": (
        "dplogs train --store soc/ --detector kmeans --epsilon 4 --delta 1e-6 --start 2024-03-01 --end 2024-04-01 -o model.json",
    ),
    "score": ("dplogs score --store soc/ --model model.json --top 10",),
    "timeseries": (
        "dplogs timeseries --store soc/ --epsilon 0.5 --bucket day --history 7 \\\n"
        "    --sql \"SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure'\"",
    ),
    "audit": (
        "dplogs audit queries/failed_logins_per_hour.toml --store soc/ --trials 2000 --inside-trust-boundary",
    ),
}


def examples(command: str, note: str = "") -> str:
    """The epilog of ``dplogs COMMAND --help``: its examples, kept as written (click's ``\\b``),
    then ``note``."""
    lines = "\n".join(f"  {line}" for example in EXAMPLES[command] for line in example.splitlines())
    return "\b\nExamples:\n" + lines + (f"\n\n{note}" if note else "")
