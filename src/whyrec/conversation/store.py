"""The session store moved to `whyrec.store`; this name keeps older imports working.

`SessionStore(path)` opens the SQLite store, exactly as before.
"""

from whyrec.store import SQLiteStore as SessionStore
from whyrec.store import Store, open_store

__all__ = ["SessionStore", "Store", "open_store"]
