"""The server's one storage interface.

``Store`` is what the rest of the server uses; ``sqlite/`` holds its SQL, one module per
resource. Nothing outside this package writes SQL.
"""

from server.store.errors import Conflict, NotFound
from server.store.facade import Store
from server.store.records import IngestResult

__all__ = ["Conflict", "IngestResult", "NotFound", "Store"]
