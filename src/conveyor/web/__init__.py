"""The dashboard: server-rendered pages over the same commands and queries as the REST API,
with small ES modules for what must be live (see ``install``)."""

from conveyor.web.site import install

__all__ = ["install"]
