"""The web UI: ``/`` is its page, ``/ui/...`` its scripts and styles (shipped in the package).

The page holds no data: it calls the public API from the browser with the key the
user types (kept in session storage), so it is served without a key, like the API
docs. Assets are files of the installed package, never a CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

#: The page and its assets, inside the installed package.
UI_DIR: Path = Path(__file__).resolve().parents[1] / "ui" / "static"
#: Where the assets are served.
ASSETS = "/ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/ui``."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=UI_DIR, check_dir=False), name="ui")
