"""What the web process loads: each gunicorn worker imports the app on its own, so every module it
imports costs its resident memory (issue #16's web-rss goal). Worker-only and command-only libraries
stay out of it: alembic (ledger/migrate.py; /readyz compares with ledger.db.HEAD), the CRM and
provider-list HTTP clients (requests), and on SQLite the PostgreSQL driver.
"""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import base_env, config_toml

ROOT = Path(__file__).resolve().parents[3]
WORKER_ONLY = ("alembic", "mako", "pygments", "requests", "urllib3", "psycopg")

PROBE = """
import json, sys
import wsgi
client = wsgi.app.test_client()
statuses = [client.get(path).status_code for path in ("/healthz", "/readyz", "/openapi.json")]
print(json.dumps({"statuses": statuses, "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def test_the_web_app_loads_no_worker_only_library(tmp_path):
    config = tmp_path / "receiver.toml"
    config.write_text(config_toml())
    env = {**base_env(f"sqlite:///{tmp_path / 'empty.db'}", config), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    answer = json.loads(out.stdout.splitlines()[-1])

    assert answer["statuses"] == [200, 503, 200]  # the unmigrated file is "not migrated", the rest answer
    assert "sqlalchemy" in answer["loaded"] and "flask" in answer["loaded"]  # the probe saw the app's imports
    assert [name for name in WORKER_ONLY if name in answer["loaded"]] == []
