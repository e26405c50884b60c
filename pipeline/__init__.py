"""inspectflow: CV pipelines for inspection work (damage surveys, site safety)."""

import os as _os

# Ultralytics and Prefect phone home unless told not to; this product runs offline.
_os.environ.setdefault("YOLO_OFFLINE", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")
_os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")

__version__ = "0.1.0"
